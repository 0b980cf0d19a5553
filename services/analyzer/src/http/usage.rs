//! `/v1/usage`: the calling tenant's tier, limits and usage so far.

use std::collections::BTreeMap;

use axum::Extension;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::error::ApiError;
use super::extract::CurrentTenant;
use crate::limits::RateState;
use crate::limits::TierLimits;
use analyzer_domain::tenants::Tier;

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
    /// Each enforced limit with what is used and what remains, by name:
    /// `requests_per_minute`, `concurrent_requests` (this request
    /// included), `db_connections` (this task's, base plus burst),
    /// `query_cache_bytes` (absent while the cache is down),
    /// `vector_storage_bytes`.
    pub quotas: BTreeMap<&'static str, QuotaView>,
}

/// One limit's state.
#[derive(Debug, Serialize, ToSchema)]
pub struct QuotaView {
    /// The limit enforced (a task's share while Redis is unreachable).
    pub limit: u64,
    /// Used now.
    pub used: u64,
    /// Left now.
    pub remaining: u64,
}

impl QuotaView {
    fn new(limit: u64, used: u64) -> Self {
        Self {
            limit,
            used,
            remaining: limit.saturating_sub(used),
        }
    }
}

/// The tenant's tier, limits and usage.
#[utoipa::path(get, path = "/v1/usage", operation_id = "usage_get", tag = "usage", security(("bearer" = [])),
    responses((status = 200, description = "Usage", body = UsageView)))]
pub(super) async fn usage(
    State(state): State<AppState>,
    CurrentTenant(tenant): CurrentTenant,
    rate: Option<Extension<RateState>>,
) -> Result<Json<UsageView>, ApiError> {
    let totals = state.db.storage_totals(&tenant.id).await?;
    let counters: BTreeMap<String, i64> = state
        .usage
        .totals(&state.db, &tenant.id)
        .await?
        .into_iter()
        .collect();
    let limits = state.config.tier_limits(tenant.tier);
    let mut quotas = BTreeMap::new();
    if let Some(Extension(rate)) = rate {
        let limit = u64::from(rate.limit);
        quotas.insert(
            "requests_per_minute",
            QuotaView::new(limit, limit.saturating_sub(u64::from(rate.remaining))),
        );
        quotas.insert(
            "concurrent_requests",
            QuotaView::new(u64::from(rate.concurrency_limit), u64::from(rate.in_flight)),
        );
    }
    let gate = state.limiter.db_gate(&tenant.id, tenant.tier);
    quotas.insert(
        "db_connections",
        QuotaView::new(u64::from(gate.limit()), u64::from(gate.in_use())),
    );
    // The cache is an accelerator: when it cannot say, the quota is left out.
    if let Ok(used) = state.cache.used_bytes(&tenant.id).await {
        quotas.insert(
            "query_cache_bytes",
            QuotaView::new(limits.query_cache_bytes, used),
        );
    }
    quotas.insert(
        "vector_storage_bytes",
        QuotaView::new(
            limits.vector_storage_bytes,
            u64::try_from(totals.vector_bytes).unwrap_or(0),
        ),
    );
    Ok(Json(UsageView {
        tenant_id: tenant.id.to_string(),
        tier: tenant.tier,
        limits,
        documents: totals.documents,
        chunks: totals.chunks,
        text_bytes: totals.text_bytes,
        vector_bytes: totals.vector_bytes,
        counters,
        quotas,
    }))
}
