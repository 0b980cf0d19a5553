//! The configured keys: a shared secret and/or a PEM public key, and those
//! a rotation replaced, valid until their deadline.

use std::time::Instant;

use jsonwebtoken::{Algorithm, DecodingKey};
use secrecy::{ExposeSecret, SecretString};

use super::KeyConfigError;

/// The configured keys: the current ones, and those replaced by a rotation
/// that stay valid until their deadline.
pub(super) struct KeySet {
    pub(super) current: Vec<(Algorithm, DecodingKey)>,
    pub(super) previous: Vec<(Algorithm, DecodingKey, Instant)>,
    pub(super) signing: Option<SecretString>,
}

impl KeySet {
    /// Keys for `alg`, current first; expired previous keys are skipped.
    pub(super) fn candidates(&self, alg: Algorithm) -> Vec<DecodingKey> {
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

/// The keys configured by a secret and/or a PEM public key.
pub(super) fn static_keys(
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
