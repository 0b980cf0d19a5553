//! What a tenant's frontend builds on: listing documents through cursors,
//! `GET /v1/me`, problems with machine-readable codes and every invalid
//! field, and CORS for browser clients.

use std::collections::HashSet;

use analyzer_tests::{Options, now, on_both_databases, sign, split, start};
use serde_json::{Value, json};

/// Every page of a listing from `query` on, following `next_cursor`; the
/// ids in order.
async fn list_all(s: &analyzer_tests::TestServer, token: &str, query: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/documents?{query}&cursor={c}"),
            None => format!("/v1/documents?{query}"),
        };
        let (status, page) = s.get(&path, token).await;
        assert_eq!(status, 200, "{page}");
        for doc in page["documents"].as_array().expect("documents") {
            assert!(
                doc.get("text").is_none(),
                "a listing carries no text: {doc}"
            );
            ids.push(doc["id"].as_str().expect("id").to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return ids,
        }
    }
}

fn batch(prefix: &str, n: usize, metadata: Value) -> Value {
    let documents: Vec<Value> = (0..n)
        .map(|i| {
            json!({
                "id": format!("{prefix}-{i:03}"),
                "text": format!("Document {i} of batch {prefix}: notes about the harbour crane schedule."),
                "metadata": metadata,
            })
        })
        .collect();
    json!({ "documents": documents })
}

on_both_databases! {
    async fn a_listing_followed_through_its_cursors_returns_each_document_once_newest_first(db: Db) {
        let Some(env) = start(db, Options::default()).await else { return };
        let s = &env.server;
        let (_, token) = s.tenant("Lister", "premium").await;
        let (_, other) = s.tenant("Neighbour", "premium").await;
        for (prefix, lang) in [("old", "en"), ("mid", "de"), ("new", "en")] {
            let (status, body) = s.post("/v1/documents", &token, &batch(prefix, 25, json!({"lang": lang, "year": 2024}))).await;
            assert_eq!(status, 201, "{body}");
            // Distinct creation times between the batches.
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let (status, body) = s.post("/v1/documents", &other, &batch("theirs", 5, json!({"lang": "en"}))).await;
        assert_eq!(status, 201, "{body}");

        let ids = list_all(s, &token, "limit=7").await;
        assert_eq!(ids.len(), 75, "{ids:?}");
        assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 75, "no document twice");
        assert!(ids[..25].iter().all(|id| id.starts_with("new-")), "newest first: {ids:?}");
        assert!(ids[50..].iter().all(|id| id.starts_with("old-")), "{ids:?}");
        assert!(ids.iter().all(|id| !id.starts_with("theirs-")), "another tenant's documents listed");

        // The metadata filter is the search's: typed values, URL-encoded JSON.
        let english = list_all(s, &token, "limit=1000&filter=%7B%22lang%22%3A%22en%22%7D").await;
        assert_eq!(english.len(), 50);
        let wrong_type = list_all(s, &token, "filter=%7B%22year%22%3A%222024%22%7D").await;
        assert!(wrong_type.is_empty(), "the string \"2024\" is not the integer 2024: {wrong_type:?}");
        let (status, page) = s.get("/v1/documents?filter=%7B%22year%22%3A2024%7D&limit=1", &token).await;
        assert_eq!(status, 200, "{page}");
        let item = &page["documents"][0];
        for field in ["id", "collection", "metadata", "chunks", "bytes", "created_at", "updated_at"] {
            assert!(item.get(field).is_some(), "{field} missing from {item}");
        }
        assert_eq!(item["collection"], "default");
        assert!(page["next_cursor"].is_string());

        // By collection.
        let (status, body) = s.post("/v1/documents", &token, &json!({"collection": "manuals", "documents": [{"id": "m-1", "text": "Crane manual."}]})).await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(list_all(s, &token, "collection=manuals").await, ["m-1"]);
        assert!(list_all(s, &other, "collection=manuals").await.is_empty());
    }
}

on_both_databases! {
    async fn documents_stored_while_a_listing_pages_never_make_it_repeat_or_skip(db: Db) {
        let Some(env) = start(db, Options::default()).await else { return };
        let s = &env.server;
        let (_, token) = s.tenant("Busy", "premium").await;
        let (status, body) = s.post("/v1/documents", &token, &batch("before", 60, json!({}))).await;
        assert_eq!(status, 201, "{body}");
        let existing: HashSet<String> = (0..60).map(|i| format!("before-{i:03}")).collect();

        let writer = {
            let s_url = s.url("/v1/documents");
            let http = s.http.clone();
            let token = token.clone();
            tokio::spawn(async move {
                for round in 0..20 {
                    let body = batch(&format!("during{round}"), 3, json!({}));
                    let r = http.post(&s_url).bearer_auth(&token).json(&body).send().await.expect("ingest");
                    assert_eq!(r.status().as_u16(), 201);
                }
            })
        };
        let seen = list_all(s, &token, "limit=4").await;
        writer.await.expect("writer");
        let unique: HashSet<&String> = seen.iter().collect();
        assert_eq!(unique.len(), seen.len(), "a document listed twice: {seen:?}");
        for id in &existing {
            assert!(unique.contains(id), "{id} existed before the first page and was skipped");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_listing_parameters_are_each_named_in_one_problem() {
    let env = start(analyzer_tests::Db::Sqlite, Options::default())
        .await
        .expect("start");
    let s = &env.server;
    let (_, token) = s.tenant("Careless", "standard").await;
    let (status, problem) = s
        .get(
            "/v1/documents?limit=5000&cursor=forged&filter=%7B%22a%22%3A1.5%7D",
            &token,
        )
        .await;
    assert_eq!(status, 400, "{problem}");
    assert_eq!(problem["code"], "validation_failed");
    let fields = analyzer_tests::problem_fields(&problem);
    assert_eq!(fields, ["limit", "cursor", "filter.a"], "{problem}");
    let (status, problem) = s.get("/v1/documents?colection=typo", &token).await;
    assert_eq!(status, 400, "an unknown parameter is refused: {problem}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn me_says_which_tenant_a_token_speaks_for_with_its_tier_and_limits() {
    let env = start(analyzer_tests::Db::Sqlite, Options::default())
        .await
        .expect("start");
    let s = &env.server;
    let (id, token) = s.tenant("Acme Analytics", "premium").await;
    let (status, me) = s.get("/v1/me", &token).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["tenant_id"], id.as_str());
    assert_eq!(me["name"], "Acme Analytics");
    assert_eq!(me["tier"], "premium");
    assert_eq!(me["status"], "active");
    assert_eq!(me["limits"]["requests_per_minute"], 500);
    let (status, problem) = s.get("/v1/me", &analyzer_tests::admin_token()).await;
    assert_eq!(status, 403, "{problem}");
    assert_eq!(problem["code"], "forbidden");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn problems_carry_a_stable_code_and_every_invalid_field() {
    let env = start(analyzer_tests::Db::Sqlite, Options::default())
        .await
        .expect("start");
    let s = &env.server;
    let (id, token) = s.tenant("Coded", "standard").await;

    let r = s.http.get(s.url("/v1/me")).send().await.expect("request");
    assert_eq!(
        r.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );
    let (status, problem) = split(r).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (401, Some("token_missing"))
    );

    let expired = sign(&json!({"tenant_id": id, "exp": now() - 3600}));
    let (status, problem) = s.get("/v1/me", &expired).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (401, Some("token_expired")),
        "{problem}"
    );
    let (status, problem) = s.get("/v1/me", "not.a.token").await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (401, Some("token_invalid")),
        "{problem}"
    );

    let (status, problem) = s
        .post(
            "/v1/documents",
            &token,
            &json!({"collection": "bad name", "documents": [
                {"text": " "},
                {"text": "fine", "metadata": {"tags": ["a"], "ok": 1}},
                {"id": "no spaces allowed", "text": "fine"}
            ]}),
        )
        .await;
    assert_eq!(status, 400, "{problem}");
    assert_eq!(problem["code"], "validation_failed");
    let fields = analyzer_tests::problem_fields(&problem);
    assert_eq!(
        fields,
        [
            "collection",
            "documents[0].text",
            "documents[1].metadata.tags",
            "documents[2].id"
        ],
        "{problem}"
    );
    let (_, page) = s.get("/v1/documents", &token).await;
    assert_eq!(
        page["documents"],
        json!([]),
        "nothing of a refused batch is stored"
    );

    let (status, problem) = s
        .post(
            "/v1/search",
            &token,
            &json!({"query": "", "top_k": 0, "filter": {"x": [1]}}),
        )
        .await;
    assert_eq!(status, 400, "{problem}");
    assert_eq!(
        problem["errors"].as_array().map(Vec::len),
        Some(3),
        "{problem}"
    );

    let r = s
        .http
        .post(s.url("/v1/search"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("request");
    let (status, problem) = split(r).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (400, Some("malformed_json"))
    );
    let r = s
        .http
        .post(s.url("/v1/search"))
        .bearer_auth(&token)
        .body("query=x")
        .send()
        .await
        .expect("request");
    let (status, problem) = split(r).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (415, Some("unsupported_media_type"))
    );
    let (status, problem) = s.get("/v1/documents/nope", &token).await;
    assert_eq!((status, problem["code"].as_str()), (404, Some("not_found")));
    let r = s
        .request(reqwest::Method::PUT, "/v1/documents", &token)
        .send()
        .await
        .expect("request");
    let (status, problem) = split(r).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (405, Some("method_not_allowed"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_may_send_the_headers_client_libraries_add_and_read_the_ones_that_matter() {
    let env = analyzer_tests::start_with(vec![(
        "ANALYZER_CORS_ORIGINS".into(),
        "https://console.example.com".into(),
    )])
    .await;
    let s = &env.server;
    let r = s
        .http
        .request(reqwest::Method::OPTIONS, s.url("/v1/documents"))
        .header("origin", "https://console.example.com")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type, idempotency-key, last-event-id, x-requested-with",
        )
        .send()
        .await
        .expect("preflight");
    assert!(r.status().is_success(), "{}", r.status());
    let allowed = header_lowercase(&r, "access-control-allow-headers");
    for header in [
        "idempotency-key",
        "last-event-id",
        "x-requested-with",
        "authorization",
    ] {
        assert!(allowed.contains(header), "{header} not allowed: {allowed}");
    }
    let r = s
        .http
        .get(s.url("/v1/me"))
        .header("origin", "https://console.example.com")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 401);
    let exposed = header_lowercase(&r, "access-control-expose-headers");
    for header in [
        "www-authenticate",
        "retry-after",
        "location",
        "x-request-id",
        "ratelimit-remaining",
    ] {
        assert!(exposed.contains(header), "{header} not exposed: {exposed}");
    }
}

/// A response header's value, lower-cased; empty when absent.
fn header_lowercase(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase()
}
