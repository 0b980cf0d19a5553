//! Offboarding: `DELETE /v1/admin/tenants/{id}` removes a tenant's data
//! and refuses its credentials, keeps its record and usage ledger, can be
//! repeated, and never touches another tenant.

use analyzer_tests::{Options, admin_token, on_both_databases, start};
use serde_json::json;

on_both_databases! {
    async fn a_deleted_tenant_loses_its_data_and_credentials_and_keeps_its_ledger(db: Db) {
        let Some(env) = start(db, Options::default()).await else { return };
        let s = &env.server;
        let admin = admin_token();
        let (a, token) = s.tenant("Leaving", "premium").await;
        let (b, other) = s.tenant("Staying", "premium").await;
        for (t, text) in [(&token, "Leaving tenant's contract: the pier lease ends in May."), (&other, "Staying tenant's contract: the pier lease is renewed.")] {
            let (status, body) = s.post("/v1/documents", t, &json!({"collection": "contracts", "documents": [{"id": "lease", "text": text}]})).await;
            assert_eq!(status, 201, "{body}");
            for _ in 0..2 {
                let (status, _) = s.post("/v1/search", t, &json!({"query": "pier lease", "collection": "contracts"})).await;
                assert_eq!(status, 200);
            }
        }
        let (status, created) = s.post(&format!("/v1/admin/tenants/{a}/keys"), &admin, &json!({"name": "job"})).await;
        assert_eq!(status, 201, "{created}");
        let key = created["key"].as_str().expect("key").to_owned();

        let (status, body) = s.delete(&format!("/v1/admin/tenants/{a}"), &admin).await;
        assert_eq!(status, 204, "{body}");

        // Its credentials are refused: its tokens name a deleted tenant,
        // its keys are gone.
        let (status, problem) = s.get("/v1/me", &token).await;
        assert_eq!((status, problem["code"].as_str()), (401, Some("tenant_unknown")), "{problem}");
        let (status, problem) = s.get("/v1/me", &key).await;
        assert_eq!((status, problem["code"].as_str()), (401, Some("token_invalid")), "{problem}");
        // Its record stays, deleted; its data is gone; it takes nothing new.
        let (status, record) = s.get(&format!("/v1/admin/tenants/{a}"), &admin).await;
        assert_eq!((status, record["status"].as_str()), (200, Some("deleted")), "{record}");
        let r = s.request(reqwest::Method::GET, &format!("/v1/admin/tenants/{a}/export"), &admin).send().await.expect("export");
        assert_eq!(r.status().as_u16(), 200);
        assert_eq!(r.text().await.expect("body"), "", "a deleted tenant exports nothing");
        let (status, keys) = s.get(&format!("/v1/admin/tenants/{a}/keys"), &admin).await;
        assert_eq!((status, keys["keys"].clone()), (200, json!([])), "{keys}");
        for (path, body) in [("tokens", json!({})), ("keys", json!({"name": "again"}))] {
            let (status, problem) = s.post(&format!("/v1/admin/tenants/{a}/{path}"), &admin, &body).await;
            assert_eq!((status, problem["code"].as_str()), (409, Some("tenant_deleted")), "{path}: {problem}");
        }
        let r = s.request(reqwest::Method::PATCH, &format!("/v1/admin/tenants/{a}"), &admin)
            .json(&json!({"status": "active"})).send().await.expect("patch");
        assert_eq!(r.status().as_u16(), 409, "a deleted tenant is not brought back");

        // Its usage ledger is kept for billing.
        let (status, report) = s.get("/v1/admin/usage?from=2000-01-01&to=2999-12-31", &admin).await;
        assert_eq!(status, 200, "{report}");
        assert!(report.to_string().contains(&a), "the ledger lost the deleted tenant: {report}");

        // Another tenant keeps all of its own.
        let (status, doc) = s.get("/v1/documents/lease", &other).await;
        assert_eq!((status, doc["text"].as_str()), (200, Some("Staying tenant's contract: the pier lease is renewed.")));
        let (_, found) = s.post("/v1/search", &other, &json!({"query": "pier lease", "collection": "contracts"})).await;
        assert_eq!(found["hits"][0]["document_id"], "lease", "{found}");
        let (_, me) = s.get("/v1/me", &other).await;
        assert_eq!(me["tenant_id"], b.as_str());

        // Again, and unknown.
        let (status, _) = s.delete(&format!("/v1/admin/tenants/{a}"), &admin).await;
        assert_eq!(status, 204);
        let (status, _) = s.delete("/v1/admin/tenants/4eb470f8-7230-4797-8e00-c8e16e863d27", &admin).await;
        assert_eq!(status, 404);
        let (status, _) = s.delete(&format!("/v1/admin/tenants/{b}"), &other).await;
        assert_eq!(status, 403, "a tenant cannot delete one");

        let (_, audit) = s.get(&format!("/v1/admin/audit?tenant={a}"), &admin).await;
        let deletions = audit["entries"].as_array().expect("entries").iter().filter(|e| e["action"] == "tenant.delete" && e["outcome"] == "ok").count();
        assert_eq!(deletions, 2, "{audit}");
    }
}
