//! Authentication: bearer JWTs verified with jsonwebtoken, resolved to a
//! [`Principal`].
//!
//! Accepted algorithms are an allow-list derived from what is configured:
//! HS256 with `JWT_SECRET`, RS256 or ES256 with `JWT_PUBLIC_KEY` (PEM) or
//! keys from `JWT_JWKS_URL` (looked up by `kid`, refetched on an unknown `kid`
//! at most once a minute). `exp` is required, `nbf` honoured, `iss`/`aud`
//! checked when configured. A tenant token resolves to the tenant record in
//! the store (cached briefly); its tier comes from there, never the token.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey, Header, Validation};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use crate::config::{Config, Environment, JwtConfig};
use analyzer_domain::tenants::{Tenant, TenantId, TenantStatus};
use analyzer_store::{Db, StoreError};

pub mod api_keys;
mod dev_key;
mod jwks;
mod keys;
mod tenant_cache;

use dev_key::dev_secret;
use jwks::Jwks;
use keys::{KeySet, static_keys};
use tenant_cache::TenantCache;

/// Who is calling.
#[derive(Debug, Clone)]
pub enum Principal {
    /// A tenant, with its record as currently stored.
    Tenant(Tenant),
    /// An operator with `scope: admin`, by the token's subject (`sub`;
    /// `admin` when it has none): the actor of the audit log.
    Admin {
        /// Who.
        subject: String,
    },
}

/// Why a request was not authenticated or not allowed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No bearer token.
    #[error("missing bearer token")]
    Missing,
    /// The token's `exp` has passed.
    #[error("token expired")]
    Expired,
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
    /// The token's own id (minted tokens carry one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// Issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Audience.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
}

/// Verifies tokens and mints them (when a signing secret is configured).
pub struct Authenticator {
    keys: std::sync::RwLock<KeySet>,
    jwks: Option<Jwks>,
    issuer: Option<String>,
    audience: Option<String>,
    leeway: Duration,
    tenants: TenantCache,
    api_keys: api_keys::KeyCache,
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
            api_keys: api_keys::KeyCache::new(config.tenant_cache_ttl),
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
        self.mint_issued(tenant, admin, ttl, 0)
    }

    /// Mint a tenant's token: issued no earlier than the tenant was last
    /// signed out everywhere, so that a token minted in the same second
    /// after that is accepted.
    pub fn mint_for(&self, tenant: &Tenant, ttl: Duration) -> Option<String> {
        self.mint_issued(Some(&tenant.id), false, ttl, tenant.tokens_valid_after)
    }

    fn mint_issued(
        &self,
        tenant: Option<&TenantId>,
        admin: bool,
        ttl: Duration,
        issued_no_earlier: u64,
    ) -> Option<String> {
        let secret = self.keys.read().ok()?.signing.clone()?;
        let now = jsonwebtoken::get_current_timestamp().max(issued_no_earlier);
        let claims = Claims {
            exp: Some(now + ttl.as_secs()),
            iat: Some(now),
            jti: Some(uuid::Uuid::new_v4().to_string()),
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
                K::ExpiredSignature => return AuthError::Expired,
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
        if let Some((id, secret)) = api_keys::parse(token) {
            let tenant_id = self.api_keys.verify(db, id, secret).await?;
            return self.tenant_principal(db, &tenant_id).await;
        }
        let claims = self.verify(token).await?;
        if claims.scope.as_deref() == Some("admin") && claims.tenant_id.is_none() {
            let subject = claims
                .sub
                .as_deref()
                .map(|s| s.chars().filter(|c| !c.is_control()).take(200).collect())
                .filter(|s: &String| !s.is_empty())
                .unwrap_or_else(|| "admin".to_owned());
            return Ok(Principal::Admin { subject });
        }
        let tenant_id: TenantId = claims
            .tenant_id
            .as_deref()
            .ok_or(AuthError::Invalid(
                "token has neither tenant_id nor admin scope",
            ))?
            .parse()
            .map_err(|_| AuthError::Invalid("token tenant_id is not a tenant id"))?;
        let principal = self.tenant_principal(db, &tenant_id).await?;
        if let Principal::Tenant(tenant) = &principal
            && claims.iat.unwrap_or(0) < tenant.tokens_valid_after
        {
            return Err(AuthError::Invalid(
                "token revoked: the tenant was signed out after it was issued",
            ));
        }
        Ok(principal)
    }

    /// The principal of an active tenant.
    async fn tenant_principal(&self, db: &Db, id: &TenantId) -> Result<Principal, AuthError> {
        let tenant = self.tenants.resolve(db, id).await?;
        match tenant.status {
            TenantStatus::Suspended => return Err(AuthError::Suspended),
            TenantStatus::Deleted => return Err(AuthError::UnknownTenant),
            TenantStatus::Active => {}
        }
        Ok(Principal::Tenant(tenant))
    }

    /// Forget a cached API key (after revoking it in this process).
    pub fn forget_api_key(&self, id: &str) {
        self.api_keys.forget(id);
    }

    /// Forget a cached tenant, and the keys cached for it (after an admin
    /// change, in this process or announced by another).
    pub fn invalidate_tenant(&self, id: &TenantId) {
        self.tenants.invalidate(id);
        self.api_keys.forget_tenant(id);
    }

    /// Forget every cached tenant and key (announcements of changes may
    /// have been missed).
    pub fn forget_all(&self) {
        self.tenants.clear();
        self.api_keys.clear();
    }
}

#[cfg(test)]
mod tests;
