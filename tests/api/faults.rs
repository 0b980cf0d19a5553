//! Faults that must cost nothing: a crash in the middle of ingests leaves
//! no chunk searchable without its document and loses nothing that was
//! acknowledged; a database that stops answering costs milliseconds per
//! request, not seconds, and cached searches go on.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use analyzer_tests::qdrant_wire::FakeQdrant;
use analyzer_tests::tcp_proxy::{Mode, TcpProxy};
use analyzer_tests::{Db, Env, Options, PgDatabase, TestServer, on_both_databases, start};
use serde_json::{Value, json};

/// The collection of the built-in embedder's model on a Qdrant server.
const COLLECTION: &str = "analyzer_builtin_words";

const TEXT: &str = "Turbines spin faster when the wind rises over the ridge.";

/// A server whose requests (uploads too) time out after 2 s, so that an
/// ingest its task left pending is given up on 7 s later, and whose
/// premium tier is not limited; on a Qdrant peer if given.
async fn server(db: Db, qdrant: Option<&FakeQdrant>) -> Option<Env> {
    let mut env: Vec<(String, String)> = [
        ("ANALYZER_REQUEST_TIMEOUT_SECONDS", "2"),
        ("ANALYZER_UPLOAD_TIMEOUT_SECONDS", "2"),
        ("ANALYZER_TIER_PREMIUM_REQUESTS_PER_MINUTE", "1000000"),
        ("ANALYZER_TIER_PREMIUM_CONCURRENT_REQUESTS", "1000"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    if let Some(q) = qdrant {
        env.push(("QDRANT_URL".to_owned(), q.url.clone()));
    }
    start(
        db,
        Options {
            env,
            ..Options::default()
        },
    )
    .await
}

/// Store the document `kept`.
async fn ingest_kept(s: &TestServer, token: &str) {
    let (status, body) = s
        .post(
            "/v1/documents",
            token,
            &json!({"documents": [{"id": "kept", "text": TEXT}]}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
}

/// Every hit of a wide search is a document that `GET` finds.
async fn every_hit_is_readable(env: &Env, token: &str) -> usize {
    let s = &env.server;
    let (status, found) = s
        .post(
            "/v1/search",
            token,
            &json!({"query": "turbines wind ridge", "top_k": 100}),
        )
        .await;
    assert_eq!(status, 200, "{found}");
    let hits = found["hits"].as_array().expect("hits");
    for hit in hits {
        let id = hit["document_id"].as_str().expect("document id");
        let (status, body) = s.get(&format!("/v1/documents/{id}"), token).await;
        assert_eq!(
            status, 200,
            "search returned {id}, which GET cannot read: {body}"
        );
    }
    hits.len()
}

/// Chunks stored for `ids`, by the documents `GET` returns.
async fn stored_chunks(env: &Env, token: &str, ids: &[String]) -> u64 {
    let mut chunks = 0;
    for id in ids {
        let (status, doc) = env.server.get(&format!("/v1/documents/{id}"), token).await;
        match status {
            200 => chunks += doc["chunks"].as_u64().expect("chunks"),
            404 => {}
            other => panic!("GET {id}: {other} {doc}"),
        }
    }
    chunks
}

/// Four clients ingest without pause; the server is killed (SIGKILL) while
/// they do and started again.
async fn kill_during_an_ingest_stream(db: Db, qdrant: Option<&FakeQdrant>) {
    let Some(mut env) = server(db, qdrant).await else {
        return;
    };
    let (_, token) = env.server.tenant("Crash", "premium").await;
    let attempted = Arc::new(Mutex::new(Vec::<String>::new()));
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (http, url, token) = (
                env.server.http.clone(),
                env.server.url("/v1/documents"),
                token.clone(),
            );
            let (attempted, acknowledged) = (Arc::clone(&attempted), Arc::clone(&acknowledged));
            tokio::spawn(async move {
                for i in 0..10_000 {
                    let id = format!("w{w}-{i}");
                    if let Ok(mut a) = attempted.lock() {
                        a.push(id.clone());
                    }
                    let body =
                        json!({"documents": [{"id": id, "text": format!("{TEXT} Entry {i}.")}]});
                    match http.post(&url).bearer_auth(&token).json(&body).send().await {
                        Ok(r) if r.status() == 201 => {
                            if let Ok(mut a) = acknowledged.lock() {
                                a.push(id);
                            }
                        }
                        Ok(_) => {}
                        Err(_) => return,
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(700)).await;
    env.server = env.server.crash_and_restart().await.expect("start again");
    for w in writers {
        w.await.expect("writer");
    }
    let acknowledged = acknowledged.lock().expect("ids").clone();
    let attempted = attempted.lock().expect("ids").clone();
    assert!(
        !acknowledged.is_empty(),
        "no ingest finished before the kill"
    );
    for id in &acknowledged {
        let (status, body) = env.server.get(&format!("/v1/documents/{id}"), &token).await;
        assert_eq!(status, 200, "acknowledged {id} lost: {body}");
    }
    assert!(every_hit_is_readable(&env, &token).await > 0);

    if let Some(q) = qdrant {
        // The sweep removes what the killed ingests wrote without a row.
        let stored = stored_chunks(&env, &token, &attempted).await;
        let deadline = Instant::now() + Duration::from_secs(40);
        let (started, before) = (Instant::now(), q.state.point_count(COLLECTION) as u64);
        loop {
            let points = q.state.point_count(COLLECTION) as u64;
            if points == stored {
                eprintln!(
                    "after the kill: {} acknowledged, {before} points for {stored} stored chunks, \
                     swept {:?} after the restart",
                    acknowledged.len(),
                    started.elapsed()
                );
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{points} points in Qdrant for {stored} stored chunks"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

on_both_databases! {
    async fn a_kill_during_an_ingest_stream_on_the_embedded_store_loses_nothing_and_shows_no_phantom(db: Db) {
        kill_during_an_ingest_stream(db, None).await;
    }
}

on_both_databases! {
    async fn a_kill_during_an_ingest_stream_on_a_qdrant_server_loses_nothing_and_leaves_no_phantom(db: Db) {
        let qdrant = FakeQdrant::start(([127, 0, 0, 1], 0).into(), None)
            .await
            .expect("gRPC peer");
        kill_during_an_ingest_stream(db, Some(&qdrant)).await;
    }
}

/// The moment the issue found phantoms at, made certain: the documents
/// table is locked against writes from outside, so an ingest of five
/// documents writes their vectors to Qdrant and then waits for the
/// transaction that would store their rows; the server is killed there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vectors_written_by_an_ingest_killed_before_its_commit_are_never_found_and_are_removed() {
    let qdrant = FakeQdrant::start(([127, 0, 0, 1], 0).into(), None)
        .await
        .expect("gRPC peer");
    let Some(mut env) = server(Db::Postgres, Some(&qdrant)).await else {
        return;
    };
    let (_, token) = env.server.tenant("Stuck", "premium").await;
    ingest_kept(&env.server, &token).await;
    let kept_points = qdrant.state.point_count(COLLECTION);

    let url = &env.pg.as_ref().expect("PostgreSQL").url;
    let mut lock = <sqlx::PgConnection as sqlx::Connection>::connect(url)
        .await
        .expect("connect");
    sqlx::query("BEGIN")
        .execute(&mut lock)
        .await
        .expect("begin");
    sqlx::query("LOCK TABLE documents IN EXCLUSIVE MODE")
        .execute(&mut lock)
        .await
        .expect("lock the documents against writes");
    let documents: Vec<_> = (0..5)
        .map(|i| json!({"id": format!("stuck-{i}"), "text": TEXT}))
        .collect();
    let stuck = {
        let request = env
            .server
            .request(reqwest::Method::POST, "/v1/documents", &token)
            .json(&json!({ "documents": documents }));
        tokio::spawn(async move { request.send().await })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while qdrant.state.point_count(COLLECTION) < kept_points + 5 {
        assert!(
            Instant::now() < deadline,
            "the ingests never wrote their vectors"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    env.server = env.server.crash_and_restart().await.expect("start again");
    drop(lock);
    let answer = stuck.await.expect("join");
    assert!(answer.is_err(), "the ingest was answered: {answer:?}");
    assert!(qdrant.state.point_count(COLLECTION) >= kept_points + 5);

    // Searchable: only the document the database has.
    let (status, found) = env
        .server
        .post(
            "/v1/search",
            &token,
            &json!({"query": "turbines wind ridge", "top_k": 20}),
        )
        .await;
    assert_eq!(status, 200, "{found}");
    let ids: Vec<&Value> = found["hits"]
        .as_array()
        .expect("hits")
        .iter()
        .map(|h| &h["document_id"])
        .collect();
    assert_eq!(ids, [&json!("kept")], "{found}");
    for i in 0..5 {
        let (status, _) = env
            .server
            .get(&format!("/v1/documents/stuck-{i}"), &token)
            .await;
        assert_eq!(status, 404);
    }
    // And removed, once the pending ingests are older than a request may run.
    let deadline = Instant::now() + Duration::from_secs(40);
    while qdrant.state.point_count(COLLECTION) != kept_points {
        assert!(
            Instant::now() < deadline,
            "{} points left for {kept_points}",
            qdrant.state.point_count(COLLECTION)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let line = env
        .server
        .log_line(|l| l["fields"]["message"] == "vector journal swept")
        .await
        .expect("the sweep is logged");
    assert_eq!(line["fields"]["removed"], 5, "{line}");
}

/// The database's `host:port` in a PostgreSQL URL.
fn host_port(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_database_is_unreachable_requests_fail_fast_searches_answer_and_it_recovers() {
    let Some(pg) = PgDatabase::create().await else {
        return;
    };
    let target = host_port(&pg.url).to_owned();
    let resolved = tokio::net::lookup_host(&target)
        .await
        .expect("resolve")
        .next()
        .expect("an address");
    let proxy = TcpProxy::start(resolved).await.expect("proxy");
    let url = pg.url.replacen(&target, &proxy.addr.to_string(), 1);
    let dir = tempfile::tempdir().expect("tempdir");
    let env = [
        ("ANALYZER_DB_QUERY_TIMEOUT_MS", "1000"),
        ("ANALYZER_DB_ACQUIRE_TIMEOUT_MS", "500"),
        ("ANALYZER_DB_BREAKER_FAILURES", "3"),
        ("ANALYZER_DB_BREAKER_OPEN_SECONDS", "2"),
    ];
    let s = TestServer::start(
        dir.path(),
        Some(&url),
        Options {
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ..Options::default()
        },
    )
    .await
    .expect("server");
    let (_, token) = s.tenant("Partitioned", "premium").await;
    ingest_kept(&s, &token).await;
    let query = json!({"query": "turbines wind"});
    let (_, first) = s.post("/v1/search", &token, &query).await;
    assert_eq!(first["cached"], false, "{first}");
    let (_, second) = s.post("/v1/search", &token, &query).await;
    assert_eq!(second["cached"], true, "{second}");

    // The database stops answering: connections stay open and silent.
    proxy.set(Mode::Silent);
    let timed = async |method: reqwest::Method, path: &str, body: Option<&Value>| {
        let started = Instant::now();
        let mut request = s.request(method, path, &token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let r = request.send().await.expect("answered");
        let retry = r.headers().get("retry-after").is_some();
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        (status, started.elapsed(), retry, body)
    };
    let mut fast = 0;
    let mut waits = Vec::new();
    for _ in 0..20 {
        let (status, took, retry, body) =
            timed(reqwest::Method::GET, "/v1/documents/kept", None).await;
        waits.push(took);
        assert_eq!(status, 503, "{body}");
        assert!(retry, "a 503 without Retry-After");
        assert!(took < Duration::from_millis(2500), "waited {took:?}");
        if took < Duration::from_millis(100) {
            fast += 1;
            if fast == 5 {
                break;
            }
        } else {
            assert_eq!(fast, 0, "a slow answer after the breaker opened ({took:?})");
        }
    }
    assert_eq!(fast, 5, "the database's 503s never became fast");
    eprintln!("database unreachable: reads answered 503 after {waits:?}");
    let (status, took, _, body) = timed(reqwest::Method::POST, "/v1/search", Some(&query)).await;
    assert_eq!((status, &body["cached"]), (200, &json!(true)), "{body}");
    assert!(
        took < Duration::from_millis(100),
        "a cached search took {took:?}"
    );
    eprintln!("database unreachable: a cached search answered 200 in {took:?}");
    // A new search needs only the vector store: the tenant has nothing
    // unsettled, so its hits need no check against the database.
    let (status, _, _, body) = timed(
        reqwest::Method::POST,
        "/v1/search",
        Some(&json!({"query": "turbines spin over the ridge"})),
    )
    .await;
    assert_eq!((status, &body["cached"]), (200, &json!(false)), "{body}");
    assert_eq!(body["hits"][0]["document_id"], "kept", "{body}");
    let lost = json!({"documents": [{"id": "during", "text": TEXT}]});
    let (status, took, _, body) = timed(reqwest::Method::POST, "/v1/documents", Some(&lost)).await;
    assert_eq!(status, 503, "{body}");
    assert!(took < Duration::from_millis(100), "an ingest took {took:?}");
    let started = Instant::now();
    let ready = s.http.get(s.url("/ready")).send().await.expect("ready");
    assert_eq!(ready.status(), 503);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "/ready took {:?}",
        started.elapsed()
    );
    eprintln!(
        "database unreachable: /ready answered 503 in {:?}",
        started.elapsed()
    );
    assert!(
        s.log_line(|l| l["fields"]["message"] == "database circuit opened")
            .await
            .is_some()
    );
    assert_eq!(
        s.metric(r#"analyzer_db_breaker_state{state="closed"}"#)
            .await,
        Some(0.0),
        "the breaker is not closed while the database is down"
    );

    // It comes back: so does the service, by itself.
    proxy.set(Mode::Forward);
    let back = Instant::now();
    loop {
        let (status, _) = s.get("/v1/documents/kept", &token).await;
        if status == 200 {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(15),
            "not recovered: {status}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "database back: reads answered 200 again after {:?}",
        back.elapsed()
    );
    let (status, _) = s.get("/v1/documents/during", &token).await;
    assert_eq!(
        status, 404,
        "an ingest refused during the outage was stored"
    );
    let ready = s.http.get(s.url("/ready")).send().await.expect("ready");
    assert_eq!(ready.status(), 200);
}
