//! Authentication: bearer JWTs verified with jsonwebtoken, resolved to a
//! [`Principal`].
//!
//! Accepted algorithms are an allow-list derived from what is configured:
//! HS256 with `JWT_SECRET`, RS256 or ES256 with `JWT_PUBLIC_KEY` (PEM) or
//! keys from `JWT_JWKS_URL` (looked up by `kid`, refetched on an unknown `kid`
//! at most once a minute). `exp` is required, `nbf` honoured, `iss`/`aud`
//! checked when configured. A tenant token resolves to the tenant record in
//! the store (cached briefly); its tier comes from there, never the token.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::config::{Config, Environment, JwtConfig};
use crate::store::{Db, StoreError};
use crate::tenants::{Tenant, TenantId, TenantStatus};

/// Who is calling.
#[derive(Debug, Clone)]
pub enum Principal {
    /// A tenant, with its record as currently stored.
    Tenant(Tenant),
    /// An operator with `scope: admin`.
    Admin,
}

/// Why a request was not authenticated or not allowed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No bearer token.
    #[error("missing bearer token")]
    Missing,
    /// The token is not acceptable; the text says why, safely.
    #[error("{0}")]
    Invalid(&'static str),
    /// Valid token for a tenant that does not exist.
    #[error("unknown tenant")]
    UnknownTenant,
    /// The tenant is suspended.
    #[error("tenant is suspended")]
    Suspended,
    /// The principal lacks the needed scope.
    #[error("{0}")]
    Forbidden(&'static str),
    /// The key source (JWKS) could not be reached.
    #[error("token keys unavailable: {0}")]
    KeysUnavailable(String),
    /// The store failed while resolving the tenant (shared by the
    /// requests that waited for the same read).
    #[error(transparent)]
    Store(Arc<StoreError>),
}

impl From<StoreError> for AuthError {
    fn from(e: StoreError) -> Self {
        Self::Store(Arc::new(e))
    }
}

/// The claims this service reads and writes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// Expiry, seconds since the epoch. Optional here only so that its
    /// absence is reported as such; verification requires it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
    /// Issued at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Not before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// The tenant, for tenant tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// `admin` for admin tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// Issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Audience.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
}

/// The configured keys: the current ones, and those replaced by a rotation
/// that stay valid until their deadline.
struct KeySet {
    current: Vec<(Algorithm, DecodingKey)>,
    previous: Vec<(Algorithm, DecodingKey, Instant)>,
    signing: Option<SecretString>,
}

impl KeySet {
    /// Keys for `alg`, current first; expired previous keys are skipped.
    fn candidates(&self, alg: Algorithm) -> Vec<DecodingKey> {
        let now = Instant::now();
        self.current
            .iter()
            .filter(|(a, _)| *a == alg)
            .map(|(_, k)| k.clone())
            .chain(
                self.previous
                    .iter()
                    .filter(|(a, _, until)| *a == alg && *until > now)
                    .map(|(_, k, _)| k.clone()),
            )
            .collect()
    }
}

/// Verifies tokens and mints them (when a signing secret is configured).
pub struct Authenticator {
    keys: std::sync::RwLock<KeySet>,
    jwks: Option<Jwks>,
    issuer: Option<String>,
    audience: Option<String>,
    leeway: Duration,
    tenants: TenantCache,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field(
                "algorithms",
                &self
                    .keys
                    .read()
                    .map(|k| k.current.iter().map(|(a, _)| *a).collect::<Vec<_>>())
                    .unwrap_or_default(),
            )
            .field("jwks", &self.jwks.as_ref().map(|j| &j.url))
            .finish_non_exhaustive()
    }
}

/// Errors building the authenticator from configuration.
#[derive(Debug, thiserror::Error)]
pub enum KeyConfigError {
    /// `JWT_PUBLIC_KEY` is neither an RSA nor an EC P-256 public key in PEM.
    #[error("JWT_PUBLIC_KEY: expected an RSA or EC (P-256) public key in PEM")]
    BadPublicKey,
    /// The dev key file could not be read or written.
    #[error("dev signing key {path}: {message}")]
    DevKey {
        /// The file.
        path: String,
        /// What failed.
        message: String,
    },
    /// The JWKS client could not be built.
    #[error("JWT_JWKS_URL: {0}")]
    Jwks(String),
}

impl Authenticator {
    /// Build from configuration. In development with no key configured, an
    /// HS256 secret is generated in the data dir (and reused after).
    pub fn from_config(config: &Config) -> Result<Self, KeyConfigError> {
        let jwt: &JwtConfig = &config.jwt;
        let mut signing = jwt.secret.clone();
        if signing.is_none()
            && jwt.public_key_pem.is_none()
            && jwt.jwks_url.is_none()
            && config.environment == Environment::Development
        {
            signing = Some(dev_secret(&config.data_dir)?);
        }

        let current = static_keys(signing.as_ref(), jwt.public_key_pem.as_deref())?;
        let jwks = jwt
            .jwks_url
            .as_ref()
            .map(|url| Jwks::new(url))
            .transpose()?;

        Ok(Self {
            keys: std::sync::RwLock::new(KeySet {
                current,
                previous: Vec::new(),
                signing,
            }),
            jwks,
            issuer: jwt.issuer.clone(),
            audience: jwt.audience.clone(),
            leeway: jwt.leeway,
            tenants: TenantCache::new(config.tenant_cache_ttl),
        })
    }

    /// Whether this instance can mint tokens (an HS256 secret is known).
    pub fn can_mint(&self) -> bool {
        self.keys.read().is_ok_and(|k| k.signing.is_some())
    }

    /// Take new keys into use (a rotation in Parameter Store). The keys they
    /// replace keep verifying tokens for `overlap`, so tokens signed just
    /// before the rotation stay valid; new tokens are signed with the new
    /// secret.
    pub fn rotate(&self, jwt: &JwtConfig, overlap: Duration) -> Result<(), KeyConfigError> {
        let current = static_keys(jwt.secret.as_ref(), jwt.public_key_pem.as_deref())?;
        let mut keys = self
            .keys
            .write()
            .map_err(|_| KeyConfigError::Jwks("key set lock poisoned".into()))?;
        let until = Instant::now() + overlap;
        let now = Instant::now();
        let old = std::mem::replace(&mut keys.current, current);
        keys.previous.retain(|(_, _, deadline)| *deadline > now);
        keys.previous
            .extend(old.into_iter().map(|(alg, key)| (alg, key, until)));
        keys.signing = jwt.secret.clone();
        Ok(())
    }

    /// Mint an HS256 token with the given claims (`iss`/`aud` filled from
    /// configuration).
    pub fn mint(&self, tenant: Option<&TenantId>, admin: bool, ttl: Duration) -> Option<String> {
        let secret = self.keys.read().ok()?.signing.clone()?;
        let now = jsonwebtoken::get_current_timestamp();
        let claims = Claims {
            exp: Some(now + ttl.as_secs()),
            iat: Some(now),
            nbf: None,
            tenant_id: tenant.map(|t| t.as_str().to_owned()),
            scope: admin.then(|| "admin".to_owned()),
            sub: tenant
                .map(|t| format!("tenant:{t}"))
                .or_else(|| admin.then(|| "admin".into())),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
        };
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.expose_secret().as_bytes()),
        )
        .ok()
    }

    /// Verify a bearer token's signature and claims.
    pub async fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| AuthError::Invalid("malformed token or unsupported algorithm"))?;
        let candidates = match (&header.kid, &self.jwks) {
            (Some(kid), Some(jwks)) => vec![jwks.key(kid, header.alg).await?],
            _ => self
                .keys
                .read()
                .map(|k| k.candidates(header.alg))
                .unwrap_or_default(),
        };
        if candidates.is_empty() {
            return Err(AuthError::Invalid("token algorithm not accepted"));
        }

        let mut validation = Validation::new(header.alg);
        let mut required = vec!["exp"];
        if self.issuer.is_some() {
            required.push("iss");
        }
        if self.audience.is_some() {
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        validation.leeway = self.leeway.as_secs();
        validation.validate_nbf = true;
        match &self.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        if let Some(iss) = &self.issuer {
            validation.set_issuer(&[iss]);
        }
        // The current key first; a key replaced by a rotation only while its
        // overlap lasts.
        let mut outcome = Err(jsonwebtoken::errors::ErrorKind::InvalidSignature.into());
        for key in &candidates {
            outcome = jsonwebtoken::decode::<Claims>(token, key, &validation);
            match &outcome {
                Err(e) if *e.kind() == jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                    continue;
                }
                _ => break,
            }
        }
        let data = outcome.map_err(|e: jsonwebtoken::errors::Error| {
            use jsonwebtoken::errors::ErrorKind as K;
            AuthError::Invalid(match e.kind() {
                K::ExpiredSignature => "token expired",
                K::ImmatureSignature => "token not yet valid",
                K::InvalidSignature => "token signature invalid",
                K::InvalidIssuer => "token issuer not accepted",
                K::InvalidAudience => "token audience not accepted",
                K::InvalidAlgorithm => "token algorithm not accepted",
                K::MissingRequiredClaim(c) if c == "exp" => "token lacks the required `exp` claim",
                K::MissingRequiredClaim(_) => "token lacks a required claim (`iss` or `aud`)",
                _ => "token invalid",
            })
        })?;
        Ok(data.claims)
    }

    /// Verify a token and resolve who it speaks for.
    pub async fn authenticate(&self, db: &Db, token: &str) -> Result<Principal, AuthError> {
        let claims = self.verify(token).await?;
        if claims.scope.as_deref() == Some("admin") && claims.tenant_id.is_none() {
            return Ok(Principal::Admin);
        }
        let tenant_id: TenantId = claims
            .tenant_id
            .as_deref()
            .ok_or(AuthError::Invalid(
                "token has neither tenant_id nor admin scope",
            ))?
            .parse()
            .map_err(|_| AuthError::Invalid("token tenant_id is not a tenant id"))?;
        let tenant = self.tenants.resolve(db, &tenant_id).await?;
        if tenant.status == TenantStatus::Suspended {
            return Err(AuthError::Suspended);
        }
        Ok(Principal::Tenant(tenant))
    }

    /// Forget a cached tenant (after an admin change in this process).
    pub fn invalidate_tenant(&self, id: &TenantId) {
        self.tenants.invalidate(id);
    }
}

/// Resolved tenant records, trusted for a short time to keep the store off
/// the hot path.
struct TenantCache {
    ttl: Duration,
    entries: Mutex<HashMap<TenantId, (Tenant, Instant)>>,
    /// The store reads under way, at most one per tenant: the requests
    /// that find a record missing or stale while it is read wait for that
    /// read, and share its answer (or its error), instead of each making
    /// one. Under 1,000 concurrent requests of a few tenants, every expiry
    /// queued up to 1,000 reads on the pool, and one waited past the
    /// pool's 5 s (BENCHMARKS.md).
    reading: Mutex<HashMap<TenantId, Read>>,
}

/// A store read of one tenant record, awaited by every request that needs
/// it.
type Read = Shared<BoxFuture<'static, Result<Option<Tenant>, Arc<StoreError>>>>;

impl TenantCache {
    fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
            reading: Mutex::new(HashMap::new()),
        }
    }

    async fn resolve(&self, db: &Db, id: &TenantId) -> Result<Tenant, AuthError> {
        let db = db.clone();
        self.resolve_with(id, |id| async move { db.tenant(&id).await }.boxed())
            .await
    }

    /// [`TenantCache::resolve`] with `load` as the store read.
    async fn resolve_with(
        &self,
        id: &TenantId,
        load: impl FnOnce(TenantId) -> BoxFuture<'static, Result<Option<Tenant>, StoreError>>,
    ) -> Result<Tenant, AuthError> {
        if let Ok(entries) = self.entries.lock()
            && let Some((tenant, at)) = entries.get(id)
            && at.elapsed() < self.ttl
        {
            return Ok(tenant.clone());
        }
        let start = || {
            load(id.clone())
                .map(|result| result.map_err(Arc::new))
                .boxed()
                .shared()
        };
        let read = match self.reading.lock() {
            Ok(mut reading) => reading.entry(id.clone()).or_insert_with(start).clone(),
            Err(_) => start(),
        };
        let result = read.clone().await;
        // The first to have the answer ends the read; the next miss reads
        // again.
        if let Ok(mut reading) = self.reading.lock()
            && reading.get(id).is_some_and(|r| r.ptr_eq(&read))
        {
            reading.remove(id);
            if let Ok(Some(tenant)) = &result
                && let Ok(mut entries) = self.entries.lock()
            {
                // Bound the map: drop expired entries when it grows.
                if entries.len() > 10_000 {
                    let ttl = self.ttl;
                    entries.retain(|_, (_, at)| at.elapsed() < ttl);
                }
                entries.insert(id.clone(), (tenant.clone(), Instant::now()));
            }
        }
        match result {
            Ok(tenant) => tenant.ok_or(AuthError::UnknownTenant),
            // While the database is unreachable, the record last read
            // stands in for a while (store::OUTAGE_FALLBACK_LIMIT): no
            // change can be made through this task meanwhile, and one made
            // through another is not missed for longer.
            Err(e) if e.is_outage() => self.last_known(id).ok_or(AuthError::Store(e)),
            Err(e) => Err(AuthError::Store(e)),
        }
    }

    fn last_known(&self, id: &TenantId) -> Option<Tenant> {
        let entries = self.entries.lock().ok()?;
        let (tenant, at) = entries.get(id)?;
        (at.elapsed() <= crate::store::OUTAGE_FALLBACK_LIMIT).then(|| tenant.clone())
    }

    fn invalidate(&self, id: &TenantId) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(id);
        }
        // A read begun before the change may hold the record before it.
        if let Ok(mut reading) = self.reading.lock() {
            reading.remove(id);
        }
    }
}

/// The keys configured by a secret and/or a PEM public key.
fn static_keys(
    secret: Option<&SecretString>,
    public_key_pem: Option<&str>,
) -> Result<Vec<(Algorithm, DecodingKey)>, KeyConfigError> {
    let mut keys = Vec::new();
    if let Some(secret) = secret {
        keys.push((
            Algorithm::HS256,
            DecodingKey::from_secret(secret.expose_secret().as_bytes()),
        ));
    }
    if let Some(pem) = public_key_pem {
        let pem = pem.replace("\\n", "\n");
        if let Ok(key) = DecodingKey::from_rsa_pem(pem.as_bytes()) {
            keys.push((Algorithm::RS256, key));
        } else if let Ok(key) = DecodingKey::from_ec_pem(pem.as_bytes()) {
            keys.push((Algorithm::ES256, key));
        } else {
            return Err(KeyConfigError::BadPublicKey);
        }
    }
    Ok(keys)
}

/// Keys from a JWKS endpoint, by `kid`.
struct Jwks {
    url: String,
    client: reqwest::Client,
    keys: tokio::sync::RwLock<HashMap<String, (Algorithm, DecodingKey)>>,
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
}

/// How often an unknown `kid` may trigger a refetch.
const JWKS_REFETCH_INTERVAL: Duration = Duration::from_secs(60);

impl Jwks {
    fn new(url: &str) -> Result<Self, KeyConfigError> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| KeyConfigError::Jwks(e.to_string()))?;
        Ok(Self {
            url: url.to_owned(),
            client,
            keys: tokio::sync::RwLock::new(HashMap::new()),
            last_fetch: tokio::sync::Mutex::new(None),
        })
    }

    async fn key(&self, kid: &str, alg: Algorithm) -> Result<DecodingKey, AuthError> {
        if !matches!(alg, Algorithm::RS256 | Algorithm::ES256) {
            return Err(AuthError::Invalid("token algorithm not accepted"));
        }
        if let Some(found) = self.lookup(kid, alg).await {
            return found;
        }
        {
            let mut last = self.last_fetch.lock().await;
            // Another request may have refetched while we waited.
            if let Some(found) = self.lookup(kid, alg).await {
                return found;
            }
            if last.is_some_and(|t| t.elapsed() < JWKS_REFETCH_INTERVAL) {
                return Err(AuthError::Invalid("token key id unknown"));
            }
            *last = Some(Instant::now());
            let fetched = self.fetch().await?;
            *self.keys.write().await = fetched;
        }
        self.lookup(kid, alg)
            .await
            .unwrap_or(Err(AuthError::Invalid("token key id unknown")))
    }

    async fn lookup(&self, kid: &str, alg: Algorithm) -> Option<Result<DecodingKey, AuthError>> {
        let keys = self.keys.read().await;
        let (key_alg, key) = keys.get(kid)?;
        Some(if *key_alg == alg {
            Ok(key.clone())
        } else {
            Err(AuthError::Invalid("token algorithm does not match its key"))
        })
    }

    async fn fetch(&self) -> Result<HashMap<String, (Algorithm, DecodingKey)>, AuthError> {
        let set: JwkSet = self
            .client
            .get(&self.url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| AuthError::KeysUnavailable(e.without_url().to_string()))?
            .json()
            .await
            .map_err(|e| AuthError::KeysUnavailable(format!("JWKS body: {}", e.without_url())))?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let Some(kid) = jwk.common.key_id.clone() else {
                continue;
            };
            let alg = match &jwk.algorithm {
                jsonwebtoken::jwk::AlgorithmParameters::RSA(_) => Algorithm::RS256,
                jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(p)
                    if p.curve == jsonwebtoken::jwk::EllipticCurve::P256 =>
                {
                    Algorithm::ES256
                }
                _ => continue,
            };
            if let Ok(key) = DecodingKey::from_jwk(jwk) {
                keys.insert(kid, (alg, key));
            }
        }
        Ok(keys)
    }
}

/// The development signing secret: read from the data dir, or created there
/// (owner-only permissions) on first start.
fn dev_secret(data_dir: &Path) -> Result<SecretString, KeyConfigError> {
    use base64::Engine as _;
    let path = data_dir.join("dev-jwt-secret");
    let err = |message: String| KeyConfigError::DevKey {
        path: path.display().to_string(),
        message,
    };
    match std::fs::read_to_string(&path) {
        Ok(s) if s.trim().len() >= 32 => return Ok(SecretString::from(s.trim().to_owned())),
        Ok(_) => return Err(err("too short; delete it to generate a new one".into())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e.to_string())),
    }
    std::fs::create_dir_all(data_dir).map_err(|e| err(e.to_string()))?;
    let bytes: [u8; 32] = rand::random();
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    write_private(&path, &secret).map_err(|e| err(e.to_string()))?;
    Ok(SecretString::from(secret))
}

#[cfg(unix)]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    std::fs::write(path, contents)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap as Map;

    fn auth_with(pairs: &[(&str, &str)]) -> Authenticator {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut env: Map<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        env.insert(
            "ANALYZER_DATA_DIR".into(),
            dir.path().to_string_lossy().into_owned(),
        );
        let config = Config::load(&env).expect("config");
        Authenticator::from_config(&config).expect("authenticator")
    }

    fn sign(claims: &serde_json::Value, secret: &str) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .expect("sign")
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[tokio::test]
    async fn a_minted_token_verifies() {
        let auth = auth_with(&[("JWT_SECRET", SECRET)]);
        let tenant = TenantId::generate();
        let token = auth
            .mint(Some(&tenant), false, Duration::from_secs(60))
            .expect("mint");
        let claims = auth.verify(&token).await.expect("valid");
        assert_eq!(claims.tenant_id.as_deref(), Some(tenant.as_str()));
    }

    #[tokio::test]
    async fn expiry_is_required_and_enforced_with_leeway() {
        let auth = auth_with(&[("JWT_SECRET", SECRET)]);
        let now = jsonwebtoken::get_current_timestamp();
        let no_exp = sign(&serde_json::json!({"scope": "admin"}), SECRET);
        let refused = auth.verify(&no_exp).await;
        assert!(
            matches!(refused, Err(AuthError::Invalid(m)) if m.contains("exp")),
            "{refused:?}"
        );
        let expired = sign(
            &serde_json::json!({"scope": "admin", "exp": now - 120}),
            SECRET,
        );
        assert!(matches!(
            auth.verify(&expired).await,
            Err(AuthError::Invalid("token expired"))
        ));
        let within_leeway = sign(
            &serde_json::json!({"scope": "admin", "exp": now - 10}),
            SECRET,
        );
        assert!(auth.verify(&within_leeway).await.is_ok());
        let future = sign(
            &serde_json::json!({"scope": "admin", "exp": now + 600, "nbf": now + 300}),
            SECRET,
        );
        assert!(matches!(
            auth.verify(&future).await,
            Err(AuthError::Invalid("token not yet valid"))
        ));
    }

    #[tokio::test]
    async fn other_keys_and_unsigned_tokens_are_refused() {
        let auth = auth_with(&[("JWT_SECRET", SECRET)]);
        let now = jsonwebtoken::get_current_timestamp();
        let claims = serde_json::json!({"scope": "admin", "exp": now + 60});
        let other = sign(&claims, "another-secret-another-secret-xx");
        assert!(matches!(
            auth.verify(&other).await,
            Err(AuthError::Invalid("token signature invalid"))
        ));

        use base64::Engine as _;
        let b64 = |v: &serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let unsigned = format!(
            "{}.{}.",
            b64(&serde_json::json!({"alg": "none", "typ": "JWT"})),
            b64(&claims)
        );
        assert!(matches!(
            auth.verify(&unsigned).await,
            Err(AuthError::Invalid(_))
        ));
        assert!(matches!(
            auth.verify("not-a-jwt").await,
            Err(AuthError::Invalid(_))
        ));
    }

    #[tokio::test]
    async fn issuer_and_audience_are_checked_when_configured() {
        let auth = auth_with(&[
            ("JWT_SECRET", SECRET),
            ("JWT_ISSUER", "https://issuer.example"),
            ("JWT_AUDIENCE", "analyzer"),
        ]);
        let now = jsonwebtoken::get_current_timestamp();
        let good = sign(
            &serde_json::json!({"scope": "admin", "exp": now + 60, "iss": "https://issuer.example", "aud": "analyzer"}),
            SECRET,
        );
        assert!(auth.verify(&good).await.is_ok());
        let wrong_iss = sign(
            &serde_json::json!({"scope": "admin", "exp": now + 60, "iss": "https://evil.example", "aud": "analyzer"}),
            SECRET,
        );
        assert!(auth.verify(&wrong_iss).await.is_err());
        let no_aud = sign(
            &serde_json::json!({"scope": "admin", "exp": now + 60, "iss": "https://issuer.example"}),
            SECRET,
        );
        assert!(auth.verify(&no_aud).await.is_err());
    }

    #[tokio::test]
    async fn an_es256_pem_key_accepts_es256_and_nothing_else() {
        let auth = auth_with(&[(
            "JWT_PUBLIC_KEY",
            include_str!("../../../tests/fixtures/ec_public.pem"),
        )]);
        let now = jsonwebtoken::get_current_timestamp();
        let claims = serde_json::json!({"scope": "admin", "exp": now + 60});
        let es256 = jsonwebtoken::encode(
            &Header::new(Algorithm::ES256),
            &claims,
            &EncodingKey::from_ec_pem(include_bytes!("../../../tests/fixtures/ec_private.pem"))
                .expect("ec key"),
        )
        .expect("sign");
        assert!(auth.verify(&es256).await.is_ok());
        assert!(!auth.can_mint());
        let hs256 = sign(&claims, SECRET);
        assert!(matches!(
            auth.verify(&hs256).await,
            Err(AuthError::Invalid("token algorithm not accepted"))
        ));
    }

    #[test]
    fn a_public_key_that_is_not_pem_is_a_startup_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let env: Map<String, String> = [
            ("JWT_PUBLIC_KEY".to_owned(), "not a key".to_owned()),
            (
                "ANALYZER_DATA_DIR".to_owned(),
                dir.path().to_string_lossy().into_owned(),
            ),
        ]
        .into();
        let config = Config::load(&env).expect("config");
        let err = Authenticator::from_config(&config).expect_err("refused");
        assert!(err.to_string().starts_with("JWT_PUBLIC_KEY"), "{err}");
    }

    #[tokio::test]
    async fn a_rotated_secret_is_used_and_the_old_one_lasts_for_the_overlap() {
        let auth = auth_with(&[("JWT_SECRET", SECRET)]);
        let now = jsonwebtoken::get_current_timestamp();
        let claims = serde_json::json!({"scope": "admin", "exp": now + 60});
        let old_token = sign(&claims, SECRET);
        let new_secret = "a-brand-new-secret-after-rotation-0001";
        let mut jwt = JwtConfig {
            secret: Some(SecretString::from(new_secret)),
            public_key_pem: None,
            jwks_url: None,
            issuer: None,
            audience: None,
            leeway: Duration::from_secs(30),
        };
        auth.rotate(&jwt, Duration::from_secs(3600))
            .expect("rotate");
        assert!(
            auth.verify(&old_token).await.is_ok(),
            "old key valid during the overlap"
        );
        assert!(auth.verify(&sign(&claims, new_secret)).await.is_ok());
        let minted = auth
            .mint(None, true, Duration::from_secs(60))
            .expect("mint");
        assert!(
            jsonwebtoken::decode::<Claims>(
                &minted,
                &DecodingKey::from_secret(new_secret.as_bytes()),
                &Validation::new(Algorithm::HS256)
            )
            .is_ok(),
            "new tokens are signed with the new secret"
        );

        // A second rotation with no overlap retires the secret it replaces at
        // once, without cutting short the first secret's remaining overlap.
        jwt.secret = Some(SecretString::from("third-secret-third-secret-third-xx"));
        auth.rotate(&jwt, Duration::ZERO).expect("rotate");
        assert!(auth.verify(&sign(&claims, new_secret)).await.is_err());
        assert!(auth.verify(&old_token).await.is_ok());
        assert!(
            auth.verify(&sign(&claims, "third-secret-third-secret-third-xx"))
                .await
                .is_ok()
        );
    }

    #[test]
    fn the_dev_secret_is_created_once_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = dev_secret(dir.path()).expect("create");
        let b = dev_secret(dir.path()).expect("reuse");
        assert_eq!(a.expose_secret(), b.expose_secret());
        assert!(a.expose_secret().len() >= 32);
    }

    #[tokio::test]
    async fn while_the_database_is_unreachable_the_last_record_read_stands_in() {
        let cache = TenantCache::new(Duration::from_millis(1));
        let id = TenantId::generate();
        let known = Tenant {
            id: id.clone(),
            name: "Acme".into(),
            tier: crate::tenants::Tier::Premium,
            status: TenantStatus::Active,
            created_at: "2026-12-02T00:00:00Z".into(),
        };
        let read = known.clone();
        cache
            .resolve_with(&id, move |_| async move { Ok(Some(read)) }.boxed())
            .await
            .expect("read");
        tokio::time::sleep(Duration::from_millis(5)).await;
        let unreachable = |_: TenantId| -> BoxFuture<'static, Result<Option<Tenant>, StoreError>> {
            async { Err(StoreError::TimedOut(Duration::from_secs(5))) }.boxed()
        };
        let during = cache
            .resolve_with(&id, unreachable)
            .await
            .expect("stands in");
        assert_eq!(during.tier, known.tier);
        // Not for a tenant never read, nor for an error that is an answer.
        let other = TenantId::generate();
        assert!(matches!(
            cache.resolve_with(&other, unreachable).await,
            Err(AuthError::Store(_))
        ));
        let broken = |_: TenantId| -> BoxFuture<'static, Result<Option<Tenant>, StoreError>> {
            async { Err(StoreError::Corrupt("bad row".into())) }.boxed()
        };
        assert!(matches!(
            cache.resolve_with(&id, broken).await,
            Err(AuthError::Store(_))
        ));
    }

    #[tokio::test]
    async fn requests_that_miss_at_once_share_one_store_read() {
        use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
        let cache = TenantCache::new(Duration::from_secs(60));
        let id = TenantId::generate();
        let reads = Arc::new(AtomicUsize::new(0));
        let load = |fail: bool| {
            let reads = Arc::clone(&reads);
            move |id: TenantId| -> BoxFuture<'static, Result<Option<Tenant>, StoreError>> {
                async move {
                    reads.fetch_add(1, SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    if fail {
                        return Err(StoreError::Corrupt("the store is down".into()));
                    }
                    Ok(Some(Tenant {
                        id,
                        name: "Acme".into(),
                        tier: crate::tenants::Tier::Standard,
                        status: TenantStatus::Active,
                        created_at: "2026-12-02T00:00:00Z".into(),
                    }))
                }
                .boxed()
            }
        };
        // The store fails: every waiting request has its error, of one read.
        let failed =
            futures::future::join_all((0..100).map(|_| cache.resolve_with(&id, load(true)))).await;
        assert!(failed.iter().all(|r| matches!(r, Err(AuthError::Store(_)))));
        assert_eq!(reads.load(SeqCst), 1);
        // An error is not kept: the next misses read again, once.
        let resolved =
            futures::future::join_all((0..100).map(|_| cache.resolve_with(&id, load(false)))).await;
        assert!(
            resolved
                .iter()
                .all(|r| r.as_ref().is_ok_and(|t| t.id == id))
        );
        assert_eq!(reads.load(SeqCst), 2);
        // Then the record is served from memory until it expires.
        let again = cache.resolve_with(&id, load(false)).await.expect("cached");
        assert_eq!((again.id, reads.load(SeqCst)), (id, 2));
    }
}
