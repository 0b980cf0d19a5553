//! The query cache, in-process and in Redis: hits are marked, a change to a
//! tenant's data is never answered from an older entry, tenants never share
//! entries, and a Redis that stops and comes back is bypassed, then used.

use std::time::Duration;

use analyzer_tests::{Db, Options, OwnRedis, on_both_databases, redis_available, redis_url, start};
use serde_json::json;

async fn scenario_no_stale_results(db: Db, redis: Option<String>) {
    let options = Options {
        env: redis
            .map(|url| vec![("REDIS_URL".to_owned(), url)])
            .unwrap_or_default(),
        ..Options::default()
    };
    let Some(env) = start(db, options).await else {
        return;
    };
    let s = &env.server;
    let (_, a) = s.tenant("Cached A", "premium").await;
    let (_, b) = s.tenant("Cached B", "standard").await;
    let query = json!({"query": "solar panel efficiency", "collection": "energy", "top_k": 5});

    let (status, _) = s
        .post(
            "/v1/documents",
            &a,
            &json!({"collection": "energy", "documents": [
        {"id": "old", "text": "Solar panel efficiency reached 22 percent in lab tests."}]}),
        )
        .await;
    assert_eq!(status, 201);
    let (_, first) = s.post("/v1/search", &a, &query).await;
    assert_eq!(first["cached"], false, "{first}");
    let (_, second) = s.post("/v1/search", &a, &query).await;
    assert_eq!(second["cached"], true, "{second}");
    assert_eq!(second["hits"], first["hits"]);
    // Whitespace does not change the question.
    let (_, spaced) = s
        .post(
            "/v1/search",
            &a,
            &json!({"query": "  solar   panel efficiency ", "collection": "energy", "top_k": 5}),
        )
        .await;
    assert_eq!(spaced["cached"], true);

    // Another tenant with the same question and collection gets its own answer.
    let (status, _) = s
        .post(
            "/v1/documents",
            &b,
            &json!({"collection": "energy", "documents": [
        {"id": "b-doc", "text": "Solar panel efficiency is tenant B's own research topic."}]}),
        )
        .await;
    assert_eq!(status, 201);
    let (_, theirs) = s.post("/v1/search", &b, &query).await;
    assert_eq!(
        theirs["cached"], false,
        "B must not get A's cached entry: {theirs}"
    );
    assert!(
        theirs["hits"]
            .as_array()
            .expect("hits")
            .iter()
            .all(|h| h["document_id"] == "b-doc"),
        "{theirs}"
    );

    // Ingest: the next search sees the new document at once.
    let (status, _) = s
        .post(
            "/v1/documents",
            &a,
            &json!({"collection": "energy", "documents": [
        {"id": "new", "text": "New solar panel efficiency record: 47 percent."}]}),
        )
        .await;
    assert_eq!(status, 201);
    let (_, after_ingest) = s.post("/v1/search", &a, &query).await;
    assert_eq!(after_ingest["cached"], false, "{after_ingest}");
    let ids: Vec<&str> = after_ingest["hits"]
        .as_array()
        .expect("hits")
        .iter()
        .filter_map(|h| h["document_id"].as_str())
        .collect();
    assert!(
        ids.contains(&"new"),
        "stale result after ingest: {after_ingest}"
    );

    // Replace: the old text is never served again.
    let (_, _) = s.post("/v1/search", &a, &query).await; // cache it
    let (status, _) = s
        .post(
            "/v1/documents",
            &a,
            &json!({"collection": "energy", "documents": [
        {"id": "old", "text": "Solar panel efficiency figures were withdrawn."}]}),
        )
        .await;
    assert_eq!(status, 201);
    let (_, after_replace) = s.post("/v1/search", &a, &query).await;
    assert_eq!(after_replace["cached"], false);
    let texts: Vec<&str> = after_replace["hits"]
        .as_array()
        .expect("hits")
        .iter()
        .filter_map(|h| h["text"].as_str())
        .collect();
    assert!(
        !texts.iter().any(|t| t.contains("22 percent")),
        "stale text after replace: {after_replace}"
    );

    // Delete: gone from the next search.
    let (_, _) = s.post("/v1/search", &a, &query).await;
    let (status, _) = s.delete("/v1/documents/new", &a).await;
    assert_eq!(status, 204);
    let (_, after_delete) = s.post("/v1/search", &a, &query).await;
    assert_eq!(after_delete["cached"], false);
    assert!(
        after_delete["hits"]
            .as_array()
            .expect("hits")
            .iter()
            .all(|h| h["document_id"] != "new"),
        "{after_delete}"
    );

    let (_, ready) =
        analyzer_tests::split(s.http.get(s.url("/ready")).send().await.expect("ready")).await;
    assert_eq!(ready["checks"]["cache"]["status"], "ok", "{ready}");
}

on_both_databases! {
    async fn the_in_process_cache_never_serves_a_stale_result(db: Db) {
        scenario_no_stale_results(db, None).await;
    }
}

on_both_databases! {
    async fn the_redis_cache_never_serves_a_stale_result(db: Db) {
        if !redis_available().await {
            return;
        }
        scenario_no_stale_results(db, Some(redis_url())).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_stops_mid_traffic_is_bypassed_then_used_again() {
    let Some(mut redis) = OwnRedis::start(None).await else {
        return;
    };
    let port = redis.port;
    let env = analyzer_tests::start_with(vec![
        ("REDIS_URL".into(), redis.url()),
        ("ANALYZER_REDIS_TIMEOUT_MS".into(), "200".into()),
    ])
    .await;
    let s = &env.server;
    let (_, token) = s.tenant("Resilient", "premium").await;
    let (status, _) = s
        .post(
            "/v1/documents",
            &token,
            &json!({"documents": [
        {"text": "Wind turbines spin faster in winter storms."}]}),
        )
        .await;
    assert_eq!(status, 201);
    let query = json!({"query": "wind turbines"});
    let (_, _) = s.post("/v1/search", &token, &query).await;
    let (_, warm) = s.post("/v1/search", &token, &query).await;
    assert_eq!(warm["cached"], true, "{warm}");

    redis.stop();
    for i in 0..20 {
        let started = std::time::Instant::now();
        let (status, body) = s.post("/v1/search", &token, &query).await;
        assert_eq!(status, 200, "search {i} failed with Redis down: {body}");
        assert_eq!(body["cached"], false);
        assert!(!body["hits"].as_array().expect("hits").is_empty());
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "a search waited on the dead Redis"
        );
    }
    let (status, ready) =
        analyzer_tests::split(s.http.get(s.url("/ready")).send().await.expect("ready")).await;
    assert_eq!(
        status, 200,
        "a degraded cache must not fail readiness: {ready}"
    );
    assert_eq!(ready["status"], "degraded");
    assert_eq!(ready["checks"]["cache"]["status"], "degraded");
    assert!(
        s.metric(r#"analyzer_cache_lookups_total{outcome="bypass"}"#)
            .await
            .is_some_and(|n| n >= 20.0),
        "every bypass is counted"
    );
    assert_eq!(
        s.metric(r#"analyzer_cache_up{backend="redis"}"#).await,
        Some(0.0)
    );

    let _redis_again = OwnRedis::start(Some(port)).await.expect("restart redis");
    // Reconnects by itself: within a few seconds, results are cached again.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = s.post("/v1/search", &token, &query).await;
        assert_eq!(status, 200);
        if body["cached"] == true {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the cache never came back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, ready) =
        analyzer_tests::split(s.http.get(s.url("/ready")).send().await.expect("ready")).await;
    assert_eq!(ready["status"], "ok", "{ready}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_starts_and_serves_when_redis_is_down_at_start() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let env = analyzer_tests::start_with(vec![(
        "REDIS_URL".into(),
        format!("redis://127.0.0.1:{port}"),
    )])
    .await;
    let s = &env.server;
    let (_, token) = s.tenant("Early", "standard").await;
    let (status, _) = s
        .post(
            "/v1/documents",
            &token,
            &json!({"documents": [{"text": "Tides follow the moon."}]}),
        )
        .await;
    assert_eq!(status, 201);
    let (status, body) = s
        .post("/v1/search", &token, &json!({"query": "tides moon"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["cached"], false);
    let (status, ready) =
        analyzer_tests::split(s.http.get(s.url("/ready")).send().await.expect("ready")).await;
    assert_eq!(
        (status, ready["status"].as_str()),
        (200, Some("degraded")),
        "{ready}"
    );
    assert!(
        s.output().contains("Redis"),
        "the operator is told Redis is unreachable"
    );
}

/// A standard tenant's cached results stay within its query cache budget,
/// its oldest going first, and do not push out another tenant's.
async fn scenario_cache_budget(redis: Option<String>) {
    let mut env = vec![(
        "ANALYZER_TIER_STANDARD_QUERY_CACHE_BYTES".to_owned(),
        "4000".to_owned(),
    )];
    if let Some(url) = redis {
        env.push(("REDIS_URL".to_owned(), url));
        env.push(("ANALYZER_REDIS_TIMEOUT_MS".to_owned(), "2000".to_owned()));
    }
    let env = analyzer_tests::start_with(env).await;
    let s = &env.server;
    let (_, small) = s.tenant("Small cache", "standard").await;
    let (_, big) = s.tenant("Big cache", "premium").await;
    let text = "Budget reports list quarterly spending on travel, hardware and training.";
    for token in [&small, &big] {
        let (status, _) = s
            .post(
                "/v1/documents",
                token,
                &json!({"documents": [{"text": text}]}),
            )
            .await;
        assert_eq!(status, 201);
    }
    let query = |i: usize| json!({"query": format!("quarterly spending {i}")});
    // The premium tenant caches one result first.
    let _ = s.post("/v1/search", &big, &query(0)).await;
    // Each result is a few hundred bytes: twenty pass 4000.
    for i in 0..20 {
        let (_, r) = s.post("/v1/search", &small, &query(i)).await;
        assert_eq!(r["cached"], false, "{r}");
    }
    let (_, usage) = s.get("/v1/usage", &small).await;
    let quota = &usage["quotas"]["query_cache_bytes"];
    assert_eq!(quota["limit"], 4000, "{usage}");
    let used = quota["used"].as_u64().expect("used");
    assert!(used > 0 && used <= 4000, "{quota}");
    let (_, newest) = s.post("/v1/search", &small, &query(19)).await;
    assert_eq!(newest["cached"], true, "the newest entry is kept");
    let (_, oldest) = s.post("/v1/search", &small, &query(0)).await;
    assert_eq!(oldest["cached"], false, "the oldest entry went first");
    let (_, other) = s.post("/v1/search", &big, &query(0)).await;
    assert_eq!(other["cached"], true, "another tenant's entry is kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_in_process_cache_keeps_each_tenant_within_its_budget() {
    scenario_cache_budget(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_cache_keeps_each_tenant_within_its_budget() {
    if !analyzer_tests::redis_available().await {
        return;
    }
    scenario_cache_budget(Some(redis_url())).await;
}

/// The in-process cache's bound: set, it is used and holds nothing larger
/// than itself; unset, it comes from the process's memory limit (between
/// 1 MiB and 32 MiB) or is 32 MiB, and the start says which.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_in_process_cache_bound_is_the_setting_or_follows_the_memory_limit() {
    async fn bound(server: &analyzer_tests::TestServer) -> Option<serde_json::Value> {
        let line = server
            .log_line(|l| l["fields"]["message"] == "in-process query cache bound")
            .await?;
        Some(line["fields"].clone())
    }

    let env =
        analyzer_tests::start_with(vec![("ANALYZER_CACHE_MAX_BYTES".into(), "100".into())]).await;
    let s = &env.server;
    let fields = bound(s).await.expect("the start logs the cache bound");
    assert_eq!(fields["bytes"], 100, "{fields}");
    assert_eq!(fields["source"], "ANALYZER_CACHE_MAX_BYTES", "{fields}");
    let (_, token) = s.tenant("Tiny cache", "premium").await;
    let (status, _) = s
        .post(
            "/v1/documents",
            &token,
            &json!({"documents": [{"id": "d", "text": "Tidal power stations turn the sea's rise and fall into electricity, around the clock and on a timetable."}]}),
        )
        .await;
    assert_eq!(status, 201);
    let query = json!({"query": "tidal power electricity", "top_k": 5});
    let (_, first) = s.post("/v1/search", &token, &query).await;
    assert_eq!(first["hits"].as_array().map(Vec::len), Some(1), "{first}");
    let (_, again) = s.post("/v1/search", &token, &query).await;
    assert_eq!(
        again["cached"], false,
        "an entry over the bound is not kept: {again}"
    );

    let env = analyzer_tests::start_with(Vec::new()).await;
    let fields = bound(&env.server)
        .await
        .expect("the start logs the cache bound");
    let bytes = fields["bytes"].as_u64().expect("bytes");
    match fields["source"].as_str() {
        Some("default") => assert_eq!(bytes, 32 << 20, "{fields}"),
        Some("memory limit") => {
            let limit = fields["memory_limit"].as_u64().expect("memory_limit");
            assert_eq!(bytes, (limit / 16).clamp(1 << 20, 32 << 20), "{fields}");
        }
        other => panic!("unexpected source {other:?}: {fields}"),
    }
}
