//! API keys: `ak_<id>_<secret>`. The id (64 random bits, hex) finds the
//! key; the secret (256 random bits, base64url) proves it. Only SHA-256 of
//! the secret is stored: the secret is random and long, so a fast hash
//! leaves nothing to guess (a slow one such as argon2 protects guessable
//! passwords, and would cost every key check), and a database read does
//! not give anyone a usable key. Keys are read through a cache like
//! tenants are, so a request costs no database round trip; a revocation
//! reaches every task within the cache's lifetime.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest as _, Sha256};

use super::AuthError;
use analyzer_domain::tenants::TenantId;
use analyzer_store::{ApiKey, Db};

/// What every key starts with, so that a leaked one is recognised (by
/// secret scanners too).
pub const PREFIX: &str = "ak_";

/// A key made for a tenant: the whole key (shown once) and what is stored.
#[derive(Debug)]
pub struct NewKey {
    /// The key's public id.
    pub id: String,
    /// The whole key, `ak_<id>_<secret>`.
    pub key: String,
    /// SHA-256 of the secret, hex.
    pub secret_hash: String,
}

/// A new random key.
pub fn generate() -> NewKey {
    let id: [u8; 8] = rand::random();
    let secret: [u8; 32] = rand::random();
    let id = hex::encode(id);
    let secret = URL_SAFE_NO_PAD.encode(secret);
    NewKey {
        key: format!("{PREFIX}{id}_{secret}"),
        secret_hash: hash(&secret),
        id,
    }
}

/// The key's id and secret, if `token` is shaped like a key.
pub fn parse(token: &str) -> Option<(&str, &str)> {
    let (id, secret) = token.strip_prefix(PREFIX)?.split_once('_')?;
    let hex_id = id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit());
    (hex_id && !secret.is_empty()).then_some((id, secret))
}

/// The key's display prefix: `ak_` and its id.
pub fn display_prefix(id: &str) -> String {
    format!("{PREFIX}{id}")
}

fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Whether `secret` is the one whose hash is `stored`, in time that does
/// not depend on where they differ.
fn matches(secret: &str, stored: &str) -> bool {
    let computed = hash(secret);
    let (a, b) = (computed.as_bytes(), stored.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Keys read lately, by id (unknown ids too), trusted for `ttl`.
pub(super) struct KeyCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Option<ApiKey>, Instant)>>,
    /// One read of the store at a time: requests that miss together wait
    /// for the first read and find its answer.
    reading: tokio::sync::Mutex<()>,
}

impl KeyCache {
    pub(super) fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
            reading: tokio::sync::Mutex::new(()),
        }
    }

    fn fresh(&self, id: &str) -> Option<Option<ApiKey>> {
        let entries = self.entries.lock().ok()?;
        let (key, at) = entries.get(id)?;
        (at.elapsed() < self.ttl).then(|| key.clone())
    }

    fn last_known(&self, id: &str) -> Option<ApiKey> {
        let entries = self.entries.lock().ok()?;
        let (key, at) = entries.get(id)?;
        (at.elapsed() <= analyzer_store::OUTAGE_FALLBACK_LIMIT)
            .then(|| key.clone())
            .flatten()
    }

    /// The key with this id, from the cache or the store.
    async fn get(&self, db: &Db, id: &str) -> Result<Option<ApiKey>, AuthError> {
        if let Some(known) = self.fresh(id) {
            return Ok(known);
        }
        let _turn = self.reading.lock().await;
        if let Some(known) = self.fresh(id) {
            return Ok(known);
        }
        let key = match db.api_key(id).await {
            Ok(key) => key,
            // While the database is unreachable, the key last read stands
            // in for a while, as tenants do.
            Err(e) if e.is_outage() => return self.last_known(id).map(Some).ok_or(e.into()),
            Err(e) => return Err(e.into()),
        };
        if key.as_ref().is_some_and(|k| k.revoked_at.is_none()) {
            let now = analyzer_store::now_millis();
            if let Err(e) = db.touch_api_key(id, now).await {
                tracing::warn!(error = %e, "could not record an API key's last use");
            }
        }
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() > 10_000 {
                let ttl = self.ttl;
                entries.retain(|_, (_, at)| at.elapsed() < ttl);
            }
            entries.insert(id.to_owned(), (key.clone(), Instant::now()));
        }
        Ok(key)
    }

    pub(super) fn forget(&self, id: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(id);
        }
    }

    pub(super) fn forget_tenant(&self, tenant: &TenantId) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.retain(|_, (key, _)| key.as_ref().is_none_or(|k| &k.tenant != tenant));
        }
    }

    pub(super) fn clear(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
        }
    }

    /// The tenant a key speaks for, if `secret` is its secret and it is
    /// neither revoked nor expired. Whether it is revoked or expired is
    /// said only to the holder of the right secret.
    pub(super) async fn verify(
        &self,
        db: &Db,
        id: &str,
        secret: &str,
    ) -> Result<analyzer_domain::tenants::TenantId, AuthError> {
        let invalid = AuthError::Invalid("API key invalid");
        let Some(key) = self.get(db, id).await? else {
            return Err(invalid);
        };
        if !matches(secret, &key.secret_hash) {
            return Err(invalid);
        }
        if key.revoked_at.is_some() {
            return Err(AuthError::Invalid("API key revoked"));
        }
        if key
            .expires_at
            .is_some_and(|at| at <= analyzer_store::now_millis())
        {
            return Err(AuthError::Expired);
        }
        Ok(key.tenant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_parses_back_to_its_id_and_its_secret_matches_its_hash() {
        let new = generate();
        assert!(new.key.starts_with("ak_"));
        let (id, secret) = parse(&new.key).expect("a key");
        assert_eq!(id, new.id);
        assert_eq!(secret.len(), 43, "256 bits in base64url");
        assert!(matches(secret, &new.secret_hash));
        assert!(!matches(&format!("{secret}x"), &new.secret_hash));
        assert!(!new.secret_hash.contains(secret));
        assert_ne!(generate().key, new.key);
    }

    #[test]
    fn only_key_shaped_tokens_are_taken_for_keys() {
        assert!(parse("eyJhbGciOi.x.y").is_none());
        assert!(parse("ak_").is_none());
        assert!(parse("ak_0123456789abcdef_").is_none());
        assert!(parse("ak_0123456789abcdeg_secret").is_none());
        assert_eq!(
            parse("ak_0123456789abcdef_s3cr_et"),
            Some(("0123456789abcdef", "s3cr_et"))
        );
    }
}
