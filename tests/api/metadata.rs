//! `PATCH /v1/documents/{id}`: a document's metadata replaced without
//! re-embedding; searches, listings and the query cache see only the new
//! values from the answer on; other tenants' documents are out of reach.

use analyzer_tests::{Options, on_both_databases, split, start};
use serde_json::{Value, json};

async fn patch(
    s: &analyzer_tests::TestServer,
    token: &str,
    id: &str,
    body: &Value,
) -> (u16, Value) {
    let r = s
        .request(
            reqwest::Method::PATCH,
            &format!("/v1/documents/{id}"),
            token,
        )
        .json(body)
        .send()
        .await
        .expect("patch");
    split(r).await
}

async fn hit_ids(
    s: &analyzer_tests::TestServer,
    token: &str,
    filter: Value,
) -> (Vec<String>, Value) {
    let (status, found) = s
        .post(
            "/v1/search",
            token,
            &json!({"query": "tide tables for the harbour", "filter": filter}),
        )
        .await;
    assert_eq!(status, 200, "{found}");
    let ids = found["hits"]
        .as_array()
        .expect("hits")
        .iter()
        .map(|h| h["document_id"].as_str().expect("id").to_owned())
        .collect();
    (ids, found)
}

on_both_databases! {
    async fn new_metadata_is_searched_listed_and_never_served_stale_from_the_cache(db: Db) {
        let Some(env) = start(db, Options::default()).await else { return };
        let s = &env.server;
        let (_, token) = s.tenant("Harbour", "premium").await;
        let (status, body) = s.post("/v1/documents", &token, &json!({"documents": [
            {"id": "tides", "text": "Tide tables for the harbour, updated weekly by the pilots.", "metadata": {"lang": "en", "year": 2025}},
            {"id": "other", "text": "Tide tables for the harbour in winter.", "metadata": {"lang": "en"}}
        ]})).await;
        assert_eq!(status, 201, "{body}");
        let (_, usage) = s.get("/v1/usage", &token).await;
        let tokens_before = usage["counters"]["embedding_tokens"].clone();

        // Cached under the old values, twice to be sure the entry exists.
        for _ in 0..2 {
            let (ids, _) = hit_ids(s, &token, json!({"lang": "en", "year": 2025})).await;
            assert_eq!(ids, ["tides"]);
        }

        let (status, doc) = patch(s, &token, "tides", &json!({"metadata": {"lang": "de", "reviewed": true}})).await;
        assert_eq!(status, 200, "{doc}");
        assert_eq!(doc["metadata"], json!({"lang": "de", "reviewed": true}));
        assert!(doc["text"].as_str().expect("text").starts_with("Tide tables"), "{doc}");

        let (ids, found) = hit_ids(s, &token, json!({"lang": "en", "year": 2025})).await;
        assert!(ids.is_empty(), "the old values still match: {found}");
        let (ids, found) = hit_ids(s, &token, json!({"lang": "de"})).await;
        assert_eq!(ids, ["tides"], "{found}");
        assert_eq!(found["hits"][0]["metadata"], json!({"lang": "de", "reviewed": true}));
        let (ids, _) = hit_ids(s, &token, json!({"lang": "en"})).await;
        assert_eq!(ids, ["other"]);

        let (_, page) = s.get("/v1/documents?filter=%7B%22reviewed%22%3Atrue%7D", &token).await;
        assert_eq!(page["documents"][0]["id"], "tides", "{page}");
        let (_, read) = s.get("/v1/documents/tides", &token).await;
        assert_eq!(read["metadata"], json!({"lang": "de", "reviewed": true}));
        assert_eq!(read["chunks"], 1);

        let (_, usage) = s.get("/v1/usage", &token).await;
        assert_eq!(usage["counters"]["embedding_tokens"], tokens_before, "nothing was embedded again");

        // Cleared with an empty object; the text and chunks stay.
        let (status, doc) = patch(s, &token, "tides", &json!({"metadata": {}})).await;
        assert_eq!(status, 200, "{doc}");
        let (ids, _) = hit_ids(s, &token, json!({"lang": "de"})).await;
        assert!(ids.is_empty());
        let (ids, _) = hit_ids(s, &token, json!({})).await;
        assert!(ids.contains(&"tides".to_owned()));
    }
}

on_both_databases! {
    async fn a_bad_or_foreign_metadata_patch_changes_nothing(db: Db) {
        let Some(env) = start(db, Options::default()).await else { return };
        let s = &env.server;
        let (_, a) = s.tenant("Owner", "standard").await;
        let (_, b) = s.tenant("Intruder", "standard").await;
        let (status, body) = s.post("/v1/documents", &a, &json!({"documents": [
            {"id": "memo", "text": "Quarterly memo about tide tables for the harbour.", "metadata": {"lang": "en"}}
        ]})).await;
        assert_eq!(status, 201, "{body}");

        let (status, problem) = patch(s, &b, "memo", &json!({"metadata": {"lang": "xx"}})).await;
        assert_eq!((status, problem["code"].as_str()), (404, Some("not_found")), "{problem}");
        let (status, problem) = patch(s, &a, "missing", &json!({"metadata": {}})).await;
        assert_eq!(status, 404, "{problem}");
        let (status, problem) = patch(s, &a, "memo", &json!({"metadata": {"tags": ["a"], "bad key": 1}})).await;
        assert_eq!(status, 400, "{problem}");
        let mut fields = analyzer_tests::problem_fields(&problem);
        fields.sort_unstable();
        assert_eq!(fields, ["metadata.bad key", "metadata.tags"], "{problem}");
        let (status, problem) = patch(s, &a, "memo", &json!({"metadata": [1]})).await;
        assert_eq!(status, 400, "{problem}");
        let (status, problem) = patch(s, &a, "memo", &json!({"text": "new"})).await;
        assert_eq!(status, 400, "only metadata can be patched: {problem}");

        let (_, read) = s.get("/v1/documents/memo", &a).await;
        assert_eq!(read["metadata"], json!({"lang": "en"}));
        let (ids, _) = hit_ids(s, &a, json!({"lang": "en"})).await;
        assert_eq!(ids, ["memo"]);
    }
}
