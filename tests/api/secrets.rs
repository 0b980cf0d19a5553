//! Parameter Store through moto's AWS server: values load before start,
//! a rotated JWT secret is accepted without a restart (the old one during
//! the overlap), and a missing path, denied access, a bad name or a
//! malformed value stop the start with a clear error that shows no value.

use std::time::{Duration, Instant};

use analyzer_tests::moto::Moto;
use analyzer_tests::{Options, TestServer, cli, now};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

fn sign_with(claims: &Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign")
}

fn unique_path() -> String {
    format!("/analyzer/test-{}", uuid::Uuid::new_v4().simple())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameters_load_at_start_and_a_rotated_secret_is_taken_without_restart() {
    let Some(moto) = Moto::start(&[]).await else {
        return;
    };
    let path = unique_path();
    let first = "first-secret-from-parameter-store-0001";
    let second = "second-secret-after-the-rotation-0002";
    moto.put(&format!("{path}/JWT_SECRET"), first, true).await;
    moto.put(
        &format!("{path}/ANALYZER_CORS_ORIGINS"),
        "https://app.example.com",
        false,
    )
    .await;

    let dir = tempfile::tempdir().expect("tempdir");
    let mut env = moto.aws_env();
    env.extend([
        ("ANALYZER_SSM_PATH".to_owned(), path.clone()),
        ("ANALYZER_ENV".to_owned(), "production".to_owned()),
        ("ANALYZER_SSM_REFRESH_SECONDS".to_owned(), "1".to_owned()),
    ]);
    let s = TestServer::start(
        dir.path(),
        None,
        Options {
            env,
            no_secret: true,
            ..Options::default()
        },
    )
    .await
    .expect("start");

    let old_admin = sign_with(&json!({"scope": "admin", "exp": now() + 600}), first);
    let (status, tenant) = s
        .post(
            "/v1/admin/tenants",
            &old_admin,
            &json!({"name": "Ssm", "tier": "standard"}),
        )
        .await;
    assert_eq!(
        status, 201,
        "the secret from Parameter Store verifies tokens: {tenant}"
    );
    let cors = s
        .http
        .request(reqwest::Method::OPTIONS, s.url("/v1/search"))
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .expect("preflight");
    assert_eq!(
        cors.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );

    moto.put(&format!("{path}/JWT_SECRET"), second, true).await;
    let new_admin = sign_with(&json!({"scope": "admin", "exp": now() + 600}), second);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, _) = s
            .get(
                &format!("/v1/admin/tenants/{}", tenant["id"].as_str().expect("id")),
                &new_admin,
            )
            .await;
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the rotated secret was never accepted"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (status, _) = s.get("/v1/admin/tenants", &old_admin).await;
    assert_eq!(status, 200, "the old secret stays valid during the overlap");
    let (status, _) = s
        .get(
            "/v1/admin/tenants",
            &sign_with(
                &json!({"scope": "admin", "exp": now() + 600}),
                "never-configured-secret-value-xyz",
            ),
        )
        .await;
    assert_eq!(status, 401);

    let ready = s
        .http
        .get(s.url("/ready"))
        .send()
        .await
        .expect("ready")
        .text()
        .await
        .expect("body");
    let output = s.output();
    for secret in [first, second] {
        assert!(!output.contains(secret), "a secret reached the logs");
        assert!(!ready.contains(secret), "a secret reached /ready");
    }
    assert!(
        output.contains("JWT keys rotated"),
        "the rotation is logged (by name only)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_path_denied_access_a_bad_name_or_a_malformed_value_stop_the_start_clearly() {
    let Some(moto) = Moto::start(&[]).await else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |env: Vec<(String, String)>| {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        cli(dir.path(), None, &env, &["migrate"])
    };
    let with_path = |moto: &Moto, path: &str| {
        let mut env = moto.aws_env();
        env.push(("ANALYZER_SSM_PATH".to_owned(), path.to_owned()));
        env
    };

    let (ok, _, err) = run(with_path(&moto, &unique_path()));
    assert!(!ok);
    assert!(
        err.contains("ANALYZER_SSM_PATH") && err.contains("no parameters"),
        "{err}"
    );

    let path = unique_path();
    let malformed = "short-but-secret";
    moto.put(&format!("{path}/JWT_SECRET"), malformed, true)
        .await;
    let (ok, _, err) = run(with_path(&moto, &path));
    assert!(!ok);
    assert!(
        err.contains("JWT_SECRET"),
        "the error names the variable: {err}"
    );
    assert!(!err.contains(malformed), "the error shows the value: {err}");

    let path = unique_path();
    moto.put(&format!("{path}/jwt-secret"), "x", true).await;
    let (ok, _, err) = run(with_path(&moto, &path));
    assert!(!ok);
    assert!(err.contains("not a valid variable name"), "{err}");

    // A server that enforces IAM: the test's credentials are refused.
    let Some(strict) = Moto::start(&[("INITIAL_NO_AUTH_ACTION_COUNT", "0")]).await else {
        return;
    };
    let (ok, _, err) = run(with_path(&strict, "/analyzer/prod"));
    assert!(!ok);
    assert!(
        err.contains("ANALYZER_SSM_PATH") && err.contains("denied"),
        "{err}"
    );

    // And serve refuses to start the same way.
    let mut env = with_path(&moto, &unique_path());
    env.push(("ANALYZER_ENV".to_owned(), "production".to_owned()));
    let started = TestServer::start(
        dir.path(),
        None,
        Options {
            env,
            no_secret: true,
            ..Options::default()
        },
    )
    .await;
    let err = started.err().expect("serve must not start").to_string();
    assert!(err.contains("ANALYZER_SSM_PATH"), "{err}");
}
