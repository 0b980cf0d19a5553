//! `/v1/collections`: listed with what each holds, created, and deleted
//! with everything in them, never across tenants.

use analyzer_tests::{Options, on_both_databases, start};
use serde_json::{Value, json};

fn names(list: &Value) -> Vec<&str> {
    list["collections"]
        .as_array()
        .expect("collections")
        .iter()
        .map(|c| c["name"].as_str().expect("name"))
        .collect()
}

on_both_databases! {
    async fn a_deleted_collection_leaves_nothing_in_the_database_the_vectors_or_the_cache(db: Db) {
        let Some(env) = start(db, Options::default()).await else { return };
        let s = &env.server;
        let (_, token) = s.tenant("Shipyard", "premium").await;
        let (_, other) = s.tenant("Neighbour", "premium").await;

        let (status, list) = s.get("/v1/collections", &token).await;
        assert_eq!(status, 200, "{list}");
        assert_eq!(names(&list), ["default"]);
        assert_eq!(list["collections"][0]["documents"], 0);

        let r = s.request(reqwest::Method::POST, "/v1/collections", &token)
            .json(&json!({"name": "manuals"})).send().await.expect("create");
        assert_eq!(r.status().as_u16(), 201);
        assert_eq!(r.headers().get("location").and_then(|v| v.to_str().ok()), Some("/v1/collections/manuals"));
        let (status, problem) = s.post("/v1/collections", &token, &json!({"name": "manuals"})).await;
        assert_eq!((status, problem["code"].as_str()), (409, Some("collection_exists")), "{problem}");
        let (status, problem) = s.post("/v1/collections", &token, &json!({"name": "no spaces"})).await;
        assert_eq!(status, 400, "{problem}");
        assert_eq!(problem["errors"][0]["field"], "name");

        // An empty collection is searchable; another tenant's same name is its own.
        let (status, found) = s.post("/v1/search", &token, &json!({"query": "crane", "collection": "manuals"})).await;
        assert_eq!(status, 200, "{found}");
        let (status, _) = s.post("/v1/search", &other, &json!({"query": "crane", "collection": "manuals"})).await;
        assert_eq!(status, 404, "a collection is the tenant's own");
        let (status, body) = s.post("/v1/documents", &other, &json!({"collection": "manuals", "documents": [
            {"id": "theirs", "text": "The neighbour's crane manual: slewing gear maintenance."}
        ]})).await;
        assert_eq!(status, 201, "{body}");

        let (status, body) = s.post("/v1/documents", &token, &json!({"collection": "manuals", "documents": [
            {"id": "m-1", "text": "Crane manual: slewing gear maintenance every 500 hours."},
            {"id": "m-2", "text": "Crane manual: hoist rope inspection and replacement."},
            {"id": "m-3", "text": "Crane manual: load chart for the harbour crane."}
        ]})).await;
        assert_eq!(status, 201, "{body}");
        let (status, body) = s.post("/v1/documents", &token, &json!({"documents": [
            {"id": "d-1", "text": "Canteen menu for the week: soup, bread, apples."}
        ]})).await;
        assert_eq!(status, 201, "{body}");
        let (_, list) = s.get("/v1/collections", &token).await;
        assert_eq!(names(&list), ["default", "manuals"]);
        let manuals = &list["collections"][1];
        assert_eq!(manuals["documents"], 3, "{list}");
        assert!(manuals["chunks"].as_i64() >= Some(3) && manuals["bytes"].as_i64() > Some(100), "{list}");

        for _ in 0..2 {
            let (_, found) = s.post("/v1/search", &token, &json!({"query": "slewing gear maintenance", "collection": "manuals"})).await;
            assert_eq!(found["hits"][0]["document_id"], "m-1", "{found}");
        }
        let (_, usage) = s.get("/v1/usage", &token).await;
        assert!(usage["quotas"]["query_cache_bytes"]["used"].as_u64() > Some(0), "{usage}");

        let (status, problem) = s.delete("/v1/collections/default", &token).await;
        assert_eq!((status, problem["code"].as_str()), (409, Some("collection_protected")), "{problem}");
        let (status, _) = s.delete("/v1/collections/manuals", &other).await;
        assert_eq!(status, 204, "the neighbour deletes its own `manuals`");
        let (status, found) = s.post("/v1/search", &token, &json!({"query": "slewing gear", "collection": "manuals"})).await;
        assert_eq!(found["hits"][0]["document_id"], "m-1", "the neighbour's delete took ours: {status} {found}");

        let (status, _) = s.delete("/v1/collections/manuals", &token).await;
        assert_eq!(status, 204);
        let (status, _) = s.delete("/v1/collections/manuals", &token).await;
        assert_eq!(status, 404);

        // The database: no document, no listing, no count.
        for id in ["m-1", "m-2", "m-3"] {
            let (status, _) = s.get(&format!("/v1/documents/{id}"), &token).await;
            assert_eq!(status, 404, "{id}");
        }
        let (_, page) = s.get("/v1/documents", &token).await;
        assert_eq!(page["documents"].as_array().map(Vec::len), Some(1), "{page}");
        let (_, list) = s.get("/v1/collections", &token).await;
        assert_eq!(names(&list), ["default"]);
        let (_, usage) = s.get("/v1/usage", &token).await;
        assert_eq!(usage["documents"], 1, "{usage}");
        // The cache: the collection's searches are gone, not only unreachable.
        assert_eq!(usage["quotas"]["query_cache_bytes"]["used"], 0, "{usage}");
        let (status, _) = s.post("/v1/search", &token, &json!({"query": "slewing gear", "collection": "manuals"})).await;
        assert_eq!(status, 404, "a deleted collection is unknown");

        // The vectors: a search of a settled tenant does not check its hits
        // against the database, so chunks left behind would show here.
        let (status, _) = s.post("/v1/collections", &token, &json!({"name": "manuals"})).await;
        assert_eq!(status, 201);
        let (status, found) = s.post("/v1/search", &token, &json!({"query": "slewing gear maintenance hoist rope load chart", "collection": "manuals", "top_k": 20})).await;
        assert_eq!(status, 200, "{found}");
        assert_eq!(found["hits"], json!([]), "vectors of the deleted collection remain: {found}");
    }
}
