//! Two tenants whose documents never cross: not by search, by id, by
//! delete, nor with ids guessed or copied from the other tenant.

use analyzer_tests::{Options, on_both_databases, start};
use serde_json::json;

on_both_databases! {
    async fn tenant_b_can_never_reach_tenant_a_documents(db: Db) {
        let Some(env) = start(db, Options::default()).await else { return };
        let s = &env.server;
        let (_, a) = s.tenant("Tenant A", "standard").await;
        let (_, b) = s.tenant("Tenant B", "premium").await;

        let secret_text = "Project Nightingale merger terms are confidential to tenant A.";
        let (status, ingested) = s
            .post("/v1/documents", &a, &json!({"documents": [
                {"id": "shared-id", "text": secret_text, "metadata": {"owner": "a"}},
                {"text": "Nightingale budget numbers for tenant A only."}
            ]}))
            .await;
        assert_eq!(status, 201, "{ingested}");
        let generated_id = ingested["ids"][1].as_str().expect("generated id").to_owned();

        // By search, with the exact words, in every way of asking.
        for query in [json!({"query": "Project Nightingale merger terms"}),
                      json!({"query": "Nightingale", "top_k": 100}),
                      json!({"query": "Nightingale", "filter": {"owner": "a"}})] {
            let (status, found) = s.post("/v1/search", &b, &query).await;
            assert_eq!(status, 200, "{found}");
            assert!(found["hits"].as_array().expect("hits").is_empty(), "B saw A's data: {found}");
        }
        let (_, answer) = s.post("/v1/analyze", &b, &json!({"question": "What are the Nightingale merger terms?"})).await;
        assert!(answer["citations"].as_array().expect("citations").is_empty(), "{answer}");
        assert!(!answer["answer"].as_str().expect("answer").contains("Nightingale"), "{answer}");

        // By id, copied from A's responses or guessed.
        for id in ["shared-id", generated_id.as_str()] {
            let (status, body) = s.get(&format!("/v1/documents/{id}"), &b).await;
            assert_eq!(status, 404, "B read A's document {id}: {body}");
            let (status, _) = s.delete(&format!("/v1/documents/{id}"), &b).await;
            assert_eq!(status, 404, "B deleted A's document {id}");
        }

        // The same id in B is B's own document; A's is untouched.
        let (status, _) = s
            .post("/v1/documents", &b, &json!({"documents": [{"id": "shared-id", "text": "Tenant B's own grocery list: apples, pears."}]}))
            .await;
        assert_eq!(status, 201);
        let (_, a_doc) = s.get("/v1/documents/shared-id", &a).await;
        assert_eq!(a_doc["text"], secret_text);
        let (_, b_doc) = s.get("/v1/documents/shared-id", &b).await;
        assert!(b_doc["text"].as_str().expect("text").contains("grocery"));

        // B deleting its own `shared-id` leaves A's searchable and readable.
        let (status, _) = s.delete("/v1/documents/shared-id", &b).await;
        assert_eq!(status, 204);
        let (status, _) = s.get("/v1/documents/shared-id", &a).await;
        assert_eq!(status, 200);
        let (_, found) = s.post("/v1/search", &a, &json!({"query": "Project Nightingale merger terms"})).await;
        assert_eq!(found["hits"][0]["document_id"], "shared-id", "{found}");

        // A's collection does not exist for B.
        let (status, _) = s.post("/v1/documents", &a, &json!({"collection": "a-only", "documents": [{"text": "x y z"}]})).await;
        assert_eq!(status, 201);
        let (status, body) = s.post("/v1/search", &b, &json!({"query": "x", "collection": "a-only"})).await;
        assert_eq!(status, 404, "{body}");

        // B's usage counts only B.
        let (_, usage) = s.get("/v1/usage", &b).await;
        assert_eq!(usage["documents"], 0, "{usage}");
    }
}
