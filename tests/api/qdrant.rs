//! The Qdrant server backend behind its circuit breaker. The breaker is
//! exercised against a port that refuses, a listener that accepts and never
//! answers, and a gRPC server speaking Qdrant's protocol that goes away and
//! comes back (recovery). The Qdrant path runs on every test run against
//! that gRPC peer, and also against a real Qdrant server when `QDRANT_URL`
//! points at one (it says so when skipped).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use analyzer_tests::TestServer;
use analyzer_tests::qdrant_wire::FakeQdrant;
use qdrant_client::qdrant::{Filter, condition::ConditionOneOf, r#match::MatchValue};
use serde_json::{Value, json};

/// The collection of the built-in embedder's model.
const COLLECTION: &str = "analyzer_builtin_words";

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
    let env = analyzer_tests::start_with(qdrant_env(&url)).await;
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
    let errors = async |kind: &str| {
        s.metric(&format!(
            r#"analyzer_vector_errors_total{{backend="qdrant",kind="{kind}",operation="search"}}"#
        ))
        .await
        .unwrap_or(0.0)
    };
    let (reached, refused) = (errors("unavailable").await, errors("circuit_open").await);
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
        // Well under one vector deadline (500 ms): no call was waited for.
        assert!(
            started.elapsed() < Duration::from_millis(450),
            "an open breaker answered in {:?}",
            started.elapsed()
        );
    }
    // While open, no search reached Qdrant: each was refused by the breaker.
    assert_eq!(errors("unavailable").await, reached);
    assert_eq!(errors("circuit_open").await, refused + 20.0);
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
    for kind in ["unavailable", "circuit_open"] {
        let errors = s
            .metric(&format!(
                r#"analyzer_vector_errors_total{{backend="qdrant",kind="{kind}",operation="search"}}"#
            ))
            .await;
        assert!(
            errors >= Some(1.0),
            "{kind} search errors counted: {errors:?}"
        );
    }
    assert!(
        s.metric(r#"analyzer_vector_request_duration_seconds_count{backend="qdrant",operation="upsert",outcome="error"}"#)
            .await
            >= Some(1.0)
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

/// Tenant isolation, filters and deletes over a Qdrant server at `url`.
async fn qdrant_path_keeps_tenants_apart(url: &str, api_key: Option<&str>) {
    let mut env = vec![("QDRANT_URL".to_owned(), url.to_owned())];
    if let Some(key) = api_key {
        env.push(("QDRANT_API_KEY".to_owned(), key.to_owned()));
    }
    let env = analyzer_tests::start_with(env).await;
    let s = &env.server;
    let (_, a) = s.tenant("Qdrant A", "premium").await;
    let (_, b) = s.tenant("Qdrant B", "standard").await;
    let (status, body) = s.post("/v1/documents", &a, &json!({"documents": [
        {"id": "shared", "text": "Compressors are checked weekly.", "metadata": {"site": "north"}},
        {"id": "other", "text": "Compressors in the south hall are checked monthly.", "metadata": {"site": "south"}}]})).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = s.post("/v1/documents", &b, &json!({"documents": [
        {"id": "shared", "text": "Tenant B keeps its own notes on boilers.", "metadata": {"site": "north"}}]})).await;
    assert_eq!(status, 201, "{body}");

    let (_, hits) = s
        .post(
            "/v1/search",
            &a,
            &json!({"query": "compressors weekly", "filter": {"site": "north"}}),
        )
        .await;
    let hits = hits["hits"].as_array().expect("hits").clone();
    assert_eq!(hits.len(), 1, "the metadata filter holds: {hits:?}");
    assert_eq!(hits[0]["document_id"], "shared");
    assert!(
        hits[0]["text"]
            .as_str()
            .expect("text")
            .contains("Compressors")
    );

    let (_, other) = s
        .post("/v1/search", &b, &json!({"query": "compressors weekly"}))
        .await;
    let other = other["hits"].as_array().expect("hits").clone();
    assert!(
        other
            .iter()
            .all(|h| h["text"].as_str().is_some_and(|t| t.contains("boilers"))),
        "tenant B sees only its own chunks: {other:?}"
    );

    let (status, _) = s.delete("/v1/documents/other", &b).await;
    assert_eq!(status, 404, "B cannot delete A's document");
    let (status, _) = s.delete("/v1/documents/shared", &a).await;
    assert_eq!(status, 204);
    let (_, after) = s
        .post(
            "/v1/search",
            &a,
            &json!({"query": "compressors weekly", "filter": {"site": "north"}}),
        )
        .await;
    assert!(
        after["hits"].as_array().expect("hits").is_empty(),
        "{after}"
    );
    let (_, kept) = s
        .post("/v1/search", &b, &json!({"query": "boilers notes"}))
        .await;
    assert_eq!(
        kept["hits"][0]["document_id"], "shared",
        "A's delete left B's same-named document alone: {kept}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_qdrant_server_backend_keeps_tenants_apart() {
    let Ok(url) = std::env::var("QDRANT_URL") else {
        eprintln!(
            "SKIPPED: QDRANT_URL is not set; start a Qdrant server (see docs/testing.md) to run the Qdrant path against it"
        );
        return;
    };
    qdrant_path_keeps_tenants_apart(&url, std::env::var("QDRANT_API_KEY").ok().as_deref()).await;
}

/// Whether a filter requires the tenant's id as its first condition.
fn first_condition_is_tenant(filter: &Filter) -> Option<String> {
    match filter.must.first()?.condition_one_of.as_ref()? {
        ConditionOneOf::Field(field) if field.key == "tenant_id" => {
            match field.r#match.as_ref()?.match_value.as_ref()? {
                MatchValue::Keyword(tenant) => Some(tenant.clone()),
                _ => None,
            }
        }
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_qdrant_path_over_grpc_keeps_tenants_apart_and_filters_by_tenant_on_the_wire() {
    let qdrant = FakeQdrant::start(([127, 0, 0, 1], 0).into(), Some("test-api-key"))
        .await
        .expect("gRPC peer");
    qdrant_path_keeps_tenants_apart(&qdrant.url, Some("test-api-key")).await;

    let state = &qdrant.state;
    assert_eq!(state.collection_names(), vec![COLLECTION.to_owned()]);
    let indexes = state.indexes(COLLECTION);
    assert!(indexes["tenant_id"].is_tenant, "{indexes:?}");
    for field in ["document_id", "collection"] {
        assert!(!indexes[field].is_tenant, "{field}: {indexes:?}");
    }
    // Only what a filter uses is indexed: not the chunk number.
    assert_eq!(indexes.len(), 3, "{indexes:?}");
    assert!(
        state.search_efs().iter().all(Option::is_none),
        "no hnsw_ef unless configured: the server's default"
    );
    let filters = state.filters();
    assert!(filters.iter().any(|(call, _)| call == "search"));
    assert!(filters.iter().any(|(call, _)| call == "delete"));
    for (call, filter) in &filters {
        assert!(
            first_condition_is_tenant(filter).is_some(),
            "a {call} went out without the tenant condition: {filter:?}"
        );
    }
    assert_eq!(
        state.point_count(COLLECTION),
        2,
        "A's remaining document and B's document are stored"
    );
    // Every data call carried the request's W3C trace context.
    let traceparents = state.traceparents();
    assert!(
        traceparents.len() >= filters.len(),
        "{} traceparents for {} filtered calls",
        traceparents.len(),
        filters.len()
    );
    for traceparent in &traceparents {
        let parts: Vec<&str> = traceparent.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [2, 32, 16, 2],
            "{traceparent}"
        );
        assert_ne!(parts[1], "0".repeat(32), "{traceparent}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configured_search_ef_goes_out_with_every_search() {
    let qdrant = FakeQdrant::start(([127, 0, 0, 1], 0).into(), None)
        .await
        .expect("gRPC peer");
    let mut env = qdrant_env(&qdrant.url);
    env.push(("ANALYZER_VECTOR_SEARCH_EF".into(), "200".into()));
    let env = analyzer_tests::start_with(env).await;
    let s = &env.server;
    let (_, token) = s.tenant("Wide", "standard").await;
    for query in ["pumps", "valves"] {
        let (status, body) = s.post("/v1/search", &token, &json!({"query": query})).await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(qdrant.state.search_efs(), [Some(200), Some(200)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_qdrant_api_key_is_an_unavailable_store_not_a_crash() {
    let qdrant = FakeQdrant::start(([127, 0, 0, 1], 0).into(), Some("right-key"))
        .await
        .expect("gRPC peer");
    let env = analyzer_tests::start_with(vec![
        ("QDRANT_URL".into(), qdrant.url.clone()),
        ("QDRANT_API_KEY".into(), "wrong-key".into()),
    ])
    .await;
    let s = &env.server;
    let (_, token) = s.tenant("Keyless", "standard").await;
    let (status, problem) = s
        .post(
            "/v1/documents",
            &token,
            &json!({"documents": [{"id": "d", "text": "x"}]}),
        )
        .await;
    assert_eq!(status, 503, "{problem}");
    assert!(
        !env.server.output().contains("wrong-key"),
        "the API key never reaches a log line"
    );
    assert!(qdrant.state.collection_names().is_empty());
}

async fn vector_store_check(s: &TestServer) -> (u16, Value) {
    let (status, ready) =
        analyzer_tests::split(s.http.get(s.url("/ready")).send().await.expect("ready")).await;
    (status, ready["checks"]["vector_store"].clone())
}

/// Search until the breaker reports open in `/ready`.
async fn open_the_breaker(s: &TestServer, token: &str) {
    for _ in 0..20 {
        let (status, _) = s
            .post("/v1/search", token, &json!({"query": "pumps"}))
            .await;
        assert_eq!(status, 503);
        let (_, check) = vector_store_check(s).await;
        if check["backend"]
            .as_str()
            .is_some_and(|b| b.contains("breaker open"))
        {
            return;
        }
    }
    panic!("the breaker never opened");
}

/// Retry `call` until it answers 200 or `within` passes.
async fn until_ok(within: Duration, mut call: impl AsyncFnMut() -> (u16, Value)) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let (status, body) = call().await;
        if status == 200 {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "still {status} after {within:?}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_closes_again_when_qdrant_comes_back() {
    // A port with nothing on it: Qdrant is down when the service starts.
    let addr: SocketAddr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port");
    let env = analyzer_tests::start_with(vec![
        ("QDRANT_URL".into(), format!("http://{addr}")),
        ("QDRANT_TIMEOUT_MS".into(), "300".into()),
        ("ANALYZER_VECTOR_TIMEOUT_MS".into(), "500".into()),
        ("ANALYZER_BREAKER_FAILURES".into(), "3".into()),
        ("ANALYZER_BREAKER_OPEN_SECONDS".into(), "2".into()),
    ])
    .await;
    let s = &env.server;
    let (_, token) = s.tenant("Recovery", "standard").await;
    open_the_breaker(s, &token).await;

    // Qdrant comes up; after the open period one probe goes through, the
    // collection is created on that first contact, and the breaker closes.
    assert_eq!(
        s.metric(r#"analyzer_vector_breaker_state{state="open"}"#)
            .await,
        Some(1.0)
    );
    let qdrant = FakeQdrant::start(addr, None).await.expect("gRPC peer");
    let hits = until_ok(Duration::from_secs(15), async || {
        s.post("/v1/search", &token, &json!({"query": "pumps"}))
            .await
    })
    .await;
    assert!(hits["hits"].as_array().expect("hits").is_empty());
    let (status, check) = vector_store_check(s).await;
    assert_eq!(
        (status, check["status"].as_str()),
        (200, Some("ok")),
        "{check}"
    );
    assert_eq!(qdrant.state.collection_names(), vec![COLLECTION.to_owned()]);
    assert_eq!(
        s.metric(r#"analyzer_vector_breaker_state{state="closed"}"#)
            .await,
        Some(1.0)
    );
    let (status, body) = s
        .post(
            "/v1/documents",
            &token,
            &json!({"documents": [{"id": "p", "text": "Pumps need oil every month."}]}),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    // It goes away again: the breaker opens again and answers at once.
    let kept = qdrant.stop();
    open_the_breaker(s, &token).await;
    let started = Instant::now();
    let (status, _) = s.post("/v1/search", &token, &json!({"query": "oil"})).await;
    assert_eq!(status, 503);
    assert!(started.elapsed() < Duration::from_millis(250));

    // And back with its data: the stored document is found again.
    let _qdrant = FakeQdrant::restart(addr, kept).await.expect("gRPC peer");
    let found = until_ok(Duration::from_secs(15), async || {
        s.post("/v1/search", &token, &json!({"query": "pumps oil month"}))
            .await
    })
    .await;
    assert_eq!(found["hits"][0]["document_id"], "p", "{found}");
    let (status, check) = vector_store_check(s).await;
    assert_eq!(
        (status, check["status"].as_str()),
        (200, Some("ok")),
        "{check}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_qdrant_path_metadata_changes_in_place_and_an_offboarded_tenant_leaves_no_point() {
    let qdrant = FakeQdrant::start(([127, 0, 0, 1], 0).into(), None)
        .await
        .expect("gRPC peer");
    let env = analyzer_tests::start_with(vec![("QDRANT_URL".into(), qdrant.url.clone())]).await;
    let s = &env.server;
    let (a, token) = s.tenant("Qdrant Leaving", "premium").await;
    let (b, other) = s.tenant("Qdrant Staying", "premium").await;
    for t in [&token, &other] {
        let (status, body) = s.post("/v1/documents", t, &json!({"documents": [
            {"id": "pump", "text": "The pump house is inspected every spring.", "metadata": {"site": "north"}},
            {"id": "gate", "text": "The flood gate is tested every autumn.", "metadata": {"site": "south"}}]})).await;
        assert_eq!(status, 201, "{body}");
    }
    let state = &qdrant.state;
    assert!(state.points_where(COLLECTION, "tenant_id", &a) >= 2);

    // A metadata change is a payload change on the server, no new points.
    let points = state.point_count(COLLECTION);
    let r = s
        .request(reqwest::Method::PATCH, "/v1/documents/pump", &token)
        .json(&json!({"metadata": {"site": "east"}}))
        .send()
        .await
        .expect("patch");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(state.point_count(COLLECTION), points, "nothing re-embedded");
    let (_, found) = s
        .post(
            "/v1/search",
            &token,
            &json!({"query": "pump house inspected", "filter": {"site": "east"}}),
        )
        .await;
    assert_eq!(found["hits"][0]["document_id"], "pump", "{found}");
    let (_, found) = s
        .post(
            "/v1/search",
            &other,
            &json!({"query": "pump house inspected", "filter": {"site": "east"}}),
        )
        .await;
    assert_eq!(
        found["hits"],
        json!([]),
        "another tenant's metadata changed: {found}"
    );
    assert!(
        state
            .filters()
            .iter()
            .filter(|(call, _)| call == "set_payload")
            .all(|(_, filter)| first_condition_is_tenant(filter).is_some()),
        "a payload change went out without the tenant condition"
    );

    // Offboarding removes every point of the tenant, none of another's.
    let (status, _) = s
        .delete(
            &format!("/v1/admin/tenants/{a}"),
            &analyzer_tests::admin_token(),
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(state.points_where(COLLECTION, "tenant_id", &a), 0);
    assert!(state.points_where(COLLECTION, "tenant_id", &b) >= 2);
    let (_, found) = s
        .post("/v1/search", &other, &json!({"query": "flood gate tested"}))
        .await;
    assert_eq!(found["hits"][0]["document_id"], "gate", "{found}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offboarding_killed_before_its_vectors_are_removed_is_finished_after_the_restart() {
    let qdrant = FakeQdrant::start(([127, 0, 0, 1], 0).into(), None)
        .await
        .expect("gRPC peer");
    let addr = qdrant.addr;
    let mut env = analyzer_tests::start_with(qdrant_env(&qdrant.url)).await;
    let (a, token) = env.server.tenant("Killed Leaving", "premium").await;
    let (b, other) = env.server.tenant("Killed Staying", "premium").await;
    for t in [&token, &other] {
        let documents: Vec<Value> = (0..5)
            .map(|i| json!({"id": format!("log-{i}"), "text": format!("Lock keeper's log {i}: the gates were greased.")}))
            .collect();
        let (status, body) = env
            .server
            .post("/v1/documents", t, &json!({"documents": documents}))
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let others = qdrant.state.points_where(COLLECTION, "tenant_id", &b);
    assert!(qdrant.state.points_where(COLLECTION, "tenant_id", &a) >= 5);

    // The deletion commits in the database, its vectors cannot be removed
    // (Qdrant is away), and the process dies (SIGKILL) before any retry.
    let kept = qdrant.stop();
    let (status, body) = env
        .server
        .delete(
            &format!("/v1/admin/tenants/{a}"),
            &analyzer_tests::admin_token(),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    let qdrant = FakeQdrant::restart(addr, kept).await.expect("gRPC peer");
    assert!(
        qdrant.state.points_where(COLLECTION, "tenant_id", &a) >= 5,
        "the vectors are still there when the process dies"
    );
    env.server = env.server.crash_and_restart().await.expect("start again");

    // The restarted process finishes the deletion from the vector journal.
    let deadline = Instant::now() + Duration::from_secs(60);
    while qdrant.state.points_where(COLLECTION, "tenant_id", &a) > 0 {
        assert!(
            Instant::now() < deadline,
            "the deleted tenant's vectors were never removed after the restart"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        qdrant.state.points_where(COLLECTION, "tenant_id", &b),
        others,
        "another tenant lost vectors"
    );
    let (status, problem) = env.server.get("/v1/me", &token).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (401, Some("tenant_unknown")),
        "{problem}"
    );
    let (_, found) = env
        .server
        .post(
            "/v1/search",
            &other,
            &json!({"query": "gates greased", "top_k": 10}),
        )
        .await;
    assert_eq!(found["hits"].as_array().map(Vec::len), Some(5), "{found}");
}
