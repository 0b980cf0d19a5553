//! Health, readiness, OpenAPI, request ids, CORS and problem shapes.

use analyzer_tests::{Db, Options, start};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_ready_and_openapi_answer_without_auth() {
    let env = start(Db::Sqlite, Options::default()).await.expect("start");
    let s = &env.server;
    let (status, health) =
        analyzer_tests::split(s.http.get(s.url("/health")).send().await.expect("health")).await;
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));

    let (status, ready) =
        analyzer_tests::split(s.http.get(s.url("/ready")).send().await.expect("ready")).await;
    assert_eq!(status, 200, "{ready}");
    for check in ["database", "cache", "vector_store", "llm"] {
        assert!(
            ready["checks"][check].is_object(),
            "missing {check}: {ready}"
        );
    }
    assert_eq!(ready["checks"]["vector_store"]["backend"], "qdrant-edge");

    let spec = s.openapi().await;
    assert!(
        spec["openapi"]
            .as_str()
            .expect("version")
            .starts_with("3.1")
    );
    for path in [
        "/v1/documents",
        "/v1/documents/{id}",
        "/v1/search",
        "/v1/analyze",
        "/v1/usage",
        "/v1/admin/tenants",
        "/v1/admin/tenants/{id}",
        "/v1/admin/tenants/{id}/tokens",
        "/health",
        "/ready",
        "/metrics",
    ] {
        assert!(spec["paths"][path].is_object(), "openapi lacks {path}");
    }

    let metrics = s.http.get(s.url("/metrics")).send().await.expect("metrics");
    assert_eq!(metrics.status(), 200);
    assert!(
        metrics
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/plain; version=0.0.4"))
    );
    assert_eq!(
        s.metric(r#"analyzer_cache_up{backend="memory"}"#).await,
        Some(1.0)
    );
    assert!(
        s.metric(r#"analyzer_vector_breaker_state{state="open"}"#)
            .await
            .is_none(),
        "the embedded store has no breaker"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_echoed_or_generated_and_errors_are_problems() {
    let env = start(Db::Sqlite, Options::default()).await.expect("start");
    let s = &env.server;
    let r = s
        .http
        .get(s.url("/health"))
        .header("x-request-id", "trace-me-123")
        .send()
        .await
        .expect("get");
    assert_eq!(r.headers()["x-request-id"], "trace-me-123");
    let r = s.http.get(s.url("/health")).send().await.expect("get");
    assert!(!r.headers()["x-request-id"].is_empty());

    let r = s
        .http
        .get(s.url("/nowhere"))
        .header("x-request-id", "req-404")
        .send()
        .await
        .expect("get");
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let (status, body): (u16, Value) = analyzer_tests::split(r).await;
    assert_eq!(status, 404);
    assert_eq!(body["request_id"], "req-404");

    // Unauthenticated callers learn nothing about routes (401); with a token,
    // a wrong method is a 405 problem.
    let r = s.http.put(s.url("/v1/search")).send().await.expect("put");
    assert_eq!(r.status(), 401);
    let r = s
        .http
        .put(s.url("/v1/search"))
        .bearer_auth(analyzer_tests::admin_token())
        .send()
        .await
        .expect("put");
    let (status, body) = analyzer_tests::split(r).await;
    assert_eq!(status, 405);
    assert_eq!(body["status"], 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_allows_the_configured_origins_only() {
    let env = start(
        Db::Sqlite,
        Options {
            env: vec![(
                "ANALYZER_CORS_ORIGINS".into(),
                "https://app.example.com".into(),
            )],
            ..Options::default()
        },
    )
    .await
    .expect("start");
    let s = &env.server;
    let preflight = |origin: &'static str| {
        s.http
            .request(reqwest::Method::OPTIONS, s.url("/v1/search"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type",
            )
            .send()
    };
    let ok = preflight("https://app.example.com")
        .await
        .expect("preflight");
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    let allowed = ok.headers()["access-control-allow-headers"]
        .to_str()
        .expect("headers")
        .to_ascii_lowercase();
    assert!(allowed.contains("authorization"), "{allowed}");
    let other = preflight("https://evil.example.com")
        .await
        .expect("preflight");
    assert!(other.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_mode_prints_a_working_admin_token_and_logs_no_secrets() {
    let env = start(
        Db::Sqlite,
        Options {
            no_secret: true,
            ..Options::default()
        },
    )
    .await
    .expect("start");
    let s = &env.server;
    let output = s.output();
    let token = output
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("eyJ"))
        .expect("an admin token is printed")
        .to_owned();
    let (status, tenant) = s
        .post(
            "/v1/admin/tenants",
            &token,
            &serde_json::json!({"name": "Dev", "tier": "standard"}),
        )
        .await;
    assert_eq!(status, 201, "{tenant}");
    let id = tenant["id"].as_str().expect("id");
    let (status, minted) = s
        .post(
            &format!("/v1/admin/tenants/{id}/tokens"),
            &token,
            &serde_json::json!({"ttl_seconds": 600}),
        )
        .await;
    assert_eq!(status, 200, "{minted}");
    let tenant_token = minted["token"].as_str().expect("token").to_owned();
    // Traffic with tokens must not put them (or the key) in log lines.
    let _ = s.get("/v1/usage", &tenant_token).await;
    let secret = std::fs::read_to_string(env.dir.path().join("dev-jwt-secret")).expect("dev key");
    let logs: Vec<String> = s
        .output()
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(str::to_owned)
        .collect();
    assert!(!logs.is_empty());
    for line in logs {
        assert!(
            !line.contains(&token) && !line.contains(&tenant_token),
            "token logged: {line}"
        );
        assert!(!line.contains(secret.trim()), "signing key logged: {line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_start_logs_no_error() {
    // On a new data dir every SQLite connection is opened at once; none may
    // fail (a connection that switched to WAL before waiting on the lock
    // used to log "database is locked").
    for _ in 0..3 {
        let env = analyzer_tests::start_with(Vec::new()).await;
        let s = &env.server;
        let (status, _) =
            analyzer_tests::split(s.http.get(s.url("/ready")).send().await.expect("ready")).await;
        assert_eq!(status, 200);
        let output = s.output();
        let errors: Vec<&str> = output
            .lines()
            .filter(|l| l.contains("\"level\":\"ERROR\""))
            .collect();
        assert!(errors.is_empty(), "{errors:#?}");
    }
}
