//! Token verification with public keys: a PEM key, and a JWKS endpoint
//! (served here by a real HTTP listener on loopback).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use analyzer_tests::{Db, Options, now, start};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const RSA_PRIVATE: &[u8] = include_bytes!("../fixtures/rsa_private.pem");
const RSA_PUBLIC: &str = include_str!("../fixtures/rsa_public.pem");
const EC_PRIVATE: &[u8] = include_bytes!("../fixtures/ec_private.pem");
const JWKS: &str = include_str!("../fixtures/jwks.json");

fn rs256(claims: &Value, kid: Option<&str>) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_rsa_pem(RSA_PRIVATE).expect("rsa"),
    )
    .expect("sign")
}

fn es256(claims: &Value, kid: Option<&str>) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_ec_pem(EC_PRIVATE).expect("ec"),
    )
    .expect("sign")
}

/// Serve the JWKS on loopback; counts the fetches.
async fn jwks_server() -> (String, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    let task = tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 4096];
            let _ = socket.read(&mut buf).await;
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{JWKS}",
                JWKS.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
            let _ = socket.shutdown().await;
        }
    });
    (format!("http://{addr}/.well-known/jwks.json"), hits, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rs256_pem_key_verifies_tokens_and_refuses_hs256() {
    let env = start(
        Db::Sqlite,
        Options {
            no_secret: true,
            env: vec![
                ("JWT_PUBLIC_KEY".into(), RSA_PUBLIC.into()),
                ("JWT_ISSUER".into(), "https://issuer.test".into()),
                ("JWT_AUDIENCE".into(), "analyzer".into()),
            ],
            ..Options::default()
        },
    )
    .await
    .expect("sqlite always runs");
    let s = &env.server;
    let admin = json!({"scope": "admin", "exp": now() + 600, "iss": "https://issuer.test", "aud": "analyzer"});
    let (status, tenant) = s
        .post(
            "/v1/admin/tenants",
            &rs256(&admin, None),
            &json!({"name": "Pem", "tier": "standard"}),
        )
        .await;
    assert_eq!(status, 201, "{tenant}");
    let id = tenant["id"].as_str().expect("id");
    let claims = json!({"tenant_id": id, "exp": now() + 600, "iss": "https://issuer.test", "aud": "analyzer"});
    let (status, body) = s
        .post("/v1/search", &rs256(&claims, None), &json!({"query": "x"}))
        .await;
    assert_eq!(status, 200, "{body}");

    // HS256 signed with the public key as secret (algorithm confusion) is refused.
    let confused = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(RSA_PUBLIC.as_bytes()),
    )
    .expect("sign");
    let (status, _) = s
        .post("/v1/search", &confused, &json!({"query": "x"}))
        .await;
    assert_eq!(status, 401);
    // Wrong issuer or audience.
    for bad in [
        json!({"tenant_id": id, "exp": now() + 600, "iss": "https://other", "aud": "analyzer"}),
        json!({"tenant_id": id, "exp": now() + 600, "iss": "https://issuer.test", "aud": "other"}),
        json!({"tenant_id": id, "exp": now() + 600}),
    ] {
        let (status, body) = s
            .post("/v1/search", &rs256(&bad, None), &json!({"query": "x"}))
            .await;
        assert_eq!(status, 401, "{bad}: {body}");
    }
    // Minting needs a secret: the API says so instead of failing.
    let (status, body) = s
        .post(
            &format!("/v1/admin/tenants/{id}/tokens"),
            &rs256(&admin, None),
            &json!({}),
        )
        .await;
    assert_eq!(status, 409, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_keys_are_found_by_kid_and_unknown_kids_refetch_at_most_once_a_minute() {
    let (url, fetches, _server) = jwks_server().await;
    let env = start(
        Db::Sqlite,
        Options {
            no_secret: true,
            env: vec![("JWT_JWKS_URL".into(), url)],
            ..Options::default()
        },
    )
    .await
    .expect("sqlite always runs");
    let s = &env.server;
    let admin = json!({"scope": "admin", "exp": now() + 600});
    let (status, tenant) = s
        .post(
            "/v1/admin/tenants",
            &es256(&admin, Some("ec-test-1")),
            &json!({"name": "Jwks", "tier": "premium"}),
        )
        .await;
    assert_eq!(status, 201, "{tenant}");
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
    let id = tenant["id"].as_str().expect("id");
    let claims = json!({"tenant_id": id, "exp": now() + 600});
    let (status, _) = s
        .post(
            "/v1/search",
            &rs256(&claims, Some("rsa-test-1")),
            &json!({"query": "x"}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = s
        .post(
            "/v1/search",
            &es256(&claims, Some("ec-test-1")),
            &json!({"query": "x"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        1,
        "known kids are served from the cache"
    );

    for _ in 0..3 {
        let (status, _) = s
            .post(
                "/v1/search",
                &es256(&claims, Some("unknown-kid")),
                &json!({"query": "x"}),
            )
            .await;
        assert_eq!(status, 401);
    }
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        1,
        "unknown kids must not hammer the JWKS endpoint"
    );

    // A kid whose key is EC, presented with RS256: refused.
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("ec-test-1".into());
    let mismatched = jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_rsa_pem(RSA_PRIVATE).expect("rsa"),
    )
    .expect("sign");
    let (status, _) = s
        .post("/v1/search", &mismatched, &json!({"query": "x"}))
        .await;
    assert_eq!(status, 401);
}
