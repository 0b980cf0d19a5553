//! The command line: tenants and tokens made by `analyzer tenant …` and
//! `analyzer token mint …` work against the server on the same data.

use analyzer_tests::{Options, SECRET, TestServer, cli};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_tenants_and_tokens_work_against_the_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let env = [("JWT_SECRET", SECRET)];
    let (ok, out, err) = cli(dir.path(), None, &env, &["migrate"]);
    assert!(ok, "{err}");

    let (ok, out_create, err) = cli(
        dir.path(),
        None,
        &env,
        &["tenant", "create", "--name", "Cli Co", "--tier", "premium"],
    );
    assert!(ok, "{err}");
    let tenant: Value = serde_json::from_str(&out_create).expect("tenant JSON");
    for field in ["id", "name", "tier", "status"] {
        assert!(tenant.get(field).is_some(), "{out_create}");
    }
    assert_eq!(tenant["tier"], "premium");
    let id = tenant["id"].as_str().expect("id").to_owned();

    let (ok, out_set, err) = cli(
        dir.path(),
        None,
        &env,
        &["tenant", "set", &id, "--tier", "standard"],
    );
    assert!(ok, "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out_set).expect("json")["tier"],
        "standard"
    );
    let (ok, listed, _) = cli(dir.path(), None, &env, &["tenant", "list"]);
    assert!(ok);
    assert_eq!(
        serde_json::from_str::<Value>(&listed)
            .expect("json")
            .as_array()
            .map(Vec::len),
        Some(1)
    );

    let (ok, token, err) = cli(
        dir.path(),
        None,
        &env,
        &["token", "mint", "--tenant", &id, "--ttl", "600"],
    );
    assert!(ok, "{err}");
    let (ok, admin, err) = cli(dir.path(), None, &env, &["token", "mint", "--admin"]);
    assert!(ok, "{err}");

    // Bad input is a clear error, not a panic.
    for args in [
        vec!["tenant", "create", "--name", "X", "--tier", "gold"],
        vec!["tenant", "set", "not-a-uuid", "--tier", "premium"],
        vec![
            "token",
            "mint",
            "--tenant",
            &uuid::Uuid::new_v4().to_string(),
        ],
        vec!["token", "mint"],
    ] {
        let (ok, _, err) = cli(dir.path(), None, &env, &args);
        assert!(!ok, "{args:?} should fail");
        assert!(!err.contains("panicked"), "{err}");
    }
    let (ok, _, err) = cli(dir.path(), None, &[("ANALYZER_BIND", "nope")], &["serve"]);
    assert!(!ok);
    assert!(
        err.contains("ANALYZER_BIND"),
        "the error names the variable: {err}"
    );
    let _ = out;

    let server = TestServer::start(dir.path(), None, Options::default())
        .await
        .expect("start");
    let (status, body) = server
        .post("/v1/search", token.trim(), &json!({"query": "x"}))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = server
        .get(&format!("/v1/admin/tenants/{id}"), admin.trim())
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, usage) = server.get("/v1/usage", token.trim()).await;
    assert_eq!(
        usage["tier"], "standard",
        "the tier comes from the record: {usage}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_exits_zero_only_while_the_server_answers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path(), None, Options::default())
        .await
        .expect("server");
    let port = server.base.rsplit(':').next().expect("a port").to_owned();
    let (ok, _, err) = cli(dir.path(), None, &[], &["healthcheck", "--port", &port]);
    assert!(ok, "{err}");
    // From ANALYZER_BIND, as in the container.
    let bind = format!("0.0.0.0:{port}");
    let (ok, _, err) = cli(
        dir.path(),
        None,
        &[("ANALYZER_BIND", &bind)],
        &["healthcheck"],
    );
    assert!(ok, "{err}");
    drop(server);
    let (ok, _, err) = cli(dir.path(), None, &[], &["healthcheck", "--port", &port]);
    assert!(!ok);
    assert!(err.contains(&format!("127.0.0.1:{port}/health")), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_the_same_sqlite_data_dir_stops_at_start() {
    // With a Qdrant server configured the data dir holds only the SQLite
    // file; a second server would write it behind the first one's back.
    let dir = tempfile::tempdir().expect("tempdir");
    let qdrant = [("QDRANT_URL", "http://127.0.0.1:1")];
    let first = TestServer::start(
        dir.path(),
        None,
        Options {
            env: qdrant
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ..Options::default()
        },
    )
    .await
    .expect("the first server");
    let env = [
        qdrant[0],
        ("JWT_SECRET", SECRET),
        ("ANALYZER_BIND", "127.0.0.1:0"),
    ];
    let (ok, _, err) = cli(dir.path(), None, &env, &["serve"]);
    assert!(!ok);
    assert!(
        err.contains("another `analyzer serve` uses this data dir"),
        "{err}"
    );
    // The CLI still works beside the server.
    let (ok, _, err) = cli(dir.path(), None, &env, &["tenant", "list"]);
    assert!(ok, "{err}");
    drop(first);
}
