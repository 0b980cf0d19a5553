//! `/v1/documents`: ingest, read and delete a tenant's documents.

use axum::extract::{FromRequest as _, Path, Request, State};
use axum::http::{HeaderName, StatusCode, header};
use axum::routing::get;
use axum::{Json, Router};

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery, CurrentTenant};
use super::upload::{self, UploadForm};
use crate::documents::{
    self, DocumentPage, DocumentView, IngestRequest, IngestResponse, Ingestor, ListQuery, Listing,
    MetadataPatch, ValidIngest,
};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/documents", get(list).post(ingest))
        .route(
            "/v1/documents/{id}",
            get(read).patch(update_metadata).delete(remove),
        )
}

/// The tenant's documents, newest first, a page at a time; each without
/// its text. Follow `next_cursor` until it is absent.
#[utoipa::path(get, path = "/v1/documents", tag = "documents", operation_id = "documents_list",
    security(("bearer" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "A page of documents", body = DocumentPage),
        (status = 400, description = "Invalid parameters, each named"))
)]
pub(super) async fn list(
    State(state): State<AppState>,
    CurrentTenant(tenant): CurrentTenant,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<DocumentPage>, ApiError> {
    let listing = Listing::parse(query)?;
    Ok(Json(documents::list(&state.db, &tenant.id, listing).await?))
}

/// Chunk, embed and store documents, given as JSON text or uploaded as
/// files (`multipart/form-data`: PDF, DOCX, HTML, Markdown, plain text,
/// told from their content). A request is stored whole or not at all.
#[utoipa::path(post, path = "/v1/documents", tag = "documents", operation_id = "documents_ingest",
    security(("bearer" = [])),
    request_body(content(
        (IngestRequest = "application/json"),
        (UploadForm = "multipart/form-data"),
    )),
    responses(
        (status = 201, description = "Stored", body = IngestResponse),
        (status = 400, description = "Malformed input, each invalid field named; nothing stored"),
        (status = 413, description = "Body, batch, file or document too large (`payload_too_large`), or over the vector storage quota (`quota_exceeded`); nothing stored"),
        (status = 415, description = "Not JSON or multipart (`unsupported_media_type`), or a file of an unsupported type or whose name lies about it (`unsupported_file`, each file in `errors`); nothing stored"),
        (status = 422, description = "A file that cannot be read: empty, corrupt, encrypted, without text, or over a reading bound (`unreadable_file`, each file in `errors`); nothing stored")))]
pub(super) async fn ingest(
    State(state): State<AppState>,
    CurrentTenant(tenant): CurrentTenant,
    request: Request,
) -> Result<(StatusCode, [(HeaderName, String); 1], Json<IngestResponse>), ApiError> {
    let valid = if upload::is_multipart(request.headers()) {
        let (parts, body) = request.into_parts();
        let received = upload::receive(&parts.headers, body, &state.extractor).await?;
        ValidIngest::from_upload(received, &state.extractor, &state.config.limits).await?
    } else {
        let ApiJson(body) = ApiJson::<IngestRequest>::from_request(request, &state)
            .await
            .map_err(|e| match e {
                ApiError::BadRequest { status, code, .. } if status == StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                    ApiError::BadRequest {
                        status,
                        code,
                        detail: "expected `Content-Type: application/json` (documents as text) or `multipart/form-data` (files)".into(),
                    }
                }
                e => e,
            })?;
        ValidIngest::parse(body, &state.config.limits)?
    };
    let ingestor = Ingestor {
        db: &state.db,
        vectors: state.vectors.as_ref(),
        embedder: state.embedder.as_ref(),
        chunking: state.config.chunking,
        usage: &state.usage,
        vector_budget: state.config.tier_limits(tenant.tier).vector_storage_bytes,
    };
    let response = ingestor.ingest(&tenant.id, valid).await?;
    // A batch has no one URL: the first document's stands for it.
    let location = format!(
        "/v1/documents/{}",
        response.ids.first().map_or("", String::as_str)
    );
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(response),
    ))
}

/// Read one document; 404 when it does not exist for this tenant.
#[utoipa::path(get, path = "/v1/documents/{id}", tag = "documents", operation_id = "documents_get",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Document id")),
    responses(
        (status = 200, description = "The document", body = DocumentView),
        (status = 404, description = "No such document for this tenant")))]
pub(super) async fn read(
    State(state): State<AppState>,
    CurrentTenant(tenant): CurrentTenant,
    Path(id): Path<String>,
) -> Result<Json<DocumentView>, ApiError> {
    Ok(Json(documents::get(&state.db, &tenant.id, &id).await?))
}

/// Replace a document's metadata whole, without re-embedding it: search
/// filters see the new values from this answer on.
#[utoipa::path(patch, path = "/v1/documents/{id}", tag = "documents", operation_id = "documents_update_metadata",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Document id")),
    request_body = MetadataPatch,
    responses(
        (status = 200, description = "The document with its new metadata", body = DocumentView),
        (status = 404, description = "No such document for this tenant")))]
pub(super) async fn update_metadata(
    State(state): State<AppState>,
    CurrentTenant(tenant): CurrentTenant,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<MetadataPatch>,
) -> Result<Json<DocumentView>, ApiError> {
    let document =
        documents::replace_metadata(&state.db, state.vectors.as_ref(), &tenant.id, &id, body)
            .await?;
    Ok(Json(document))
}

/// Delete one document and its vectors.
#[utoipa::path(delete, path = "/v1/documents/{id}", tag = "documents", operation_id = "documents_delete",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Document id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such document for this tenant")))]
pub(super) async fn remove(
    State(state): State<AppState>,
    CurrentTenant(tenant): CurrentTenant,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    documents::delete(&state.db, state.vectors.as_ref(), &tenant.id, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
