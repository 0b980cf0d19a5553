//! The usage ledger equals the traffic: many concurrent requests from
//! several tenants, a SIGTERM in the middle of traffic, and two processes
//! writing into one database. Read back through `GET /v1/admin/usage` and
//! `analyzer usage report`.

use std::collections::HashMap;

use analyzer_tests::{Options, PgDatabase, TestServer, admin_token, cli, on_both_databases, start};
use futures::StreamExt as _;
use serde_json::{Value, json};

/// A period wide enough for any test run.
const FROM: &str = "2020-01-01";
const TO: &str = "2100-01-01";

/// The admin report's counters by tenant id.
async fn report(server: &TestServer) -> HashMap<String, Value> {
    let (status, body) = server
        .get(
            &format!("/v1/admin/usage?from={FROM}&to={TO}"),
            &admin_token(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["tenants"]
        .as_array()
        .expect("tenants")
        .iter()
        .map(|t| (t["tenant_id"].as_str().expect("id").to_owned(), t.clone()))
        .collect()
}

/// What `analyzer usage report --format csv` prints.
fn csv_text(dir: &std::path::Path, database_url: Option<&str>) -> String {
    let (ok, out, err) = cli(
        dir,
        database_url,
        &[],
        &[
            "usage", "report", "--from", FROM, "--to", TO, "--format", "csv",
        ],
    );
    assert!(ok, "{err}");
    out
}

/// `analyzer usage report --format csv` as rows of name → value.
fn csv_report(
    dir: &std::path::Path,
    database_url: Option<&str>,
) -> HashMap<String, HashMap<String, String>> {
    let out = csv_text(dir, database_url);
    let mut lines = out.lines();
    let header = cells(lines.next().expect("header"));
    lines
        .map(|line| {
            let cells: HashMap<String, String> = header.iter().cloned().zip(cells(line)).collect();
            (cells["tenant_id"].clone(), cells)
        })
        .collect()
}

/// A counter summed over the hours of a `/v1/usage/history` answer.
fn history_total(history: &Value, metric: &str) -> i64 {
    history["hours"]
        .as_array()
        .expect("hours")
        .iter()
        .map(|h| h["counters"][metric].as_i64().unwrap_or(0))
        .sum()
}

/// One CSV line's fields (RFC 4180 quoting).
fn cells(line: &str) -> Vec<String> {
    let (mut fields, mut field, mut quoted) = (Vec::new(), String::new(), false);
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut field)),
            _ => field.push(c),
        }
    }
    fields.push(field);
    fields
}

fn counter(tenant: &Value, name: &str) -> i64 {
    tenant["counters"][name].as_i64().unwrap_or(-1)
}

on_both_databases! {
    async fn the_ledger_equals_the_traffic_of_several_tenants(db: Db) {
        let Some(env) = start(db, Options::default()).await else { return };
        let s = &env.server;
        let mut tenants = Vec::new();
        for (name, tier) in [("Alpha, Inc.", "premium"), ("Beta", "premium"), ("Gamma", "standard")] {
            let (id, token) = s.tenant(name, tier).await;
            let (status, body) = s
                .post("/v1/documents", &token, &json!({"documents": [
                    {"id": "a", "text": "Invoices are paid within thirty days. Late fees apply after that."},
                    {"id": "b", "text": "The warehouse ships orders every weekday morning."}
                ]}))
                .await;
            assert_eq!(status, 201, "{body}");
            let chunks = body["chunks"].as_i64().expect("chunks");
            tenants.push((id, token, chunks));
        }

        // 20 searches and 5 analyses per tenant, all interleaved, 16 at a time.
        let calls: Vec<(usize, &str, Value)> = (0..25)
            .flat_map(|i| {
                (0..tenants.len()).map(move |t| {
                    if i % 5 == 4 {
                        (t, "/v1/analyze", json!({"question": format!("when are invoices paid {i}")}))
                    } else {
                        (t, "/v1/search", json!({"query": format!("warehouse orders {i}")}))
                    }
                })
            })
            .collect();
        let statuses: Vec<u16> = futures::stream::iter(calls)
            .map(|(t, path, body)| {
                let token = tenants[t].1.clone();
                async move { s.post(path, &token, &body).await.0 }
            })
            .buffer_unordered(16)
            .collect()
            .await;
        assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");

        let by_id = report(s).await;
        let csv = csv_report(env.dir.path(), env.pg.as_ref().map(|p| p.url.as_str()));
        for (id, token, chunks) in &tenants {
            let t = &by_id[id];
            assert_eq!(counter(t, "api_calls"), 26, "{t}");
            assert_eq!(counter(t, "searches"), 20, "{t}");
            assert_eq!(counter(t, "analyses"), 5, "{t}");
            assert_eq!(counter(t, "documents_ingested"), 2, "{t}");
            assert_eq!(counter(t, "chunks_ingested"), *chunks, "{t}");
            assert!(counter(t, "compute_us") > 0, "{t}");
            assert!(t["storage_bytes"].as_i64().expect("storage") > 0, "{t}");

            let row = &csv[id];
            assert_eq!(row["api_calls"], "26", "{row:?}");
            assert_eq!(row["searches"], "20");
            assert_eq!(row["chunks_ingested"], chunks.to_string());

            // The tenant's own view counts the same (plus this call).
            let (_, usage) = s.get("/v1/usage", token).await;
            assert_eq!(usage["counters"]["searches"], 20, "{usage}");
        }
        assert_eq!(csv[&tenants[0].0]["name"], "Alpha, Inc.", "names with commas are quoted");

        // The same report as a download from the API is the CLI's CSV.
        let download = s
            .request(reqwest::Method::GET, &format!("/v1/admin/usage?from={FROM}&to={TO}&format=csv"), &admin_token())
            .send()
            .await
            .expect("request");
        assert_eq!(download.status(), 200);
        let header = |name: &str| download.headers()[name].to_str().expect("ascii").to_owned();
        assert_eq!(header("content-type"), "text/csv; charset=utf-8");
        assert_eq!(header("content-disposition"), "attachment; filename=\"usage-2020-01-01-2100-01-02.csv\"");
        let body = download.text().await.expect("body");
        let cli_csv = csv_text(env.dir.path(), env.pg.as_ref().map(|p| p.url.as_str()));
        let rows = |text: &str| {
            // compute_us and the cost move with this very request; the rest is fixed.
            text.lines().map(|l| cells(l).into_iter().take(7).collect::<Vec<_>>()).collect::<Vec<_>>()
        };
        assert_eq!(rows(&body), rows(&cli_csv));
        let (status, problem) = s.get(&format!("/v1/admin/usage?from={FROM}&to={TO}&format=xml"), &admin_token()).await;
        assert_eq!((status, problem["code"].as_str()), (400, Some("validation_failed")), "{problem}");

        // Each tenant's own history, hour by hour, adds up to the same counts.
        for (id, token, chunks) in &tenants {
            let (status, history) = s.get("/v1/usage/history", token).await;
            assert_eq!(status, 200, "{history}");
            let sum = |metric: &str| history_total(&history, metric);
            assert_eq!(sum("searches"), 20, "{id}: {history}");
            assert_eq!(sum("analyses"), 5, "{history}");
            assert_eq!(sum("chunks_ingested"), *chunks, "{history}");
            assert!(history["from"].as_str().expect("from").ends_with(":00:00Z"), "{history}");
        }

        // A bad period is a 400 problem.
        for query in ["", "?from=2026-11-02&to=2026-11-01", "?from=soon&to=2026-11-01", "?from=2026-11-01&to=2026-11-02&x=1"] {
            let (status, body) = s.get(&format!("/v1/admin/usage{query}"), &admin_token()).await;
            assert_eq!(status, 400, "{query}: {body}");
        }
        // Tenants cannot read it.
        let (status, _) = s.get(&format!("/v1/admin/usage?from={FROM}&to={TO}"), &tenants[0].1).await;
        assert_eq!(status, 403);
    }
}

on_both_databases! {
    async fn sigterm_in_the_middle_of_traffic_loses_no_count(db: Db) {
        // A rate limit out of the way: every answer is a search.
        let options = Options {
            env: vec![("ANALYZER_TIER_PREMIUM_REQUESTS_PER_MINUTE".into(), "1000000".into())],
            ..Options::default()
        };
        let Some(mut env) = start(db, options).await else { return };
        let (id, token) = env.server.tenant("Busy", "premium").await;
        // Twelve clients, each sending searches until the server is gone.
        let workers: Vec<_> = (0..12)
            .map(|w| {
                let (http, url, token) = (env.server.http.clone(), env.server.url("/v1/search"), token.clone());
                tokio::spawn(async move {
                    let mut answers = Vec::new();
                    for i in 0.. {
                        let sent = http
                            .post(&url)
                            .bearer_auth(&token)
                            .json(&json!({"query": format!("shipping schedule {w} {i}")}))
                            .send()
                            .await;
                        match sent {
                            Ok(r) => answers.push(Ok(r.status().as_u16())),
                            Err(e) => {
                                answers.push(Err(e.to_string()));
                                break;
                            }
                        }
                    }
                    answers
                })
            })
            .collect();
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        env.server.terminate();
        let mut answers = Vec::new();
        for w in workers {
            answers.extend(w.await.expect("join"));
        }
        let status = env.server.wait().await.expect("exit");
        assert!(status.success(), "exit status {status}");

        let answered = answers.iter().filter(|a| matches!(a, Ok(200))).count();
        assert!(answered > 12, "traffic was flowing when SIGTERM came: {answered}");
        assert!(answers.iter().all(|a| matches!(a, Ok(200) | Err(_))), "{answers:?}");

        let csv = csv_report(env.dir.path(), env.pg.as_ref().map(|p| p.url.as_str()));
        assert_eq!(csv[&id]["api_calls"], answered.to_string());
        assert_eq!(csv[&id]["searches"], answered.to_string());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_writing_into_one_database_add_up() {
    let Some(pg) = PgDatabase::create().await else {
        return;
    };
    let mut servers = Vec::new();
    let mut dirs = Vec::new();
    for _ in 0..2 {
        let dir = tempfile::tempdir().expect("tempdir");
        servers.push(
            TestServer::start(dir.path(), Some(&pg.url), Options::default())
                .await
                .expect("server starts"),
        );
        dirs.push(dir);
    }
    let (id, token) = servers[0].tenant("Shared", "premium").await;
    let statuses: Vec<u16> = futures::stream::iter(0..90)
        .map(|i| {
            let (server, token) = (&servers[i % 2], token.clone());
            async move {
                server
                    .post(
                        "/v1/search",
                        &token,
                        &json!({"query": format!("fleet {i}")}),
                    )
                    .await
                    .0
            }
        })
        .buffer_unordered(12)
        .collect()
        .await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    for server in &mut servers {
        server.terminate();
        assert!(server.wait().await.expect("exit").success());
    }
    let csv = csv_report(dirs[0].path(), Some(&pg.url));
    assert_eq!(csv[&id]["api_calls"], "90", "{:?}", csv[&id]);
    assert_eq!(csv[&id]["searches"], "90");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_usage_history_is_its_own_by_the_hour_and_bad_periods_are_refused() {
    let env = start(analyzer_tests::Db::Sqlite, Options::default())
        .await
        .expect("start");
    let s = &env.server;
    let (_, busy) = s.tenant("Busy", "premium").await;
    let (_, quiet) = s.tenant("Quiet", "premium").await;
    for (token, searches) in [(&busy, 3), (&quiet, 1)] {
        for i in 0..searches {
            let (status, body) = s
                .post("/v1/search", token, &json!({"query": format!("q {i}")}))
                .await;
            assert_eq!(status, 200, "{body}");
        }
    }
    for (token, searches) in [(&busy, 3), (&quiet, 1)] {
        let (status, history) = s.get("/v1/usage/history", token).await;
        assert_eq!(status, 200, "{history}");
        assert_eq!(
            history_total(&history, "searches"),
            searches,
            "only the tenant's own: {history}"
        );
        let hours = history["hours"].as_array().expect("hours");
        // The default period: the 24 hours up to the end of this one.
        let bound = |name: &str| {
            humantime::parse_rfc3339(history[name].as_str().expect(name)).expect("RFC 3339")
        };
        let span = bound("to").duration_since(bound("from")).expect("ordered");
        assert_eq!(span.as_secs(), 24 * 3600, "{history}");
        assert!(bound("to") > std::time::SystemTime::now(), "{history}");
        for hour in hours {
            assert!(
                hour["hour"].as_str().expect("hour").ends_with(":00:00Z"),
                "{hour}"
            );
        }
    }

    let (status, past) = s
        .get("/v1/usage/history?from=2020-01-01&to=2020-01-02", &busy)
        .await;
    assert_eq!(status, 200, "{past}");
    assert_eq!(
        past,
        json!({"from": "2020-01-01T00:00:00Z", "to": "2020-01-03T00:00:00Z", "hours": []})
    );

    for query in [
        "?from=soon",
        "?from=2026-11-02&to=2026-11-01",
        "?from=2026-01-01&to=2026-02-01",
        "?from=2026-01-01&to=2026-01-02&x=1",
    ] {
        let (status, problem) = s.get(&format!("/v1/usage/history{query}"), &busy).await;
        assert_eq!(status, 400, "{query}: {problem}");
        assert_eq!(problem["code"], "validation_failed", "{query}: {problem}");
    }
    let (_, long) = s
        .get("/v1/usage/history?from=2026-01-01&to=2026-02-01", &busy)
        .await;
    assert!(
        long["detail"].as_str().expect("detail").contains("31 days"),
        "{long}"
    );
    let (status, _) = s.get("/v1/usage/history", &admin_token()).await;
    assert_eq!(status, 403);
}
