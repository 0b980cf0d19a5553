//! Keys from a JWKS endpoint, by `kid`, refetched on an unknown `kid` at
//! most once a minute.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey};

use super::{AuthError, KeyConfigError};

/// Keys from a JWKS endpoint, by `kid`.
pub(super) struct Jwks {
    pub(super) url: String,
    pub(super) client: reqwest::Client,
    pub(super) keys: tokio::sync::RwLock<HashMap<String, (Algorithm, DecodingKey)>>,
    pub(super) last_fetch: tokio::sync::Mutex<Option<Instant>>,
}

/// How often an unknown `kid` may trigger a refetch.
pub(super) const JWKS_REFETCH_INTERVAL: Duration = Duration::from_secs(60);

impl Jwks {
    pub(super) fn new(url: &str) -> Result<Self, KeyConfigError> {
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

    pub(super) async fn key(&self, kid: &str, alg: Algorithm) -> Result<DecodingKey, AuthError> {
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

    pub(super) async fn lookup(
        &self,
        kid: &str,
        alg: Algorithm,
    ) -> Option<Result<DecodingKey, AuthError>> {
        let keys = self.keys.read().await;
        let (key_alg, key) = keys.get(kid)?;
        Some(if *key_alg == alg {
            Ok(key.clone())
        } else {
            Err(AuthError::Invalid("token algorithm does not match its key"))
        })
    }

    pub(super) async fn fetch(
        &self,
    ) -> Result<HashMap<String, (Algorithm, DecodingKey)>, AuthError> {
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
