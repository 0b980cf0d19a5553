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
