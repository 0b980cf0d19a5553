//! `/v1/me`: who the caller's credential speaks for, and its tier's limits.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::error::ApiError;
use super::extract::CurrentTenant;
use crate::limits::TierLimits;
use analyzer_domain::tenants::{TenantStatus, Tier};

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/v1/me", get(me))
}

/// The tenant a credential speaks for.
#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    /// The tenant's id.
    pub tenant_id: String,
    /// Its display name.
    pub name: String,
    /// Its tier.
    pub tier: Tier,
    /// `active` (a suspended tenant's credentials are refused with 403).
    pub status: TenantStatus,
    /// The tier's limits.
    pub limits: TierLimits,
}

/// The calling tenant: id, name, tier, status and the tier's limits.
#[utoipa::path(get, path = "/v1/me", tag = "usage", operation_id = "me_get",
    security(("bearer" = [])),
    responses((status = 200, description = "The calling tenant", body = Me)))]
pub(super) async fn me(
    State(state): State<AppState>,
    CurrentTenant(tenant): CurrentTenant,
) -> Result<Json<Me>, ApiError> {
    Ok(Json(Me {
        tenant_id: tenant.id.to_string(),
        name: tenant.name,
        limits: state.config.tier_limits(tenant.tier),
        tier: tenant.tier,
        status: tenant.status,
    }))
}
