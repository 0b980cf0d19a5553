//! `/v1/usage`: the calling tenant's tier, limits and usage so far.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::error::ApiError;
use super::extract::CurrentTenant;
use crate::config::TierLimits;
use crate::tenants::Tier;

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/v1/usage", get(usage))
}

/// What a tenant has stored and used.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageView {
    /// The tenant.
    pub tenant_id: String,
    /// Its tier.
    pub tier: Tier,
    /// The tier's limits.
    pub limits: TierLimits,
    /// Documents stored now.
    pub documents: i64,
    /// Chunks stored now.
    pub chunks: i64,
    /// Bytes of document text stored now.
    pub text_bytes: i64,
    /// Bytes of vectors and payload stored now.
    pub vector_bytes: i64,
    /// Counters since the tenant was created: `api_calls`, `searches`,
    /// `analyses`, `documents_ingested`, `chunks_ingested`.
    pub counters: BTreeMap<String, i64>,
}

/// The tenant's tier, limits and usage.
#[utoipa::path(get, path = "/v1/usage", tag = "usage", security(("bearer" = [])),
    responses((status = 200, description = "Usage", body = UsageView)))]
pub(super) async fn usage(
    State(state): State<AppState>,
    CurrentTenant(tenant): CurrentTenant,
) -> Result<Json<UsageView>, ApiError> {
    let totals = state.db.storage_totals(&tenant.id).await?;
    let counters: BTreeMap<String, i64> = state
        .usage
        .totals(&state.db, &tenant.id)
        .await?
        .into_iter()
        .collect();
    Ok(Json(UsageView {
        tenant_id: tenant.id.to_string(),
        tier: tenant.tier,
        limits: state.config.tier_limits(tenant.tier),
        documents: totals.documents,
        chunks: totals.chunks,
        text_bytes: totals.text_bytes,
        vector_bytes: totals.vector_bytes,
        counters,
    }))
}
