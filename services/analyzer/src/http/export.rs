//! Exports: a tenant's documents as NDJSON, for the tenant itself
//! (`/v1/export`) and for an operator (`/v1/admin/tenants/{id}/export`).

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::TryStreamExt as _;

use super::AppState;
use super::admin::tenant_id;
use super::error::ApiError;
use super::extract::{Admin, CurrentTenant};
use crate::documents::{self, DocumentView};
use crate::tenants;
use analyzer_domain::tenants::TenantId;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/export", get(own))
        .route("/v1/admin/tenants/{id}/export", get(admin))
}

/// Every document of the calling tenant, one JSON line each (as
/// `GET /v1/documents/{id}` returns it), oldest first, streamed.
#[utoipa::path(get, path = "/v1/export", tag = "documents", operation_id = "documents_export",
    security(("bearer" = [])),
    responses((status = 200, description = "One document per line", content_type = "application/x-ndjson", body = DocumentView)))]
pub(super) async fn own(
    State(state): State<AppState>,
    CurrentTenant(tenant): CurrentTenant,
) -> Response {
    ndjson(&state, tenant.id)
}

/// Every document of a tenant (suspended ones too), one JSON line each,
/// oldest first, streamed: what the tenant takes with it when it leaves.
#[utoipa::path(get, path = "/v1/admin/tenants/{id}/export", tag = "admin", operation_id = "admin_tenants_export",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Tenant id")),
    responses(
        (status = 200, description = "One document per line", content_type = "application/x-ndjson", body = DocumentView),
        (status = 404, description = "No such tenant")))]
pub(super) async fn admin(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = tenant_id(&id)?;
    let tenant = tenants::get(&state.db, &id).await?;
    tracing::info!(tenant_id = %tenant.id, "tenant exported");
    Ok(ndjson(&state, tenant.id))
}

fn ndjson(state: &AppState, tenant: TenantId) -> Response {
    let lines = documents::export(state.db.clone(), tenant.clone()).map_err(move |e| {
        // The status is sent: the stream ends unfinished, which a client
        // sees as a broken transfer, never as a complete export.
        tracing::error!(error = %e, tenant_id = %tenant, "an export stopped");
        std::io::Error::other("the export stopped")
    });
    (
        [
            (header::CONTENT_TYPE, "application/x-ndjson"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"documents.ndjson\"",
            ),
        ],
        Body::from_stream(lines),
    )
        .into_response()
}
