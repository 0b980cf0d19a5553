//! `/v1/admin`: tenant management and token minting, for admin tokens only.

use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::audit::AuditNote;
use super::error::ApiError;
use super::extract::{Admin, ApiJson};
use crate::error::{ServiceError, Violations};
use crate::tenants;
use crate::usage::{Period, Report};
use analyzer_domain::tenants::{Tenant, TenantId, TenantName, TenantStatus, Tier};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/admin/tenants", post(create).get(list))
        .route(
            "/v1/admin/tenants/{id}",
            get(read).patch(update).delete(offboard),
        )
        .route("/v1/admin/tenants/{id}/tokens", post(mint))
        .route("/v1/admin/tenants/{id}/tokens/revoke", post(revoke_tokens))
        .route("/v1/admin/usage", get(usage_report))
}

/// `GET /v1/admin/usage` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    /// Start: a date (`2026-11-01`) or an RFC 3339 time, included.
    pub from: Option<String>,
    /// End: a date (its whole day included) or an RFC 3339 time (not
    /// included).
    pub to: Option<String>,
    /// `json` (the default) or `csv`: one line per tenant, as
    /// `analyzer usage report --format csv` writes it, as a download.
    pub format: Option<String>,
}

/// Usage per tenant over a period, for cost allocation. This task's
/// pending counts are flushed first; other tasks' arrive within their
/// flush interval (2 s).
#[utoipa::path(get, path = "/v1/admin/usage", operation_id = "admin_usage_report", tag = "admin", security(("bearer" = [])),
    params(ReportQuery),
    responses(
        (status = 200, description = "The report", content(
            (Report = "application/json"),
            (String = "text/csv"))),
        (status = 400, description = "Missing or malformed period, or an unknown format"),
        (status = 403, description = "Not an admin token")))]
pub(super) async fn usage_report(
    State(state): State<AppState>,
    _: Admin,
    query: Result<Query<ReportQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ServiceError::Invalid(e.body_text()))?;
    let csv = match query.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => {
            return Err(ServiceError::Invalid(format!(
                "format: expected json or csv, got {other:?}"
            ))
            .into());
        }
    };
    let (Some(from), Some(to)) = (query.from, query.to) else {
        return Err(ServiceError::Invalid("give the period as ?from=…&to=…".into()).into());
    };
    let period = Period::parse(&from, &to).map_err(ServiceError::Invalid)?;
    state.usage.flush(&state.db).await;
    let rows = state
        .db
        .usage_report(period.from, period.to)
        .await
        .map_err(ServiceError::from)?;
    let report = Report::from_rows(period, rows);
    if !csv {
        return Ok(Json(report).into_response());
    }
    let name = format!(
        "attachment; filename=\"usage-{}-{}.csv\"",
        report.from.get(..10).unwrap_or("from"),
        report.to.get(..10).unwrap_or("to")
    );
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, name),
        ],
        report.to_csv(),
    )
        .into_response())
}

/// `POST /v1/admin/tenants` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// Display name.
    pub name: String,
    /// `standard` or `premium`.
    pub tier: String,
}

/// `PATCH /v1/admin/tenants/{id}` body; at least one field.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTenant {
    /// New tier.
    pub tier: Option<String>,
    /// New status: `active` or `suspended`.
    pub status: Option<String>,
}

/// `POST /v1/admin/tenants/{id}/tokens` body.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MintRequest {
    /// Lifetime in seconds (60 to 31536000, default 3600).
    pub ttl_seconds: Option<i64>,
}

/// A minted token.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    /// The signed JWT.
    pub token: String,
    /// Its lifetime in seconds.
    pub expires_in: u64,
}

/// Longest token lifetime the API mints.
pub const MAX_TTL_SECONDS: i64 = 365 * 24 * 3600;

pub(super) fn tenant_id(raw: &str) -> Result<TenantId, ApiError> {
    raw.parse()
        .map_err(|_| ServiceError::NotFound("tenant not found".into()).into())
}

/// Create a tenant.
#[utoipa::path(post, path = "/v1/admin/tenants", operation_id = "admin_tenants_create", tag = "admin", security(("bearer" = [])),
    request_body = CreateTenant,
    responses(
        (status = 201, description = "Created", body = Tenant),
        (status = 400, description = "Bad name or tier"),
        (status = 403, description = "Not an admin token")))]
pub(super) async fn create(
    State(state): State<AppState>,
    _: Admin,
    ApiJson(body): ApiJson<CreateTenant>,
) -> Result<(StatusCode, [(HeaderName, String); 1], Json<Tenant>), ApiError> {
    let mut found = Violations::default();
    let name = found.check("name", TenantName::try_from(body.name).map_err(|e| e.0));
    let tier = found.check("tier", body.tier.parse::<Tier>().map_err(|e| e.0));
    found.finish()?;
    let (Some(name), Some(tier)) = (name, tier) else {
        return Err(ServiceError::Invalid("invalid tenant".into()).into());
    };
    let tenant = tenants::create(&state.db, name, tier).await?;
    tracing::info!(tenant_id = %tenant.id, tier = tier.as_str(), "tenant created");
    let location = format!("/v1/admin/tenants/{}", tenant.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(tenant),
    ))
}

/// List tenants.
#[utoipa::path(get, path = "/v1/admin/tenants", operation_id = "admin_tenants_list", tag = "admin", security(("bearer" = [])),
    responses((status = 200, description = "All tenants", body = [Tenant])))]
pub(super) async fn list(
    State(state): State<AppState>,
    _: Admin,
) -> Result<Json<Vec<Tenant>>, ApiError> {
    Ok(Json(tenants::list(&state.db).await?))
}

/// Read a tenant.
#[utoipa::path(get, path = "/v1/admin/tenants/{id}", operation_id = "admin_tenants_get", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path, description = "Tenant id")),
    responses(
        (status = 200, description = "The tenant", body = Tenant),
        (status = 404, description = "No such tenant")))]
pub(super) async fn read(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
) -> Result<Json<Tenant>, ApiError> {
    Ok(Json(tenants::get(&state.db, &tenant_id(&id)?).await?))
}

/// Change a tenant's tier or status. Takes effect at once in this process
/// and within the tenant cache TTL everywhere else.
#[utoipa::path(patch, path = "/v1/admin/tenants/{id}", operation_id = "admin_tenants_update", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path, description = "Tenant id")),
    request_body = UpdateTenant,
    responses(
        (status = 200, description = "Updated", body = Tenant),
        (status = 400, description = "Bad tier or status"),
        (status = 404, description = "No such tenant")))]
pub(super) async fn update(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateTenant>,
) -> Result<(Extension<AuditNote>, Json<Tenant>), ApiError> {
    let id = tenant_id(&id)?;
    let mut found = Violations::default();
    let (given_tier, given_status) = (body.tier.is_some(), body.status.is_some());
    let tier: Option<Tier> = body
        .tier
        .and_then(|t| found.check("tier", t.parse::<Tier>().map_err(|e| e.0)));
    let status: Option<TenantStatus> = body
        .status
        .and_then(|s| found.check("status", s.parse::<TenantStatus>().map_err(|e| e.0)));
    if !given_tier && !given_status {
        found.add("tier", "give `tier`, `status` or both");
    }
    found.finish()?;
    let tenant = tenants::update(&state.db, &id, tier, status).await?;
    state.tenant_changed(&id).await;
    tracing::info!(tenant_id = %id, tier = tenant.tier.as_str(), status = tenant.status.as_str(), "tenant updated");
    let changed: Vec<String> = [
        tier.map(|t| format!("tier: {}", t.as_str())),
        status.map(|s| format!("status: {}", s.as_str())),
    ]
    .into_iter()
    .flatten()
    .collect();
    let note = AuditNote {
        action: match status {
            Some(TenantStatus::Suspended) => Some("tenant.suspend"),
            Some(TenantStatus::Active) if tier.is_none() => Some("tenant.reactivate"),
            _ => None,
        },
        detail: Some(changed.join(", ")),
    };
    Ok((Extension(note), Json(tenant)))
}

/// Mint a token for a tenant.
#[utoipa::path(post, path = "/v1/admin/tenants/{id}/tokens", operation_id = "admin_tokens_mint", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path, description = "Tenant id")),
    request_body = MintRequest,
    responses(
        (status = 200, description = "A signed token", body = TokenResponse),
        (status = 400, description = "TTL out of range"),
        (status = 404, description = "No such tenant"),
        (status = 409, description = "No signing key is configured: this deployment only verifies tokens issued elsewhere (`signing_disabled`)")))]
pub(super) async fn mint(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<MintRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    let id = tenant_id(&id)?;
    let ttl = body.ttl_seconds.unwrap_or(3600);
    if !(60..=MAX_TTL_SECONDS).contains(&ttl) {
        return Err(ServiceError::Invalid(format!(
            "`ttl_seconds` must be between 60 and {MAX_TTL_SECONDS}"
        ))
        .into());
    }
    let tenant = tenants::get_live(&state.db, &id).await?;
    let ttl = Duration::from_secs(ttl.unsigned_abs());
    let token = state.auth.mint_for(&tenant, ttl).ok_or(ApiError::BadRequest {
        status: StatusCode::CONFLICT,
        code: "signing_disabled",
        detail: "no signing secret is configured (JWT_SECRET); this deployment only verifies tokens issued elsewhere".into(),
    })?;
    Ok(Json(TokenResponse {
        token,
        expires_in: ttl.as_secs(),
    }))
}

/// `POST /v1/admin/tenants/{id}/tokens/revoke` response.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokensRevoked {
    /// Tokens of the tenant issued before this time (RFC 3339) are refused.
    pub tokens_valid_after: String,
}

/// Sign a tenant out everywhere: every token of the tenant issued until
/// now is refused, at once by this task and by every task within
/// `ANALYZER_TENANT_CACHE_MS`; tokens minted from now on work. API keys
/// are revoked one by one instead.
#[utoipa::path(post, path = "/v1/admin/tenants/{id}/tokens/revoke", operation_id = "admin_tokens_revoke", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path, description = "Tenant id")),
    responses(
        (status = 200, description = "Signed out", body = TokensRevoked),
        (status = 404, description = "No such tenant")))]
pub(super) async fn revoke_tokens(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
) -> Result<Json<TokensRevoked>, ApiError> {
    let id = tenant_id(&id)?;
    // Whole seconds, as `iat` is: a token issued in this second is
    // refused too, and one minted after is issued in the next.
    let after = jsonwebtoken::get_current_timestamp() + 1;
    if !state.db.revoke_tokens(&id, after).await? {
        return Err(ServiceError::NotFound("tenant not found".into()).into());
    }
    state.tenant_changed(&id).await;
    tracing::info!(tenant_id = %id, "tenant signed out everywhere");
    Ok(Json(TokensRevoked {
        tokens_valid_after: analyzer_store::rfc3339(
            i64::try_from(after).unwrap_or(i64::MAX) * 1000,
        ),
    }))
}

/// Offboard a tenant: its documents, vectors, collections, cached results
/// and API keys are removed, and its tokens and keys refused at once by
/// every task (announced to the others on PostgreSQL); its record
/// (status `deleted`) and usage ledger are kept for billing. Safe to
/// repeat; a crash midway is finished by the next start or the next call.
#[utoipa::path(delete, path = "/v1/admin/tenants/{id}", operation_id = "admin_tenants_delete", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path, description = "Tenant id")),
    responses(
        (status = 204, description = "Deleted (or deleted already)"),
        (status = 404, description = "No such tenant")))]
pub(super) async fn offboard(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = tenant_id(&id)?;
    let documents = crate::documents::offboard(&state.db, state.vectors.as_ref(), &id).await?;
    state.tenant_changed(&id).await;
    // Everything the tenant had cached (its keys all start with its id).
    if let Err(e) = state.cache.forget(&id, "").await {
        tracing::warn!(error = %e, tenant_id = %id, "could not remove a deleted tenant's cached results; they expire unreachable");
    }
    tracing::info!(tenant_id = %id, documents, "tenant deleted");
    Ok(StatusCode::NO_CONTENT)
}
