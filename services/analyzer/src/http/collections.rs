//! `/v1/collections`: list, create and delete a tenant's collections.

use axum::extract::{Path, State};
use axum::http::{HeaderName, StatusCode, header};
use axum::routing::{delete, get};
use axum::{Json, Router};

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiJson, CurrentTenant};
use crate::documents::collections::{self, CollectionList, CollectionView, CreateCollection};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/collections", get(list).post(create))
        .route("/v1/collections/{name}", delete(remove))
}

/// The tenant's collections, by name, each with its documents, chunks and
/// bytes; `default` is always there.
#[utoipa::path(get, path = "/v1/collections", tag = "documents", operation_id = "collections_list",
    security(("bearer" = [])),
    responses((status = 200, description = "The collections", body = CollectionList)))]
pub(super) async fn list(
    State(state): State<AppState>,
    CurrentTenant(tenant): CurrentTenant,
) -> Result<Json<CollectionList>, ApiError> {
    Ok(Json(collections::list(&state.db, &tenant.id).await?))
}

/// Create an empty collection.
#[utoipa::path(post, path = "/v1/collections", tag = "documents", operation_id = "collections_create",
    security(("bearer" = [])),
    request_body = CreateCollection,
    responses(
        (status = 201, description = "Created", body = CollectionView),
        (status = 409, description = "The tenant has this collection (`collection_exists`)")))]
pub(super) async fn create(
    State(state): State<AppState>,
    CurrentTenant(tenant): CurrentTenant,
    ApiJson(body): ApiJson<CreateCollection>,
) -> Result<(StatusCode, [(HeaderName, String); 1], Json<CollectionView>), ApiError> {
    let created = collections::create(&state.db, &tenant.id, body).await?;
    let location = format!("/v1/collections/{}", created.name);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(created),
    ))
}

/// Delete a collection with its documents, their vectors and cached
/// searches. Its documents disappear at once; `default` cannot be deleted.
#[utoipa::path(delete, path = "/v1/collections/{name}", tag = "documents", operation_id = "collections_delete",
    security(("bearer" = [])),
    params(("name" = String, Path, description = "Collection name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such collection for this tenant"),
        (status = 409, description = "`default` cannot be deleted (`collection_protected`)")))]
pub(super) async fn remove(
    State(state): State<AppState>,
    CurrentTenant(tenant): CurrentTenant,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    collections::delete(&state.db, state.vectors.as_ref(), &tenant.id, &name).await?;
    state
        .retriever(tenant.tier)
        .forget_collection(&tenant.id, &name)
        .await;
    Ok(StatusCode::NO_CONTENT)
}
