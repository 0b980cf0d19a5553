//! Restarts keep every document; SIGTERM during requests loses none of them.

use analyzer_tests::{Options, on_both_databases, start};
use serde_json::json;

on_both_databases! {
    async fn a_restart_keeps_all_data(db: Db) {
        let Some(mut env) = start(db, Options::default()).await else { return };
        let (tenant_id, token) = env.server.tenant("Durable", "standard").await;
        let (status, _) = env.server
            .post("/v1/documents", &token, &json!({"collection": "kept", "documents": [
                {"id": "one", "text": "Lighthouses guide ships along the rocky coast.", "metadata": {"k": "v"}},
                {"id": "two", "text": "Bakeries open early to sell fresh bread."}
            ]}))
            .await;
        assert_eq!(status, 201);
        let (_, before) = env.server.post("/v1/search", &token, &json!({"query": "lighthouse ships coast", "collection": "kept"})).await;

        env.server = env.server.restart().await.expect("restart");
        let s = &env.server;
        let (status, doc) = s.get("/v1/documents/one", &token).await;
        assert_eq!(status, 200, "{doc}");
        assert_eq!(doc["metadata"]["k"], "v");
        let (_, after) = s.post("/v1/search", &token, &json!({"query": "lighthouse ships coast", "collection": "kept"})).await;
        assert_eq!(after["hits"], before["hits"], "search results changed across a restart");
        assert_eq!(after["hits"][0]["document_id"], "one");
        let admin = analyzer_tests::admin_token();
        let (status, tenant) = s.get(&format!("/v1/admin/tenants/{tenant_id}"), &admin).await;
        assert_eq!(status, 200);
        assert_eq!(tenant["name"], "Durable");
        let (_, usage) = s.get("/v1/usage", &token).await;
        assert_eq!(usage["documents"], 2);
        assert!(usage["counters"]["api_calls"].as_i64().expect("api calls") >= 2, "{usage}");
    }
}

on_both_databases! {
    async fn sigterm_during_requests_loses_none_of_them(db: Db) {
        let Some(mut env) = start(db, Options::default()).await else { return };
        let (_, token) = env.server.tenant("Busy", "premium").await;
        let text = "Graceful shutdown finishes in-flight requests. ".repeat(200);
        let mut requests = Vec::new();
        for i in 0..24 {
            let req = env.server
                .request(reqwest::Method::POST, "/v1/documents", &token)
                .json(&json!({"documents": [{"id": format!("doc-{i}"), "text": text}]}));
            requests.push(tokio::spawn(async move { req.send().await }));
        }
        // Let the requests reach the server, then stop it mid-flight.
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        env.server.terminate();
        let mut accepted = Vec::new();
        for (i, r) in requests.into_iter().enumerate() {
            match r.await.expect("join") {
                Ok(response) => {
                    assert_eq!(response.status(), 201, "request {i} failed during drain");
                    accepted.push(i);
                }
                // Sent after the listener closed: refused, never half-done.
                Err(e) => assert!(e.is_connect(), "request {i}: {e}"),
            }
        }
        let status = env.server.wait().await.expect("exit");
        assert!(status.success(), "exit status {status}");
        assert!(!accepted.is_empty(), "no request got through before SIGTERM");

        let server = analyzer_tests::TestServer::start(
            env.dir.path(),
            env.pg.as_ref().map(|p| p.url.as_str()),
            Options::default(),
        ).await.expect("start again");
        for i in accepted {
            let (status, body) = server.get(&format!("/v1/documents/doc-{i}"), &token).await;
            assert_eq!(status, 200, "acknowledged doc-{i} lost: {body}");
        }
        env.server = server;
    }
}

/// Copy a directory tree (the test's stand-in for a disk as a crash left it).
fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("create copy");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy file");
        }
    }
}

on_both_databases! {
    /// The embedded vector store flushes in the background, so a crash can
    /// lose its last writes and deletes; the database has them. Here the
    /// store goes back to an older state without its clean-stop marker, as
    /// a crash would leave it: the next start rebuilds the chunks of the
    /// document ingested since and drops those of the document deleted since.
    async fn an_unclean_vector_store_is_rebuilt_from_the_database(db: Db) {
        let Some(mut env) = start(db, Options::default()).await else { return };
        let (_, token) = env.server.tenant("Crashy", "standard").await;
        let ingest = |id: &str, text: &str| json!({"documents": [{"id": id, "text": text}]});
        let (status, _) = env.server
            .post("/v1/documents", &token, &ingest("kept", "Lighthouses guide ships along the rocky coast."))
            .await;
        assert_eq!(status, 201);
        let (status, _) = env.server
            .post("/v1/documents", &token, &ingest("gone", "Glaciers carve valleys over thousands of years."))
            .await;
        assert_eq!(status, 201);

        let old = env.dir.path().join("old-vectors");
        env.server = env.server
            .restart_with(|dir| copy_tree(&dir.join("vectors"), &old))
            .await
            .expect("restart");
        let (status, _) = env.server.delete("/v1/documents/gone", &token).await;
        assert_eq!(status, 204);
        let (status, _) = env.server
            .post("/v1/documents", &token, &ingest("late", "Volcanoes build islands from cooling lava."))
            .await;
        assert_eq!(status, 201);

        env.server = env.server
            .restart_with(|dir| {
                let vectors = dir.join("vectors");
                std::fs::remove_dir_all(&vectors).expect("remove vectors");
                copy_tree(&old, &vectors);
                let mut markers = 0;
                for shard in std::fs::read_dir(&vectors).expect("shards") {
                    let marker = shard.expect("shard").path().join("clean-stop");
                    if marker.exists() {
                        std::fs::remove_file(marker).expect("remove marker");
                        markers += 1;
                    }
                }
                assert_eq!(markers, 1, "a clean stop leaves its marker");
            })
            .await
            .expect("restart on the old vectors");
        let log = env.server.output();
        let line = log
            .lines()
            .find(|l| l.contains("vector store reconciled"))
            .unwrap_or_else(|| panic!("no reconciliation logged: {log}"));
        let line: serde_json::Value = serde_json::from_str(line).expect("json log line");
        assert_eq!(line["fields"]["reason"], "the shard was not stopped cleanly", "{line}");
        assert_eq!(line["fields"]["rebuilt"], 1, "{line}");
        assert_eq!(line["fields"]["documents"], 2, "{line}");
        assert!(line["fields"]["removed"].as_u64().expect("removed") >= 1, "{line}");

        let search = |q: &str| json!({"query": q, "top_k": 10});
        let (status, found) = env.server.post("/v1/search", &token, &search("volcanoes islands lava")).await;
        assert_eq!(status, 200, "{found}");
        assert_eq!(found["hits"][0]["document_id"], "late", "{found}");
        // Words of both the deleted and the kept document: only one is found.
        let (_, found) = env.server.post("/v1/search", &token, &search("glaciers carve valleys lighthouses")).await;
        let hits = found["hits"].as_array().expect("hits");
        assert!(hits.iter().all(|h| h["document_id"] != "gone"), "a deleted document came back: {found}");
        assert!(hits.iter().any(|h| h["document_id"] == "kept"), "{found}");

        // Stopped cleanly now: the next start has nothing to reconcile.
        env.server = env.server.restart().await.expect("restart");
        assert!(!env.server.output().contains("vector store reconciled"));
    }
}
