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

/// `analyzer usage report --format csv` as rows of name → value.
fn csv_report(
    dir: &std::path::Path,
    database_url: Option<&str>,
) -> HashMap<String, HashMap<String, String>> {
    let (ok, out, err) = cli(
        dir,
        database_url,
        &[],
        &[
            "usage", "report", "--from", FROM, "--to", TO, "--format", "csv",
        ],
    );
    assert!(ok, "{err}");
    let mut lines = out.lines();
    let header = cells(lines.next().expect("header"));
    lines
        .map(|line| {
            let cells: HashMap<String, String> = header.iter().cloned().zip(cells(line)).collect();
            (cells["tenant_id"].clone(), cells)
        })
        .collect()
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
