//! `/v1/search`: similarity search over a tenant's collection.

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiJson, CurrentTenant};
use crate::search::{Hit, Retrieval, SearchRequest, SearchResponse};
use crate::usage::metrics;

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/v1/search", post(search))
}

/// Search the tenant's documents.
#[utoipa::path(post, path = "/v1/search", operation_id = "search", tag = "search", security(("bearer" = [])),
    request_body = SearchRequest,
    responses(
        (status = 200, description = "Hits, best first", body = SearchResponse),
        (status = 404, description = "Unknown collection")))]
pub(super) async fn search(
    State(state): State<AppState>,
    CurrentTenant(tenant): CurrentTenant,
    ApiJson(body): ApiJson<SearchRequest>,
) -> Result<Json<SearchResponse>, ApiError> {
    let retrieval = Retrieval::parse(
        "query",
        body.query,
        body.top_k,
        body.collection,
        body.filter,
        state.config.limits.max_top_k,
    )?;
    let retrieved = state
        .retriever(tenant.tier)
        .retrieve(&tenant.id, &retrieval)
        .await?;
    state.usage.add(&tenant.id, metrics::SEARCHES, 1);
    Ok(Json(SearchResponse {
        hits: retrieved.hits.into_iter().map(Hit::from).collect(),
        cached: retrieved.cached,
    }))
}
