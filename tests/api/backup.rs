//! `analyzer backup` and `analyzer restore`: a single host's embedded data
//! copied while the server serves, to a directory or to S3 (moto), and a
//! fresh data dir rebuilt from it.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use analyzer_tests::moto::Moto;
use analyzer_tests::{Options, TestServer, cli, tenant_token};
use serde_json::{Value, json};

/// `analyzer <args>` on `data_dir` (SQLite), off the test's runtime.
async fn run(data_dir: &Path, env: &[(String, String)], args: &[&str]) -> (bool, String, String) {
    let (dir, env, args) = (
        data_dir.to_owned(),
        env.to_vec(),
        args.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>(),
    );
    tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cli(&dir, None, &env, &args)
    })
    .await
    .expect("cli task")
}

/// A tenant with `count` documents, one of them with its metadata changed
/// afterwards: its id and token.
async fn tenant_with_documents(s: &TestServer, count: usize) -> (String, String) {
    let (tenant, token) = s.tenant("Harbour Office", "premium").await;
    let documents: Vec<Value> = (0..count)
        .map(|i| json!({"id": format!("doc-{i}"), "text": format!("Berth {i} of the harbour is dredged to nine metres."), "metadata": {"berth": i}}))
        .collect();
    let (status, body) = s
        .post("/v1/documents", &token, &json!({"documents": documents}))
        .await;
    assert_eq!(status, 201, "{body}");
    let r = s
        .request(reqwest::Method::PATCH, "/v1/documents/doc-0", &token)
        .json(&json!({"metadata": {"berth": 0, "reviewed": true}}))
        .send()
        .await
        .expect("patch");
    assert_eq!(r.status().as_u16(), 200);
    (tenant, token)
}

/// The restored server has every document in `ids`, findable by search,
/// and the metadata change made before the backup.
async fn assert_restored(s: &TestServer, token: &str, ids: &BTreeSet<String>) {
    for id in ids {
        let (status, doc) = s.get(&format!("/v1/documents/{id}"), token).await;
        assert_eq!(
            status, 200,
            "{id} was acknowledged before the backup began: {doc}"
        );
    }
    let (status, found) = s
        .post(
            "/v1/search",
            token,
            &json!({"query": "harbour berth dredged", "top_k": 5}),
        )
        .await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["hits"].as_array().map(Vec::len), Some(5), "{found}");
    let (status, found) = s
        .post(
            "/v1/search",
            token,
            &json!({"query": "berth dredged", "filter": {"reviewed": true}}),
        )
        .await;
    assert_eq!(status, 200, "{found}");
    let hits: Vec<&str> = found["hits"]
        .as_array()
        .expect("hits")
        .iter()
        .filter_map(|h| h["document_id"].as_str())
        .collect();
    assert_eq!(hits, ["doc-0"], "the metadata change is restored: {found}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_during_an_ingest_stream_restores_every_document_acknowledged_before_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TestServer::start(dir.path(), None, Options::default())
        .await
        .expect("server");
    let (tenant, token) = tenant_with_documents(&s, 20).await;

    // A stream of ingests, each acknowledged one recorded.
    let acknowledged = Arc::new(Mutex::new(BTreeSet::new()));
    let streaming = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let stream = {
        let (http, url, token) = (s.http.clone(), s.url("/v1/documents"), token.clone());
        let (acknowledged, streaming) = (Arc::clone(&acknowledged), Arc::clone(&streaming));
        tokio::spawn(async move {
            let mut i = 0;
            while streaming.load(std::sync::atomic::Ordering::SeqCst) {
                let id = format!("stream-{i}");
                let r = http
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&json!({"documents": [{"id": id, "text": format!("Tide log {i}: high water at the harbour mouth.")}]}))
                    .send()
                    .await
                    .expect("ingest");
                assert_eq!(r.status().as_u16(), 201, "ingest during the backup");
                acknowledged.lock().expect("lock").insert(id);
                i += 1;
            }
        })
    };
    while acknowledged.lock().expect("lock").len() < 10 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut before: BTreeSet<String> = acknowledged.lock().expect("lock").clone();
    before.extend((0..20).map(|i| format!("doc-{i}")));

    let backups = tempfile::tempdir().expect("tempdir");
    let backup = backups.path().join("first");
    let (ok, out, err) = run(
        &dir.path().join("data"),
        &[],
        &["backup", "--to", backup.to_str().expect("utf-8")],
    )
    .await;
    assert!(!ok, "a data dir without a database is not backed up: {out}");
    assert!(err.contains("no database at"), "{err}");
    let (ok, out, err) = run(
        dir.path(),
        &[],
        &["backup", "--to", backup.to_str().expect("utf-8")],
    )
    .await;
    assert!(ok, "backup failed: {err}");
    let manifest: Value = serde_json::from_str(&out).expect("the manifest on stdout");
    assert_eq!(manifest["vectors_from_server"], true, "{manifest}");
    assert!(backup.join("manifest.json").exists());
    assert!(backup.join("analyzer.db").exists());

    streaming.store(false, std::sync::atomic::Ordering::SeqCst);
    stream
        .await
        .expect("the ingests went on, acknowledged, during the backup");
    let (status, _) = s
        .post("/v1/search", &token, &json!({"query": "tide log"}))
        .await;
    assert_eq!(status, 200, "the server serves on");
    assert!(s.output().contains("vector store copied for a backup"));

    // A fresh data dir, rebuilt from the backup.
    let restored_dir = tempfile::tempdir().expect("tempdir");
    let (ok, out, err) = run(
        restored_dir.path(),
        &[],
        &["restore", "--from", backup.to_str().expect("utf-8")],
    )
    .await;
    assert!(ok, "restore failed: {err}");
    let restored: Value = serde_json::from_str(&out).expect("the restore's report on stdout");
    assert!(
        restored["documents"].as_u64() >= Some(before.len() as u64),
        "{restored}"
    );
    // Restoring again over it is refused: it holds data now.
    let (ok, _, err) = run(
        restored_dir.path(),
        &[],
        &["restore", "--from", backup.to_str().expect("utf-8")],
    )
    .await;
    assert!(!ok);
    assert!(err.contains("already holds data"), "{err}");

    let r = TestServer::start(restored_dir.path(), None, Options::default())
        .await
        .expect("restored server");
    assert!(
        !r.output().contains("vector store reconciled"),
        "the restore left the vector store in line with the database, stopped cleanly"
    );
    assert_restored(&r, &token, &before).await;
    let (_, me) = r.get("/v1/me", &tenant_token(&tenant)).await;
    assert_eq!(me["tenant_id"], tenant.as_str(), "{me}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_to_s3_restores_from_s3_with_or_without_a_server_running() {
    let Some(moto) = Moto::start(&[]).await else {
        return;
    };
    let s3 = moto.s3();
    s3.create_bucket()
        .bucket("analyzer-backups")
        .send()
        .await
        .expect("bucket");
    let aws = moto.aws_env();

    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = TestServer::start(dir.path(), None, Options::default())
        .await
        .expect("server");
    let (_, token) = tenant_with_documents(&s, 12).await;
    let ids: BTreeSet<String> = (0..12).map(|i| format!("doc-{i}")).collect();

    let (ok, out, err) = run(
        dir.path(),
        &aws,
        &["backup", "--to", "s3://analyzer-backups/nightly/one"],
    )
    .await;
    assert!(ok, "backup to S3 failed: {err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).expect("manifest")["vectors_from_server"],
        true
    );
    let listed = s3
        .list_objects_v2()
        .bucket("analyzer-backups")
        .prefix("nightly/one/")
        .send()
        .await
        .expect("list");
    let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert!(
        keys.contains(&"nightly/one/manifest.json") && keys.contains(&"nightly/one/analyzer.db"),
        "{keys:?}"
    );
    assert!(
        !dir.path()
            .join("backups")
            .read_dir()
            .is_ok_and(|mut d| d.next().is_some()),
        "the staging copy is removed after the upload"
    );

    // With the server stopped, the files are copied as they are.
    s.terminate();
    assert!(s.wait().await.expect("exit").success());
    let (ok, out, err) = run(
        dir.path(),
        &aws,
        &["backup", "--to", "s3://analyzer-backups/nightly/two"],
    )
    .await;
    assert!(ok, "backup without a server failed: {err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).expect("manifest")["vectors_from_server"],
        false
    );

    for prefix in ["one", "two"] {
        let restored_dir = tempfile::tempdir().expect("tempdir");
        let from = format!("s3://analyzer-backups/nightly/{prefix}");
        let (ok, _, err) = run(restored_dir.path(), &aws, &["restore", "--from", &from]).await;
        assert!(ok, "restore from {from} failed: {err}");
        let r = TestServer::start(restored_dir.path(), None, Options::default())
            .await
            .expect("restored server");
        assert_restored(&r, &token, &ids).await;
    }

    // Nothing there, and a bucket that does not exist.
    let empty = tempfile::tempdir().expect("tempdir");
    let (ok, _, err) = run(
        empty.path(),
        &aws,
        &["restore", "--from", "s3://analyzer-backups/nowhere"],
    )
    .await;
    assert!(!ok);
    assert!(
        err.contains("no backup at s3://analyzer-backups/nowhere"),
        "{err}"
    );
    let (ok, _, err) = run(
        dir.path(),
        &aws,
        &["backup", "--to", "s3://no-such-bucket/x"],
    )
    .await;
    assert!(!ok);
    assert!(
        err.contains("cannot write the backup to s3://no-such-bucket"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_that_cannot_be_written_fails_clearly_and_the_server_serves_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TestServer::start(dir.path(), None, Options::default())
        .await
        .expect("server");
    let (_, token) = tenant_with_documents(&s, 3).await;

    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a directory").expect("write");
    let full = dir.path().join("full");
    std::fs::create_dir(&full).expect("mkdir");
    std::fs::write(full.join("something"), b"x").expect("write");
    for (to, expected) in [
        (file.join("backup"), "cannot write the backup to"),
        (full.clone(), "is not empty"),
    ] {
        let (ok, out, err) = run(
            dir.path(),
            &[],
            &["backup", "--to", to.to_str().expect("utf-8")],
        )
        .await;
        assert!(!ok, "{to:?}: {out}");
        assert!(err.contains(expected), "{to:?}: {err}");
    }
    let (ok, _, err) = run(dir.path(), &[], &["backup", "--to", "ftp://host/x"]).await;
    assert!(!ok);
    assert!(
        err.contains("expected a directory or s3://BUCKET/PREFIX"),
        "{err}"
    );
    let (ok, _, err) = run(
        dir.path(),
        &[(
            "DATABASE_URL".into(),
            "postgres://postgres@127.0.0.1/test".into(),
        )],
        &["backup", "--to", "/tmp/x"],
    )
    .await;
    assert!(!ok);
    assert!(err.contains("DATABASE_URL is set"), "{err}");

    // A directory with no manifest is not a backup.
    let (ok, _, err) = run(
        &dir.path().join("restored"),
        &[],
        &["restore", "--from", full.to_str().expect("utf-8")],
    )
    .await;
    assert!(!ok);
    assert!(err.contains("no backup at"), "{err}");
    // Nor is a running server's data dir restored into.
    let (ok, _, err) = run(
        dir.path(),
        &[],
        &["restore", "--from", full.to_str().expect("utf-8")],
    )
    .await;
    assert!(!ok);
    assert!(err.contains("a server is running on"), "{err}");

    let (status, found) = s
        .post("/v1/search", &token, &json!({"query": "harbour berth"}))
        .await;
    assert_eq!(status, 200, "{found}");
    let (status, body) = s
        .post(
            "/v1/documents",
            &token,
            &json!({"documents": [{"id": "after", "text": "Written after the failed backups."}]}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
}

/// Every file under `dir`, as a manifest lists them (`prefix/`-relative).
fn manifest_entries(root: &Path, dir: &Path, out: &mut Vec<Value>) {
    use sha2::Digest as _;
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            manifest_entries(root, &path, out);
            continue;
        }
        let bytes = std::fs::read(&path).expect("read");
        let digest = sha2::Sha256::digest(&bytes);
        out.push(json!({
            "path": path.strip_prefix(root).expect("inside").to_str().expect("utf-8"),
            "bytes": bytes.len(),
            "sha256": digest.iter().map(|b| format!("{b:02x}")).collect::<String>(),
        }));
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let path = entry.expect("entry").path();
        let target = to.join(path.file_name().expect("name"));
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).expect("copy");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_writes_the_databases_metadata_over_a_shard_copied_before_the_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let backups = tempfile::tempdir().expect("tempdir");
    let s = TestServer::start(dir.path(), None, Options::default())
        .await
        .expect("server");
    let (_, token) = s.tenant("Gauges", "standard").await;
    let (status, body) = s
        .post("/v1/documents", &token, &json!({"documents": [{"id": "gauge", "text": "The river gauge reads two metres.", "metadata": {"state": "draft"}}]}))
        .await;
    assert_eq!(status, 201, "{body}");
    let (before, after) = (backups.path().join("before"), backups.path().join("after"));
    let (ok, _, err) = run(
        dir.path(),
        &[],
        &["backup", "--to", before.to_str().expect("utf-8")],
    )
    .await;
    assert!(ok, "{err}");
    let r = s
        .request(reqwest::Method::PATCH, "/v1/documents/gauge", &token)
        .json(&json!({"metadata": {"state": "final"}}))
        .send()
        .await
        .expect("patch");
    assert_eq!(r.status().as_u16(), 200);
    let (ok, _, err) = run(
        dir.path(),
        &[],
        &["backup", "--to", after.to_str().expect("utf-8")],
    )
    .await;
    assert!(ok, "{err}");

    // What a backup taken across the change would hold: the shard from
    // before it, the database from after it.
    let mixed = backups.path().join("mixed");
    copy_dir(&before.join("vectors"), &mixed.join("vectors"));
    std::fs::copy(after.join("analyzer.db"), mixed.join("analyzer.db")).expect("copy");
    let mut manifest: Value =
        serde_json::from_slice(&std::fs::read(after.join("manifest.json")).expect("manifest"))
            .expect("json");
    let mut files = Vec::new();
    manifest_entries(&mixed, &mixed, &mut files);
    manifest["files"] = Value::Array(files);
    std::fs::write(mixed.join("manifest.json"), manifest.to_string()).expect("write");

    let restored_dir = tempfile::tempdir().expect("tempdir");
    let (ok, out, err) = run(
        restored_dir.path(),
        &[],
        &["restore", "--from", mixed.to_str().expect("utf-8")],
    )
    .await;
    assert!(ok, "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).expect("report")["documents"],
        1
    );
    let r = TestServer::start(restored_dir.path(), None, Options::default())
        .await
        .expect("restored server");
    for (state, expected) in [("final", json!(["gauge"])), ("draft", json!([]))] {
        let (status, found) = r
            .post(
                "/v1/search",
                &token,
                &json!({"query": "river gauge", "filter": {"state": state}}),
            )
            .await;
        assert_eq!(status, 200, "{found}");
        let ids: Vec<&Value> = found["hits"]
            .as_array()
            .expect("hits")
            .iter()
            .map(|h| &h["document_id"])
            .collect();
        assert_eq!(json!(ids), expected, "filter on {state}: {found}");
    }

    // A file that does not match the manifest is refused.
    std::fs::write(mixed.join("analyzer.db"), b"damaged").expect("write");
    let again = tempfile::tempdir().expect("tempdir");
    let (ok, _, err) = run(
        again.path(),
        &[],
        &["restore", "--from", mixed.to_str().expect("utf-8")],
    )
    .await;
    assert!(!ok);
    assert!(err.contains("does not match the manifest"), "{err}");
    assert!(
        !again.path().join("analyzer.db").exists(),
        "nothing of a damaged backup is put in place"
    );
}
