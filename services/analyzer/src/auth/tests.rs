use super::*;
use std::collections::HashMap as Map;

use futures::FutureExt as _;
use futures::future::BoxFuture;
use jsonwebtoken::DecodingKey;
use secrecy::SecretString;

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
        Err(AuthError::Expired)
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
        include_str!("../../../../tests/fixtures/ec_public.pem"),
    )]);
    let now = jsonwebtoken::get_current_timestamp();
    let claims = serde_json::json!({"scope": "admin", "exp": now + 60});
    let es256 = jsonwebtoken::encode(
        &Header::new(Algorithm::ES256),
        &claims,
        &EncodingKey::from_ec_pem(include_bytes!("../../../../tests/fixtures/ec_private.pem"))
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
        tier: analyzer_domain::tenants::Tier::Premium,
        status: TenantStatus::Active,
        created_at: "2026-12-02T00:00:00Z".into(),
        tokens_valid_after: 0,
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
                    tier: analyzer_domain::tenants::Tier::Standard,
                    status: TenantStatus::Active,
                    created_at: "2026-12-02T00:00:00Z".into(),
                    tokens_valid_after: 0,
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
