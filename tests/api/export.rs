//! Exports: every document of a tenant as NDJSON, nothing of another's,
//! for the tenant and for an operator (suspended tenants included).

use std::collections::HashSet;

use analyzer_tests::{Options, admin_token, on_both_databases, start};
use serde_json::{Value, json};

async fn export(
    s: &analyzer_tests::TestServer,
    path: &str,
    token: &str,
) -> (u16, String, Vec<Value>) {
    let r = s
        .request(reqwest::Method::GET, path, token)
        .send()
        .await
        .expect("export");
    let status = r.status().as_u16();
    let content_type = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = r.text().await.expect("body");
    let lines = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    (status, content_type, lines)
}

on_both_databases! {
    async fn an_export_holds_every_document_of_its_tenant_and_nothing_of_another(db: Db) {
        let Some(env) = start(db, Options::default()).await else { return };
        let s = &env.server;
        let (a, token) = s.tenant("Leaving", "standard").await;
        let (_, other) = s.tenant("Staying", "standard").await;
        // More than a page of the export's (16), in three batches.
        for batch in 0..3 {
            let documents: Vec<Value> = (0..15)
                .map(|i| json!({"id": format!("d{batch}-{i:02}"), "text": format!("Document {i} of batch {batch}."), "metadata": {"batch": batch}}))
                .collect();
            let (status, body) = s.post("/v1/documents", &token, &json!({"documents": documents})).await;
            assert_eq!(status, 201, "{body}");
        }
        let (status, body) = s.post("/v1/documents", &other, &json!({"documents": [{"id": "theirs", "text": "Not for export."}]})).await;
        assert_eq!(status, 201, "{body}");

        let (status, content_type, lines) = export(s, "/v1/export", &token).await;
        assert_eq!(status, 200);
        assert_eq!(content_type, "application/x-ndjson");
        assert_eq!(lines.len(), 45);
        let ids: HashSet<&str> = lines.iter().map(|l| l["id"].as_str().expect("id")).collect();
        assert_eq!(ids.len(), 45, "a document exported twice");
        assert!(!ids.contains("theirs"), "another tenant's document exported");
        assert_eq!(lines[0]["id"], "d0-00", "oldest first");
        let last = &lines[44];
        assert_eq!(last["text"], "Document 14 of batch 2.");
        assert_eq!(last["metadata"], json!({"batch": 2}));
        for field in ["collection", "chunks", "bytes", "created_at", "updated_at"] {
            assert!(last.get(field).is_some(), "{field} missing: {last}");
        }

        let (status, _, admin_lines) = export(s, &format!("/v1/admin/tenants/{a}/export"), &admin_token()).await;
        assert_eq!(status, 200);
        assert_eq!(admin_lines, lines);
        let (status, _, _) = export(s, "/v1/admin/tenants/4eb470f8-7230-4797-8e00-c8e16e863d27/export", &admin_token()).await;
        assert_eq!(status, 404);
        let (status, _, _) = export(s, &format!("/v1/admin/tenants/{a}/export"), &token).await;
        assert_eq!(status, 403, "a tenant's token reaches no admin export");

        // Suspended: the tenant is refused, the operator is not.
        let r = s.request(reqwest::Method::PATCH, &format!("/v1/admin/tenants/{a}"), &admin_token())
            .json(&json!({"status": "suspended"})).send().await.expect("suspend");
        assert_eq!(r.status().as_u16(), 200);
        let (status, _, _) = export(s, "/v1/export", &token).await;
        assert_eq!(status, 403);
        let (status, _, suspended) = export(s, &format!("/v1/admin/tenants/{a}/export"), &admin_token()).await;
        assert_eq!((status, suspended.len()), (200, 45));
    }
}
