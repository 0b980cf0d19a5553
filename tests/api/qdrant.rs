//! The Qdrant server backend behind its circuit breaker. Without a Qdrant
//! server at hand, the breaker is exercised against a port that refuses and
//! a listener that accepts and never answers; the Qdrant path itself runs
//! when `QDRANT_URL` points at a real server (it says so when skipped).

use std::time::{Duration, Instant};

use analyzer_tests::{Db, Options, start};
use serde_json::json;

fn qdrant_env(url: &str) -> Vec<(String, String)> {
    vec![
        ("QDRANT_URL".into(), url.into()),
        ("QDRANT_TIMEOUT_MS".into(), "300".into()),
        ("ANALYZER_VECTOR_TIMEOUT_MS".into(), "500".into()),
        ("ANALYZER_BREAKER_FAILURES".into(), "5".into()),
        ("ANALYZER_BREAKER_OPEN_SECONDS".into(), "30".into()),
    ]
}

async fn breaker_opens_and_answers_fast(url: String) {
    let env = start(
        Db::Sqlite,
        Options {
            env: qdrant_env(&url),
            ..Options::default()
        },
    )
    .await
    .expect("the service starts while Qdrant is down");
    let s = &env.server;
    let (_, token) = s.tenant("Breaker", "standard").await;

    let (status, problem) = s
        .post(
            "/v1/documents",
            &token,
            &json!({"documents": [{"id": "d", "text": "Pumps need oil."}]}),
        )
        .await;
    assert_eq!(status, 503, "{problem}");
    let (status, _) = s.get("/v1/documents/d", &token).await;
    assert_eq!(status, 404, "nothing stored when the vector store is down");

    // Failures pile up until the breaker opens; then answers come at once.
    let mut opened = false;
    for _ in 0..10 {
        let r = s
            .request(reqwest::Method::POST, "/v1/search", &token)
            .json(&json!({"query": "pumps"}))
            .send()
            .await
            .expect("search");
        assert_eq!(r.status(), 503);
        if r.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|s| s > 5)
        {
            opened = true;
            break;
        }
    }
    assert!(opened, "the breaker never opened");
    for _ in 0..20 {
        let started = Instant::now();
        let r = s
            .request(reqwest::Method::POST, "/v1/search", &token)
            .json(&json!({"query": "pumps"}))
            .send()
            .await
            .expect("search");
        assert_eq!(r.status(), 503);
        assert!(r.headers().get("retry-after").is_some());
        assert!(
            started.elapsed() < Duration::from_millis(250),
            "an open breaker answered in {:?}",
            started.elapsed()
        );
    }
    let (status, ready) =
        analyzer_tests::split(s.http.get(s.url("/ready")).send().await.expect("ready")).await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["checks"]["vector_store"]["status"], "unavailable");
    assert!(
        ready["checks"]["vector_store"]["backend"]
            .as_str()
            .expect("backend")
            .contains("breaker open"),
        "{ready}"
    );
    let (status, health) =
        analyzer_tests::split(s.http.get(s.url("/health")).send().await.expect("health")).await;
    assert_eq!(
        (status, health["status"].as_str()),
        (200, Some("ok")),
        "liveness does not depend on Qdrant"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qdrant_that_refuses_connections_opens_the_breaker() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    breaker_opens_and_answers_fast(format!("http://127.0.0.1:{port}")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qdrant_that_accepts_and_never_answers_opens_the_breaker() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let _silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket); // accept, read nothing, answer nothing
        }
    });
    breaker_opens_and_answers_fast(format!("http://{addr}")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_qdrant_server_backend_keeps_tenants_apart() {
    let Ok(url) = std::env::var("QDRANT_URL") else {
        eprintln!(
            "SKIPPED: QDRANT_URL is not set; start a Qdrant server (see README) to run the Qdrant path"
        );
        return;
    };
    let env = start(
        Db::Sqlite,
        Options {
            env: vec![("QDRANT_URL".into(), url)],
            ..Options::default()
        },
    )
    .await
    .expect("start");
    let s = &env.server;
    let (_, a) = s.tenant("Qdrant A", "premium").await;
    let (_, b) = s.tenant("Qdrant B", "standard").await;
    let (status, _) = s.post("/v1/documents", &a, &json!({"documents": [
        {"id": "shared", "text": "Compressors are checked weekly.", "metadata": {"site": "north"}}]})).await;
    assert_eq!(status, 201);
    let (_, hits) = s
        .post(
            "/v1/search",
            &a,
            &json!({"query": "compressors weekly", "filter": {"site": "north"}}),
        )
        .await;
    assert_eq!(hits["hits"][0]["document_id"], "shared", "{hits}");
    let (_, none) = s
        .post("/v1/search", &b, &json!({"query": "compressors weekly"}))
        .await;
    assert!(none["hits"].as_array().expect("hits").is_empty(), "{none}");
    let (status, _) = s.delete("/v1/documents/shared", &b).await;
    assert_eq!(status, 404);
    let (status, _) = s.delete("/v1/documents/shared", &a).await;
    assert_eq!(status, 204);
    let (_, gone) = s
        .post("/v1/search", &a, &json!({"query": "compressors weekly"}))
        .await;
    assert!(gone["hits"].as_array().expect("hits").is_empty(), "{gone}");
}
