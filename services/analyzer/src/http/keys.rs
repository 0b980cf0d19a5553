//! `/v1/admin/tenants/{id}/keys`: tenants' API keys, for admin tokens.

use axum::extract::{Path, State};
use axum::http::{HeaderName, StatusCode, header};
use axum::routing::{delete, get};
use axum::{Json, Router};

use super::AppState;
use super::admin::tenant_id;
use super::error::ApiError;
use super::extract::{Admin, ApiJson};
use crate::api_keys::{self, CreateKey, CreatedKey, KeyList};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/admin/tenants/{id}/keys", get(list).post(create))
        .route("/v1/admin/tenants/{id}/keys/{key_id}", delete(revoke))
}

/// Make an API key for a tenant's programs. The key is in this answer
/// only; the service keeps a hash of it.
#[utoipa::path(post, path = "/v1/admin/tenants/{id}/keys", tag = "admin", operation_id = "admin_keys_create",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Tenant id")),
    request_body = CreateKey,
    responses(
        (status = 201, description = "The key, shown once", body = CreatedKey),
        (status = 404, description = "No such tenant")))]
pub(super) async fn create(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<CreateKey>,
) -> Result<(StatusCode, [(HeaderName, String); 1], Json<CreatedKey>), ApiError> {
    let tenant = tenant_id(&id)?;
    let created = api_keys::create(&state.db, &tenant, body).await?;
    tracing::info!(tenant_id = %tenant, key_id = %created.view.id, "API key created");
    let location = format!("/v1/admin/tenants/{tenant}/keys/{}", created.view.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(created),
    ))
}

/// A tenant's API keys, without their secrets.
#[utoipa::path(get, path = "/v1/admin/tenants/{id}/keys", tag = "admin", operation_id = "admin_keys_list",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Tenant id")),
    responses(
        (status = 200, description = "The keys", body = KeyList),
        (status = 404, description = "No such tenant")))]
pub(super) async fn list(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
) -> Result<Json<KeyList>, ApiError> {
    let tenant = tenant_id(&id)?;
    Ok(Json(api_keys::list(&state.db, &tenant).await?))
}

/// Revoke an API key: refused at once by every task (announced to the
/// others on PostgreSQL; within `ANALYZER_TENANT_CACHE_MS` should the
/// announcement be lost). Revoking it again is harmless.
#[utoipa::path(delete, path = "/v1/admin/tenants/{id}/keys/{key_id}", tag = "admin", operation_id = "admin_keys_revoke",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "Tenant id"),
        ("key_id" = String, Path, description = "Key id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "No such key for this tenant")))]
pub(super) async fn revoke(
    State(state): State<AppState>,
    _: Admin,
    Path((id, key_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let tenant = tenant_id(&id)?;
    api_keys::revoke(&state.db, &tenant, &key_id).await?;
    state.api_key_revoked(&key_id).await;
    tracing::info!(tenant_id = %tenant, key_id = %key_id.chars().take(32).collect::<String>(), "API key revoked");
    Ok(StatusCode::NO_CONTENT)
}
