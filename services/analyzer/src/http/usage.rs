//! `/v1/usage`: the calling tenant's tier, limits and usage so far.

use std::collections::BTreeMap;

use axum::Extension;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiQuery, CurrentTenant};
use crate::error::ServiceError;
use crate::limits::RateState;
use crate::limits::TierLimits;
use crate::usage::{Period, current_hour, hour_rfc3339, parse_bound};
use analyzer_domain::tenants::Tier;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/usage", get(usage))
        .route("/v1/usage/history", get(history))
}

/// The longest period `/v1/usage/history` answers for: 31 days of hours.
const HISTORY_MAX_HOURS: i64 = 31 * 24;

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

/// `GET /v1/usage/history` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// Start: a date (`2026-11-01`) or an RFC 3339 time (truncated to the
    /// hour), included. Default: 23 hours before the current hour.
    pub from: Option<String>,
    /// End: a date (its whole day included) or an RFC 3339 time (not
    /// included). Default: the end of the current hour.
    pub to: Option<String>,
}

/// The calling tenant's counters hour by hour.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageHistory {
    /// Start of the period (included), RFC 3339, on the hour.
    pub from: String,
    /// End of the period (not included), RFC 3339, on the hour.
    pub to: String,
    /// Each hour of the period with usage, oldest first (hours without
    /// usage are left out).
    pub hours: Vec<HourUsage>,
}

/// One hour of a tenant's usage ledger.
#[derive(Debug, Serialize, ToSchema)]
pub struct HourUsage {
    /// The hour's start, RFC 3339.
    pub hour: String,
    /// The counters counted in that hour (only those above zero), as in
    /// the admin usage report: `api_calls`, `searches`, `analyses`,
    /// `documents_ingested`, `chunks_ingested`, `embedding_tokens`, …
    pub counters: BTreeMap<String, i64>,
}

/// The calling tenant's usage ledger hour by hour over a period of at
/// most 31 days (default: the last 24 hours, this one included). This
/// task's pending counts are flushed first; other tasks' arrive within
/// their flush interval (2 s).
#[utoipa::path(get, path = "/v1/usage/history", operation_id = "usage_history", tag = "usage",
    security(("bearer" = [])),
    params(HistoryQuery),
    responses(
        (status = 200, description = "The tenant's counters by hour", body = UsageHistory),
        (status = 400, description = "A malformed period, or one longer than 31 days")))]
pub(super) async fn history(
    State(state): State<AppState>,
    CurrentTenant(tenant): CurrentTenant,
    ApiQuery(query): ApiQuery<HistoryQuery>,
) -> Result<Json<UsageHistory>, ApiError> {
    let period = history_period(query.from.as_deref(), query.to.as_deref())?;
    state.usage.flush(&state.db).await;
    let rows = state
        .db
        .usage_history(&tenant.id, period.from, period.to)
        .await
        .map_err(ServiceError::from)?;
    let mut hours: Vec<HourUsage> = Vec::new();
    for (hour, metric, value) in rows {
        let at = hour_rfc3339(hour);
        if hours.last().is_none_or(|h| h.hour != at) {
            hours.push(HourUsage {
                hour: at,
                counters: BTreeMap::new(),
            });
        }
        if let Some(last) = hours.last_mut() {
            last.counters.insert(metric, value);
        }
    }
    let (from, to) = period.bounds();
    Ok(Json(UsageHistory { from, to, hours }))
}

/// The period a history query asks for, its defaults filled in.
fn history_period(from: Option<&str>, to: Option<&str>) -> Result<Period, ServiceError> {
    let period = with_defaults(from, to).map_err(ServiceError::Invalid)?;
    if period.hours() > HISTORY_MAX_HOURS {
        return Err(ServiceError::Invalid(format!(
            "to: the period is {} hours long; at most {HISTORY_MAX_HOURS} (31 days)",
            period.hours()
        )));
    }
    Ok(period)
}

fn with_defaults(from: Option<&str>, to: Option<&str>) -> Result<Period, String> {
    let to = match to {
        Some(to) => parse_bound("to", to, true)?,
        None => current_hour() + 1,
    };
    let from = match from {
        Some(from) => parse_bound("from", from, false)?,
        None => to - 24,
    };
    Period::new(from, to)
}
