//! The query cache across a fleet: a cached search is answered from Redis
//! alone, and once a write is acknowledged by one task, no task answers
//! from a result computed before it, with Redis restarted in between too
//! (the argument is in the analyzer's `cache::generations`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use analyzer_tests::fleet::Fleet;
use analyzer_tests::qdrant_wire::FakeQdrant;
use analyzer_tests::{Options, OwnRedis, TestServer};
use serde_json::{Value, json};

const TEXT: &str = "Tidal turbines convert ocean currents into electricity.";

/// The fleet's shape: Redis and a Qdrant peer shared by every task.
fn options(redis: &OwnRedis, qdrant: &FakeQdrant) -> Options {
    Options {
        env: vec![
            ("REDIS_URL".into(), redis.url()),
            ("QDRANT_URL".into(), qdrant.url.clone()),
            (
                "ANALYZER_TIER_PREMIUM_REQUESTS_PER_MINUTE".into(),
                "100000".into(),
            ),
        ],
        ..Options::default()
    }
}

/// Two tasks of that shape, the tenant's first document written on the
/// first and its search cached on the second.
/// (Every part is bound by the tests: a part left out of a pattern is
/// dropped, and stops, at once.)
struct Shape {
    redis: OwnRedis,
    _qdrant: FakeQdrant,
    fleet: Fleet,
    token: String,
}

async fn two_tasks(tenant: &str) -> Option<Shape> {
    let redis = OwnRedis::start(None).await?;
    let qdrant = FakeQdrant::start(([127, 0, 0, 1], 0).into(), None)
        .await
        .expect("qdrant peer");
    let fleet = Fleet::start(2, &options(&redis, &qdrant)).await?;
    let (_, token) = fleet.servers[0].tenant(tenant, "premium").await;
    ingest(&fleet.servers[0], &token, "before").await;
    until_cached(&fleet.servers[1], &token).await;
    Some(Shape {
        redis,
        _qdrant: qdrant,
        fleet,
        token,
    })
}

async fn ingest(s: &TestServer, token: &str, id: &str) {
    let (status, body) = s
        .post(
            "/v1/documents",
            token,
            &json!({"documents": [{"id": id, "text": TEXT}]}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
}

/// Whether the answer came from the cache, and the documents it found.
async fn search(s: &TestServer, token: &str) -> (bool, Vec<String>) {
    let (status, body) = s
        .post(
            "/v1/search",
            token,
            &json!({"query": "tidal turbines ocean currents", "top_k": 20}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let ids = body["hits"]
        .as_array()
        .expect("hits")
        .iter()
        .filter_map(|h| h["document_id"].as_str().map(str::to_owned))
        .collect();
    (body["cached"] == Value::Bool(true), ids)
}

/// Search on `s` until an answer comes from the cache (Redis reconnected).
async fn until_cached(s: &TestServer, token: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (cached, ids) = search(s, token).await;
        if cached {
            return ids;
        }
        assert!(Instant::now() < deadline, "never answered from the cache");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_write_on_one_task_no_task_answers_from_an_older_search() {
    let Some(Shape {
        redis: _redis,
        fleet,
        token,
        _qdrant,
    }) = two_tasks("Fresh").await
    else {
        return;
    };
    let [writer, reader] = [&fleet.servers[0], &fleet.servers[1]];
    for round in 1..=5 {
        // The reader searches without pause while the writer writes.
        let stop = AtomicBool::new(false);
        let searching = async {
            let mut seen = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let (cached, ids) = search(reader, &token).await;
                seen.push((started, cached, ids));
            }
            seen
        };
        let id = format!("doc-{round}");
        let writing = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            ingest(writer, &token, &id).await;
            let acknowledged = Instant::now();
            tokio::time::sleep(Duration::from_millis(300)).await;
            stop.store(true, Ordering::Relaxed);
            acknowledged
        };
        let (seen, acknowledged) = tokio::join!(searching, writing);
        let after: Vec<_> = seen.iter().filter(|(at, ..)| *at > acknowledged).collect();
        assert!(!after.is_empty(), "no search after the write");
        for (_, cached, ids) in &after {
            assert!(
                ids.contains(&id),
                "round {round}: a search begun after the write missed it (cached: {cached})"
            );
        }
        assert!(
            seen.iter()
                .any(|(at, cached, _)| *at < acknowledged && *cached),
            "round {round}: the searches before the write were not cached"
        );
        assert!(
            after.iter().any(|(_, cached, _)| *cached),
            "round {round}: the new result was never cached"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_is_seen_by_another_task_across_redis_restarts() {
    let Some(Shape {
        mut redis,
        fleet,
        token,
        _qdrant,
    }) = two_tasks("Restarts").await
    else {
        return;
    };
    let port = redis.port;
    let [writer, reader] = [&fleet.servers[0], &fleet.servers[1]];

    // Redis is down while the write is acknowledged (the writer cannot
    // withdraw anything) and comes back empty.
    redis.stop();
    ingest(writer, &token, "while-down").await;
    let (_, ids) = search(reader, &token).await;
    assert!(ids.contains(&"while-down".to_owned()), "{ids:?}");
    redis = OwnRedis::start(Some(port)).await.expect("redis again");
    let ids = until_cached(reader, &token).await;
    assert!(ids.contains(&"while-down".to_owned()), "{ids:?}");
    until_cached(writer, &token).await;

    // Redis restarts between the write and the next search.
    ingest(writer, &token, "before-restart").await;
    redis.stop();
    redis = OwnRedis::start(Some(port)).await.expect("redis again");
    let (_, ids) = search(reader, &token).await;
    assert!(ids.contains(&"before-restart".to_owned()), "{ids:?}");
    let ids = until_cached(reader, &token).await;
    assert!(ids.contains(&"before-restart".to_owned()), "{ids:?}");
    drop(redis);
}
