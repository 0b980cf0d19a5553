//! Per-tier request limits: at the boundary, in one process and across a
//! fleet of three sharing one Redis, with Redis stopped, and the
//! concurrency cap.
//!
//! The rate budget refills at `limit` per minute (one request every 0.6 s
//! for a standard tenant), so the counts below allow for the refills that
//! the time a burst took can explain; the bursts run in parallel and take
//! a fraction of that on this machine.

use std::time::{Duration, Instant};

use analyzer_tests::fleet::Fleet;
use analyzer_tests::{Db, Options, OwnRedis, TestServer, redis_url, start};
use futures::StreamExt as _;
use serde_json::Value;
use tokio::io::AsyncWriteExt as _;

/// Standard tenants: 100 requests per minute.
const STANDARD_RPM: u32 = 100;

/// Outcome of one request.
struct Answer {
    status: u16,
    limit: Option<u32>,
    remaining: Option<u32>,
    retry_after: Option<u64>,
    body: Value,
}

async fn get_usage(s: &TestServer, token: &str) -> Answer {
    let r = s
        .request(reqwest::Method::GET, "/v1/usage", token)
        .send()
        .await
        .expect("request");
    let header = |name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
    };
    let (limit, remaining, retry_after) = (
        header("ratelimit-limit").map(|v| v as u32),
        header("ratelimit-remaining").map(|v| v as u32),
        header("retry-after"),
    );
    assert!(
        header("ratelimit-reset").is_some(),
        "RateLimit-Reset missing"
    );
    let (status, body) = analyzer_tests::split(r).await;
    Answer {
        status,
        limit,
        remaining,
        retry_after,
        body,
    }
}

/// `n` requests spread over `servers` round-robin, 10 at a time.
async fn burst(servers: &[&TestServer], token: &str, n: usize) -> (Vec<Answer>, Duration) {
    let started = Instant::now();
    let answers = futures::stream::iter(0..n)
        .map(|i| get_usage(servers[i % servers.len()], token))
        .buffered(10)
        .collect::<Vec<_>>()
        .await;
    (answers, started.elapsed())
}

/// Requests a budget of `per_minute` can admit in a burst that took `took`.
fn refills(per_minute: u32, took: Duration) -> u32 {
    (took.as_secs_f64() * f64::from(per_minute) / 60.0).floor() as u32
}

fn admitted(answers: &[Answer]) -> u32 {
    answers.iter().filter(|a| a.status == 200).count() as u32
}

async fn the_boundary_holds(redis: Option<String>) {
    // A generous command timeout: a reply lost to a timeout under load
    // would be decided on the local share while Redis counted it.
    let env = redis.map_or_else(Vec::new, |url| {
        vec![
            ("REDIS_URL".to_owned(), url),
            ("ANALYZER_REDIS_TIMEOUT_MS".to_owned(), "2000".to_owned()),
        ]
    });
    let env = analyzer_tests::start_with(env).await;
    let s = &env.server;
    let (_, standard) = s.tenant("Standard", "standard").await;
    let (_, premium) = s.tenant("Premium", "premium").await;
    let started = Instant::now();
    // The first 100 (in parallel, so their order at the server is not
    // theirs here), then the 101st once they are all answered.
    let (answers, _) = burst(&[s], &standard, 100).await;
    for (i, a) in answers.iter().enumerate() {
        assert_eq!(a.status, 200, "request {} of 100: {}", i + 1, a.body);
        assert_eq!(a.limit, Some(STANDARD_RPM));
    }
    let last = get_usage(s, &standard).await;
    let took = started.elapsed();
    let extra = refills(STANDARD_RPM, took);
    if extra == 0 {
        assert_eq!(last.status, 429, "the 101st request: {}", last.body);
        assert_eq!(last.remaining, Some(0));
        let retry = last.retry_after.expect("Retry-After on a 429");
        assert!((1..=60).contains(&retry), "Retry-After {retry}");
        let detail = last.body["detail"].as_str().expect("detail");
        assert!(detail.contains("requests_per_minute"), "{detail}");
        assert!(detail.contains("standard"), "{detail}");
    } else {
        eprintln!("the burst took {took:?}: {extra} refill(s) allowed");
    }
    let remaining: Vec<u32> = answers
        .iter()
        .take(20)
        .filter_map(|a| a.remaining)
        .collect();
    assert!(remaining.iter().all(|&r| r < STANDARD_RPM), "{remaining:?}");

    let (answers, _) = burst(&[s], &premium, 101).await;
    assert_eq!(admitted(&answers), 101, "a premium tenant's 101st passes");
    assert!(answers.iter().all(|a| a.limit == Some(500)));

    // The standard tenant stays refused (a refill aside), the premium one
    // is not affected by it.
    let again = get_usage(s, &standard).await;
    if refills(STANDARD_RPM, took + Duration::from_millis(500)) == 0 {
        assert_eq!(again.status, 429);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_101st_request_of_a_standard_tenant_is_refused_and_a_premium_ones_is_not() {
    the_boundary_holds(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_boundary_holds_with_the_budget_in_redis() {
    if !analyzer_tests::redis_available().await {
        return;
    }
    the_boundary_holds(Some(redis_url())).await;
}

/// Three analyzer processes on one database sharing `redis`.
async fn fleet(redis: &str) -> Option<Fleet> {
    let options = Options {
        env: vec![
            ("REDIS_URL".into(), redis.to_owned()),
            // Generous (see above); a stopped Redis fails at once.
            ("ANALYZER_REDIS_TIMEOUT_MS".into(), "2000".into()),
            ("ANALYZER_EXPECTED_TASKS".into(), "3".into()),
        ],
        ..Options::default()
    };
    Fleet::start(3, &options).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_sharing_redis_admit_the_limit_together_and_their_share_without_it() {
    let Some(mut redis) = OwnRedis::start(None).await else {
        return;
    };
    let Some(fleet) = fleet(&redis.url()).await else {
        return;
    };
    let servers: Vec<&TestServer> = fleet.servers.iter().collect();
    let (tenant, token) = servers[0].tenant("Fleet", "standard").await;

    // Together: the limit, within 5%, not three times it.
    let (answers, took) = burst(&servers, &token, 300).await;
    let admitted_together = admitted(&answers);
    let bound = STANDARD_RPM + refills(STANDARD_RPM, took);
    assert!(
        admitted_together >= STANDARD_RPM * 95 / 100 && admitted_together <= bound,
        "the fleet admitted {admitted_together} of 300 in {took:?} (limit {STANDARD_RPM}, bound {bound})"
    );
    assert!(
        (STANDARD_RPM..=STANDARD_RPM * 105 / 100).contains(&admitted_together)
            || took > Duration::from_secs(3),
        "within 5% of the limit: {admitted_together}"
    );
    let refused = answers.iter().find(|a| a.status == 429).expect("a 429");
    assert!(refused.retry_after.is_some());
    let mut counted = 0.0;
    for s in &servers {
        // A process that refused nothing has no series for the tenant.
        counted += s
            .metric(&format!(
                r#"analyzer_limit_refusals_total{{kind="requests_per_minute",tenant_id="{tenant}"}}"#
            ))
            .await
            .unwrap_or(0.0);
    }
    assert_eq!(counted, f64::from(300 - admitted_together));

    // Redis stops: each process falls back to its share (100 / 3 = 33), so
    // a tenant gets neither unlimited requests nor none.
    redis.stop();
    let share = STANDARD_RPM / 3;
    let mut total = 0;
    for s in &servers {
        let (answers, took) = burst(&[*s], &token, 50).await;
        let n = admitted(&answers);
        let bound = share + refills(share, took);
        assert!(
            (share..=bound).contains(&n),
            "one process admitted {n} of 50 with Redis down (share {share}, bound {bound})"
        );
        assert!(
            answers
                .iter()
                .filter(|a| a.status == 429)
                .all(|a| a.limit == Some(share))
        );
        total += n;
        assert!(
            s.metric("analyzer_limit_fallbacks_total")
                .await
                .is_some_and(|n| n >= 50.0)
        );
    }
    assert!(
        total <= STANDARD_RPM + 3,
        "the fleet's fallback total {total}"
    );
}

/// A request that holds its slot: the headers and part of a declared body
/// are sent, the rest never is.
async fn hold_open(s: &TestServer, token: &str) -> tokio::net::TcpStream {
    let addr = s.base.trim_start_matches("http://");
    let mut socket = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST /v1/documents HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"documents\": ["
    );
    socket.write_all(head.as_bytes()).await.expect("write");
    socket
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_concurrency_cap_a_request_is_refused_at_once() {
    let env = analyzer_tests::start_with(vec![(
        "ANALYZER_TIER_STANDARD_CONCURRENT_REQUESTS".into(),
        "2".into(),
    )])
    .await;
    let s = &env.server;
    let (_, token) = s.tenant("Busy", "standard").await;
    let (_, other) = s.tenant("Other", "standard").await;
    // Two requests hold both slots; no other request of the tenant is sent
    // until they are in (an earlier one could take a slot meanwhile).
    let mut first = hold_open(s, &token).await;
    let mut second = hold_open(s, &token).await;
    for held in [&mut first, &mut second] {
        use tokio::io::AsyncReadExt as _;
        let mut buf = [0u8; 256];
        let answer = tokio::time::timeout(Duration::from_millis(300), held.read(&mut buf)).await;
        assert!(
            answer.is_err(),
            "a held request was answered: {}",
            String::from_utf8_lossy(&buf)
        );
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let refused = loop {
        let started = Instant::now();
        let a = get_usage(s, &token).await;
        if a.status == 429 {
            assert!(
                started.elapsed() < Duration::from_millis(500),
                "not at once"
            );
            break a;
        }
        assert!(Instant::now() < deadline, "the cap never applied");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let detail = refused.body["detail"].as_str().expect("detail");
    assert!(detail.contains("concurrent_requests"), "{detail}");
    assert!(refused.retry_after.is_some());
    assert_eq!(
        get_usage(s, &other).await.status,
        200,
        "other tenants unaffected"
    );

    // A slot frees when its request ends.
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(5);
    while get_usage(s, &token).await.status != 200 {
        assert!(Instant::now() < deadline, "the slot was never released");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Through Redis, a tenant's clients that each send the next request as
/// soon as they have an answer never pass the cap together, so none is
/// refused: the slot is back in Redis before the answer goes out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_at_the_cap_sending_back_to_back_are_never_refused_through_redis() {
    let Some(redis) = OwnRedis::start(None).await else {
        return;
    };
    let env = analyzer_tests::start_with(vec![
        ("REDIS_URL".into(), redis.url()),
        (
            "ANALYZER_TIER_STANDARD_CONCURRENT_REQUESTS".into(),
            "4".into(),
        ),
        (
            "ANALYZER_TIER_STANDARD_REQUESTS_PER_MINUTE".into(),
            "100000".into(),
        ),
    ])
    .await;
    let s = &env.server;
    let (_, token) = s.tenant("AtTheCap", "standard").await;
    let clients = (0..4).map(|_| async {
        let mut refused = Vec::new();
        for _ in 0..150 {
            let a = get_usage(s, &token).await;
            if a.status != 200 {
                refused.push((a.status, a.body));
            }
        }
        refused
    });
    let refused: Vec<_> = futures::future::join_all(clients)
        .await
        .into_iter()
        .flatten()
        .collect();
    assert!(
        refused.is_empty(),
        "{} of 600 refused: {:?}",
        refused.len(),
        refused.first()
    );
}

fn doc(id: &str, words: usize) -> Value {
    let text: Vec<String> = (0..words).map(|i| format!("word{i}")).collect();
    serde_json::json!({"id": id, "text": text.join(" ")})
}

async fn vector_quota(s: &TestServer, token: &str) -> Value {
    let (status, usage) = s.get("/v1/usage", token).await;
    assert_eq!(status, 200, "{usage}");
    usage["quotas"]["vector_storage_bytes"].clone()
}

analyzer_tests::on_both_databases! {
    async fn an_ingest_over_the_vector_quota_is_refused_whole_and_stores_nothing(db: Db) {
        // One 40-word document takes about 700 bytes (its sparse vector of
        // 40 words, 8 bytes each, plus its text and payload): 1700 bytes
        // fit two, not three.
        let Some(env) = start(db, Options {
            env: vec![("ANALYZER_TIER_STANDARD_VECTOR_STORAGE_BYTES".into(), "1700".into())],
            ..Options::default()
        }).await else { return };
        let s = &env.server;
        let (_, token) = s.tenant("Quota", "standard").await;
        let (status, body) = s.post("/v1/documents", &token, &serde_json::json!({"documents": [doc("a", 40)]})).await;
        assert_eq!(status, 201, "{body}");
        let before = vector_quota(s, &token).await;
        let one = before["used"].as_u64().expect("used");
        assert!(2 * one <= 1700 && 3 * one > 1700, "the scenario needs 2 to fit and 3 not: {before}");
        assert_eq!(before["limit"], 1700);
        let (_, usage) = s.get("/v1/usage", &token).await;
        assert_eq!(usage["quotas"]["db_connections"]["limit"], 2 + 5, "{usage}");
        assert!(usage["quotas"]["query_cache_bytes"]["limit"].is_u64(), "{usage}");
        assert_eq!(before["remaining"].as_u64(), Some(1700 - one));

        // Two more would pass the quota: refused whole, nothing stored.
        let (status, problem) = s.post("/v1/documents", &token,
            &serde_json::json!({"documents": [doc("b", 40), doc("c", 40)]})).await;
        assert_eq!(status, 413, "{problem}");
        let detail = problem["detail"].as_str().expect("detail");
        assert!(detail.contains("vector_storage_bytes"), "{detail}");
        for id in ["b", "c"] {
            let (status, _) = s.get(&format!("/v1/documents/{id}"), &token).await;
            assert_eq!(status, 404, "{id} was stored");
        }
        assert_eq!(vector_quota(s, &token).await, before);
        let (_, hits) = s.post("/v1/search", &token, &serde_json::json!({"query": "word1 word2", "top_k": 10})).await;
        let ids: Vec<&str> = hits["hits"].as_array().expect("hits").iter()
            .filter_map(|h| h["document_id"].as_str()).collect();
        assert!(ids.iter().all(|id| *id == "a"), "{hits}");

        // Replacing a document counts its new size, not both.
        let (status, body) = s.post("/v1/documents", &token, &serde_json::json!({"documents": [doc("a", 40)]})).await;
        assert_eq!(status, 201, "a replacement near the quota: {body}");
        // Deleting frees its bytes.
        let (status, _) = s.delete("/v1/documents/a", &token).await;
        assert_eq!(status, 204);
        assert_eq!(vector_quota(s, &token).await["used"], 0);
        let (status, body) = s.post("/v1/documents", &token,
            &serde_json::json!({"documents": [doc("b", 40), doc("c", 40)]})).await;
        assert_eq!(status, 201, "{body}");
    }
}

analyzer_tests::on_both_databases! {
    async fn concurrent_ingests_cannot_pass_the_vector_quota_together(db: Db) {
        let Some(env) = start(db, Options {
            env: vec![("ANALYZER_TIER_STANDARD_VECTOR_STORAGE_BYTES".into(), "1000".into())],
            ..Options::default()
        }).await else { return };
        let s = &env.server;
        let (_, token) = s.tenant("Racing", "standard").await;
        // One document (about 700 bytes) fits in 1000 bytes, two do not (see above).
        for round in 0..5 {
            let (x, y) = (format!("x{round}"), format!("y{round}"));
            let body_x = serde_json::json!({"documents": [doc(&x, 40)]});
            let body_y = serde_json::json!({"documents": [doc(&y, 40)]});
            let ((sx, _), (sy, _)) = tokio::join!(
                s.post("/v1/documents", &token, &body_x),
                s.post("/v1/documents", &token, &body_y),
            );
            let mut statuses = [sx, sy];
            statuses.sort_unstable();
            assert_eq!(statuses, [201, 413], "round {round}: exactly one fits");
            let used = vector_quota(s, &token).await["used"].as_u64().expect("used");
            assert!(used <= 1000, "round {round}: {used} bytes stored");
            for id in [&x, &y] {
                let _ = s.delete(&format!("/v1/documents/{id}"), &token).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tier_change_takes_effect_within_seconds() {
    let env = start(Db::Sqlite, Options::default()).await.expect("start");
    let s = &env.server;
    let (id, token) = s.tenant("Upgrading", "standard").await;
    // Half again the budget: a burst slowed down by a loaded machine
    // still outruns the refill (one request per 0.6 s).
    let (answers, _) = burst(&[s], &token, 150).await;
    assert!(answers.iter().any(|a| a.status == 429));
    assert_eq!(answers[0].limit, Some(STANDARD_RPM));

    let (status, body) = analyzer_tests::split(
        s.request(
            reqwest::Method::PATCH,
            &format!("/v1/admin/tenants/{id}"),
            &analyzer_tests::admin_token(),
        )
        .json(&serde_json::json!({"tier": "premium"}))
        .send()
        .await
        .expect("patch"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // The tenant record is trusted for ANALYZER_TENANT_CACHE_MS (5 s).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let a = get_usage(s, &token).await;
        if a.status == 200 && a.limit == Some(500) {
            assert_eq!(a.body["tier"], "premium");
            break;
        }
        assert!(Instant::now() < deadline, "still limited as standard");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limits_script_is_loaded_again_when_redis_forgets_it() {
    let Some(redis) = OwnRedis::start(None).await else {
        return;
    };
    let env = start(
        Db::Sqlite,
        Options {
            env: vec![("REDIS_URL".into(), redis.url())],
            ..Options::default()
        },
    )
    .await
    .expect("server");
    let s = &env.server;
    let (_, token) = s.tenant("Scripts", "standard").await;
    let first = get_usage(s, &token).await;
    assert_eq!(first.status, 200);

    // What a restarted Redis (or SCRIPT FLUSH) leaves: no script cached.
    let flushed = std::process::Command::new("redis-cli")
        .args(["-u", &redis.url(), "SCRIPT", "FLUSH"])
        .output()
        .expect("redis-cli");
    assert!(flushed.status.success());
    let second = get_usage(s, &token).await;
    assert_eq!(second.status, 200, "{}", second.body);
    assert_eq!(
        second.remaining,
        first.remaining.map(|r| r - 1),
        "the budget in Redis counted the request"
    );
    assert_eq!(
        s.metric("analyzer_limit_fallbacks_total")
            .await
            .unwrap_or(0.0),
        0.0,
        "no decision fell back to the local share"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_redis_the_slot_of_a_client_that_went_away_is_released() {
    let Some(redis) = OwnRedis::start(None).await else {
        return;
    };
    let env = analyzer_tests::start_with(vec![
        ("REDIS_URL".into(), redis.url()),
        (
            "ANALYZER_TIER_STANDARD_CONCURRENT_REQUESTS".into(),
            "1".into(),
        ),
    ])
    .await;
    let s = &env.server;
    let (_, token) = s.tenant("Gone", "standard").await;
    let held = hold_open(s, &token).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while get_usage(s, &token).await.status != 429 {
        assert!(
            Instant::now() < deadline,
            "the held request never took the slot"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The client goes away mid-body: its request ends, and so does its
    // lease in Redis (long before the lease's own expiry).
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(5);
    while get_usage(s, &token).await.status != 200 {
        assert!(Instant::now() < deadline, "the slot was never released");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
