//! A tenant's whole journey through the API.

use analyzer_tests::{Options, on_both_databases, start};
use serde_json::json;

on_both_databases! {
    async fn a_tenants_whole_journey_works(db: Db) {
        let Some(env) = start(db, Options::default()).await else { return };
        let s = &env.server;
        let (tenant_id, token) = s.tenant("Acme", "premium").await;

        let (status, body) = s
            .post(
                "/v1/documents",
                &token,
                &json!({
                    "collection": "reports",
                    "documents": [
                        {"id": "q3-report", "text": "Revenue grew 12 percent in Europe during the third quarter. Costs stayed flat. The board approved a new office in Lisbon.", "metadata": {"quarter": "q3", "year": 2024}},
                        {"id": "q2-report", "text": "Revenue in Asia declined slightly. Hiring slowed across all regions.", "metadata": {"quarter": "q2", "year": 2024}},
                        {"text": "Unrelated memo about the kitchen coffee machine and cleaning schedule."}
                    ]
                }),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        let ids = body["ids"].as_array().expect("ids");
        assert_eq!(ids.len(), 3);
        assert_eq!(ids[0], "q3-report");
        assert!(body["chunks"].as_u64().expect("chunks") >= 3);

        let (status, doc) = s.get("/v1/documents/q3-report", &token).await;
        assert_eq!(status, 200, "{doc}");
        assert_eq!(doc["collection"], "reports");
        assert_eq!(doc["metadata"]["year"], 2024);
        assert!(doc["text"].as_str().expect("text").starts_with("Revenue grew"));

        let (status, found) = s
            .post("/v1/search", &token, &json!({"query": "revenue in Europe", "collection": "reports", "top_k": 3}))
            .await;
        assert_eq!(status, 200, "{found}");
        let hits = found["hits"].as_array().expect("hits");
        assert!(!hits.is_empty());
        assert_eq!(hits[0]["document_id"], "q3-report");
        assert_eq!(found["cached"], false);
        for field in ["document_id", "chunk", "score", "text", "metadata"] {
            assert!(hits[0].get(field).is_some(), "hit lacks {field}");
        }

        let (status, filtered) = s
            .post("/v1/search", &token, &json!({"query": "revenue", "collection": "reports", "filter": {"quarter": "q2"}}))
            .await;
        assert_eq!(status, 200, "{filtered}");
        let hits = filtered["hits"].as_array().expect("hits");
        assert!(!hits.is_empty());
        assert!(hits.iter().all(|h| h["document_id"] == "q2-report"), "{filtered}");

        let (status, answer) = s
            .post("/v1/analyze", &token, &json!({"question": "How did revenue develop in Europe?", "collection": "reports"}))
            .await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["model"], "extractive");
        assert!(answer["answer"].as_str().expect("answer").contains("Revenue grew 12 percent in Europe"), "{answer}");
        assert_eq!(answer["citations"][0]["document_id"], "q3-report");

        let streamed = s
            .request(reqwest::Method::POST, "/v1/analyze", &token)
            .json(&json!({"question": "How did revenue develop in Europe?", "collection": "reports", "stream": true}))
            .send()
            .await
            .expect("stream");
        assert_eq!(streamed.status(), 200);
        assert!(streamed.headers()["content-type"].to_str().expect("ct").starts_with("text/event-stream"));
        let text = streamed.text().await.expect("body");
        let events: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("event: ")).collect();
        assert_eq!(events.first(), Some(&"citations"), "{text}");
        assert_eq!(events.last(), Some(&"done"), "{text}");
        assert!(events.contains(&"delta"), "{text}");
        let deltas: String = text
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
            .filter_map(|v| v["text"].as_str().map(str::to_owned))
            .collect();
        assert_eq!(deltas, answer["answer"].as_str().expect("answer"));

        let (status, usage) = s.get("/v1/usage", &token).await;
        assert_eq!(status, 200, "{usage}");
        assert_eq!(usage["tenant_id"], tenant_id.as_str());
        assert_eq!(usage["tier"], "premium");
        assert_eq!(usage["limits"]["requests_per_minute"], 500);
        assert_eq!(usage["documents"], 3);
        assert_eq!(usage["counters"]["searches"], 2);
        assert_eq!(usage["counters"]["analyses"], 2);
        assert_eq!(usage["counters"]["documents_ingested"], 3);

        let (status, _) = s.delete("/v1/documents/q3-report", &token).await;
        assert_eq!(status, 204);
        let (status, gone) = s.get("/v1/documents/q3-report", &token).await;
        assert_eq!(status, 404, "{gone}");
        let (_, after) = s
            .post("/v1/search", &token, &json!({"query": "revenue in Europe", "collection": "reports"}))
            .await;
        assert!(
            after["hits"].as_array().expect("hits").iter().all(|h| h["document_id"] != "q3-report"),
            "deleted document still found: {after}"
        );
        let (status, _) = s.delete("/v1/documents/q3-report", &token).await;
        assert_eq!(status, 404);
    }
}

on_both_databases! {
    async fn re_ingesting_an_id_replaces_the_document_and_its_chunks(db: Db) {
        let Some(env) = start(db, Options::default()).await else { return };
        let s = &env.server;
        let (_, token) = s.tenant("Replace", "standard").await;
        let long = "Zebras graze on the savanna. ".repeat(80);
        let (status, first) = s
            .post("/v1/documents", &token, &json!({"documents": [{"id": "doc", "text": long}]}))
            .await;
        assert_eq!(status, 201, "{first}");
        assert!(first["chunks"].as_u64().expect("chunks") > 1);

        let (status, second) = s
            .post("/v1/documents", &token, &json!({"documents": [{"id": "doc", "text": "Penguins swim in cold water."}]}))
            .await;
        assert_eq!(status, 201, "{second}");
        assert_eq!(second["chunks"], 1);

        let (_, doc) = s.get("/v1/documents/doc", &token).await;
        assert_eq!(doc["text"], "Penguins swim in cold water.");
        assert_eq!(doc["chunks"], 1);
        let (_, zebras) = s.post("/v1/search", &token, &json!({"query": "zebras savanna", "top_k": 10})).await;
        let hits = zebras["hits"].as_array().expect("hits");
        assert!(hits.iter().all(|h| !h["text"].as_str().unwrap_or("").contains("Zebras")), "old chunks remain: {zebras}");
        let (_, usage) = s.get("/v1/usage", &token).await;
        assert_eq!(usage["documents"], 1);
        assert_eq!(usage["chunks"], 1);
    }
}
