//! Every bad input gets a clear 4xx problem and changes nothing.

use analyzer_tests::{Options, now, on_both_databases, sign, start, tenant_token};
use serde_json::{Value, json};

fn assert_problem(status: u16, body: &Value, expected: u16) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["status"], expected, "{body}");
    for field in ["type", "title", "detail", "request_id"] {
        assert!(body[field].is_string(), "problem lacks {field}: {body}");
    }
}

on_both_databases! {
    async fn bad_requests_get_problems_and_store_nothing(db: Db) {
        let Some(env) = start(db, Options {
            env: vec![
                ("ANALYZER_MAX_BODY_BYTES".into(), "65536".into()),
                ("ANALYZER_MAX_BATCH_DOCUMENTS".into(), "4".into()),
                ("ANALYZER_MAX_DOCUMENT_BYTES".into(), "2000".into()),
            ],
            ..Options::default()
        }).await else { return };
        let s = &env.server;
        let (_, token) = s.tenant("Careless", "standard").await;

        let raw = |body: Vec<u8>, content_type: &'static str| {
            s.request(reqwest::Method::POST, "/v1/documents", &token)
                .header("content-type", content_type)
                .body(body)
                .send()
        };
        let cases: Vec<(Vec<u8>, &str, u16)> = vec![
            (b"{not json".to_vec(), "application/json", 400),
            (b"{\"documents\": [{\"text\": \"caf\xe9\"}]}".to_vec(), "application/json", 400),
            (b"{\"documents\": [{\"text\": \"ok\"}]}".to_vec(), "text/plain", 415),
            (vec![b' '; 70_000], "application/json", 413),
        ];
        for (body, ct, expected) in cases {
            let r = raw(body, ct).await.expect("request");
            let (status, body) = analyzer_tests::split(r).await;
            assert_problem(status, &body, expected);
        }

        let json_cases = vec![
            (json!({}), 400),
            (json!({"documents": []}), 400),
            (json!({"documents": [{}]}), 400),
            (json!({"documents": [{"text": ""}]}), 400),
            (json!({"documents": [{"text": "   \n "}]}), 400),
            (json!({"documents": [{"text": 42}]}), 400),
            (json!({"documents": [{"text": "fine"}, {"text": "x", "metadata": "not an object"}]}), 400),
            (json!({"documents": [{"text": "fine", "id": "has space"}]}), 400),
            (json!({"documents": [{"text": "a", "id": "dup"}, {"text": "b", "id": "dup"}]}), 400),
            (json!({"documents": [{"text": "a", "unknown_field": true}]}), 400),
            (json!({"collection": "bad/name", "documents": [{"text": "a"}]}), 400),
            (json!({"documents": [{"text": "a"}, {"text": "b"}, {"text": "c"}, {"text": "d"}, {"text": "e"}]}), 413),
            (json!({"documents": [{"text": "fine"}, {"text": "x".repeat(2001)}]}), 413),
        ];
        for (body, expected) in json_cases {
            let (status, problem) = s.post("/v1/documents", &token, &body).await;
            assert_problem(status, &problem, expected);
        }

        let (_, usage) = s.get("/v1/usage", &token).await;
        assert_eq!(usage["documents"], 0, "a refused batch stored something: {usage}");
        assert_eq!(usage["chunks"], 0);

        let (status, _) = s.post("/v1/documents", &token, &json!({"documents": [{"text": "Real content here."}]})).await;
        assert_eq!(status, 201);
        let search_cases = vec![
            (json!({}), 400),
            (json!({"query": ""}), 400),
            (json!({"query": "x", "top_k": 0}), 400),
            (json!({"query": "x", "top_k": 101}), 400),
            (json!({"query": "x", "top_k": -1}), 400),
            (json!({"query": "x", "top_k": "five"}), 400),
            (json!({"query": "x", "filter": {"score": 1.5}}), 400),
            (json!({"query": "x", "filter": "lang=en"}), 400),
            (json!({"query": "x", "collection": "never-created"}), 404),
            (json!({"query": "x".repeat(5000)}), 400),
        ];
        for (body, expected) in search_cases {
            let (status, problem) = s.post("/v1/search", &token, &body).await;
            assert_problem(status, &problem, expected);
        }
        let (status, problem) = s.post("/v1/analyze", &token, &json!({"question": " "})).await;
        assert_problem(status, &problem, 400);
        let (status, problem) = s.post("/v1/analyze", &token, &json!({"question": "x", "collection": "nope"})).await;
        assert_problem(status, &problem, 404);
        let (status, problem) = s.get("/v1/documents/not%20valid%20id", &token).await;
        assert_problem(status, &problem, 404);
    }
}

on_both_databases! {
    async fn bad_tokens_are_refused_with_401_or_403(db: Db) {
        let Some(env) = start(db, Options::default()).await else { return };
        let s = &env.server;
        let (tenant_id, _) = s.tenant("Guarded", "standard").await;
        let t = now();

        let r = s.http.post(s.url("/v1/search")).json(&json!({"query": "x"})).send().await.expect("request");
        assert_eq!(r.headers().get("www-authenticate").and_then(|v| v.to_str().ok()).map(|v| v.starts_with("Bearer")), Some(true));
        let (status, body) = analyzer_tests::split(r).await;
        assert_problem(status, &body, 401);

        use base64::Engine as _;
        let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let claims = json!({"tenant_id": tenant_id, "exp": t + 600});
        let unsigned = format!("{}.{}.", b64(&json!({"alg": "none", "typ": "JWT"})), b64(&claims));
        let other_key = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(b"some-other-secret-some-other-secret"),
        ).expect("sign");
        let rsa_signed = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_rsa_pem(include_bytes!("../fixtures/rsa_private.pem")).expect("key"),
        ).expect("sign");
        let cases = [
            ("expired", sign(&json!({"tenant_id": tenant_id, "exp": t - 120}))),
            ("not yet valid", sign(&json!({"tenant_id": tenant_id, "exp": t + 600, "nbf": t + 300}))),
            ("no exp", sign(&json!({"tenant_id": tenant_id}))),
            ("alg none", unsigned),
            ("another key", other_key),
            ("another algorithm", rsa_signed),
            ("garbage", "abc.def.ghi".to_owned()),
            ("unknown tenant", tenant_token(&uuid::Uuid::new_v4().to_string())),
            ("tenant id not a uuid", sign(&json!({"tenant_id": "acme", "exp": t + 600}))),
            ("neither tenant nor admin", sign(&json!({"exp": t + 600}))),
        ];
        for (what, token) in cases {
            let (status, body) = s.post("/v1/search", &token, &json!({"query": "x"})).await;
            assert_eq!(status, 401, "{what}: {body}");
            assert_problem(status, &body, 401);
        }
        let r = s.http.get(s.url("/v1/usage")).header("authorization", "Basic dXNlcjpwYXNz").send().await.expect("request");
        assert_eq!(r.status(), 401);

        // Scope: tenant tokens stay out of the admin API, admin tokens out of the tenant API.
        let tenant = tenant_token(&tenant_id);
        let (status, body) = s.post("/v1/admin/tenants", &tenant, &json!({"name": "x", "tier": "premium"})).await;
        assert_problem(status, &body, 403);
        let (status, body) = s.post("/v1/search", &analyzer_tests::admin_token(), &json!({"query": "x"})).await;
        assert_problem(status, &body, 403);

        // A suspended tenant gets 403 (at once in the process that suspended it).
        let admin = analyzer_tests::admin_token();
        let r = s.request(reqwest::Method::PATCH, &format!("/v1/admin/tenants/{tenant_id}"), &admin)
            .json(&json!({"status": "suspended"})).send().await.expect("patch");
        assert_eq!(r.status(), 200);
        let (status, body) = s.post("/v1/search", &tenant, &json!({"query": "x"})).await;
        assert_problem(status, &body, 403);
        let r = s.request(reqwest::Method::PATCH, &format!("/v1/admin/tenants/{tenant_id}"), &admin)
            .json(&json!({"status": "active"})).send().await.expect("patch");
        assert_eq!(r.status(), 200);
        let (status, _) = s.post("/v1/search", &tenant, &json!({"query": "x"})).await;
        assert_eq!(status, 200);
    }
}

on_both_databases! {
    async fn bad_admin_requests_get_problems(db: Db) {
        let Some(env) = start(db, Options::default()).await else { return };
        let s = &env.server;
        let admin = analyzer_tests::admin_token();
        for body in [json!({"name": "x", "tier": "gold"}), json!({"name": " ", "tier": "standard"}), json!({"tier": "standard"})] {
            let (status, problem) = s.post("/v1/admin/tenants", &admin, &body).await;
            assert_problem(status, &problem, 400);
        }
        let (status, problem) = s.get("/v1/admin/tenants/not-a-uuid", &admin).await;
        assert_problem(status, &problem, 404);
        let (status, problem) = s.get(&format!("/v1/admin/tenants/{}", uuid::Uuid::new_v4()), &admin).await;
        assert_problem(status, &problem, 404);
        let (id, _) = s.tenant("Real", "standard").await;
        let patch = |body: Value| s.request(reqwest::Method::PATCH, &format!("/v1/admin/tenants/{id}"), &admin).json(&body).send();
        for body in [json!({}), json!({"tier": "gold"}), json!({"status": "deleted"})] {
            let (status, problem) = analyzer_tests::split(patch(body).await.expect("patch")).await;
            assert_problem(status, &problem, 400);
        }
        let (status, problem) = s.post(&format!("/v1/admin/tenants/{id}/tokens"), &admin, &json!({"ttl_seconds": 5})).await;
        assert_problem(status, &problem, 400);
        let (_, tenant) = s.get(&format!("/v1/admin/tenants/{id}"), &admin).await;
        assert_eq!(tenant["tier"], "standard");
        assert_eq!(tenant["status"], "active");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_usage_report_past_the_year_9999_is_a_400_problem() {
    let env = analyzer_tests::start_with(Vec::new()).await;
    let admin = analyzer_tests::admin_token();
    for query in [
        "from=2026-01-01&to=9999-12-31",
        "from=9999-12-31T23:00:00Z&to=9999-12-31",
        "from=2026-01-01&to=99999-01-01",
    ] {
        let (status, body) = env
            .server
            .get(&format!("/v1/admin/usage?{query}"), &admin)
            .await;
        assert_problem(status, &body, 400);
    }
    let (status, body) = env
        .server
        .get(
            "/v1/admin/usage?from=9999-12-30&to=9999-12-31T23:00:00Z",
            &admin,
        )
        .await;
    assert_eq!(status, 200, "{body}");
}
