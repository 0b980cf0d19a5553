//! `/v1/documents`: ingest, read and delete a tenant's documents.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};

use super::AppState;
use super::error::{ApiError, Problem};
use super::extract::{ApiJson, CurrentTenant};
use crate::documents::{self, DocumentView, IngestRequest, IngestResponse, Ingestor, ValidIngest};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/documents", post(ingest))
        .route("/v1/documents/{id}", get(read).delete(remove))
}

/// Chunk, embed and store documents (a batch is stored whole or not at all).
#[utoipa::path(post, path = "/v1/documents", tag = "documents", security(("bearer" = [])),
    request_body = IngestRequest,
    responses(
        (status = 201, description = "Stored", body = IngestResponse),
        (status = 400, description = "Malformed input; nothing stored", body = Problem),
        (status = 413, description = "Body, batch or document too large; nothing stored", body = Problem)))]
pub(super) async fn ingest(
    State(state): State<AppState>,
    CurrentTenant(tenant): CurrentTenant,
    ApiJson(body): ApiJson<IngestRequest>,
) -> Result<(StatusCode, Json<IngestResponse>), ApiError> {
    let valid = ValidIngest::parse(body, &state.config.limits)?;
    let ingestor = Ingestor {
        db: &state.db,
        vectors: state.vectors.as_ref(),
        embedder: state.embedder.as_ref(),
        chunking: state.config.chunking,
        usage: &state.usage,
        vector_budget: state.config.tier_limits(tenant.tier).vector_storage_bytes,
    };
    let response = ingestor.ingest(&tenant.id, valid).await?;
    Ok((StatusCode::CREATED, Json(response)))
}

/// Read one document; 404 when it does not exist for this tenant.
#[utoipa::path(get, path = "/v1/documents/{id}", tag = "documents", security(("bearer" = [])),
    params(("id" = String, Path, description = "Document id")),
    responses(
        (status = 200, description = "The document", body = DocumentView),
        (status = 404, description = "No such document for this tenant", body = Problem)))]
pub(super) async fn read(
    State(state): State<AppState>,
    CurrentTenant(tenant): CurrentTenant,
    Path(id): Path<String>,
) -> Result<Json<DocumentView>, ApiError> {
    Ok(Json(documents::get(&state.db, &tenant.id, &id).await?))
}

/// Delete one document and its vectors.
#[utoipa::path(delete, path = "/v1/documents/{id}", tag = "documents", security(("bearer" = [])),
    params(("id" = String, Path, description = "Document id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such document for this tenant", body = Problem)))]
pub(super) async fn remove(
    State(state): State<AppState>,
    CurrentTenant(tenant): CurrentTenant,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    documents::delete(&state.db, state.vectors.as_ref(), &tenant.id, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
