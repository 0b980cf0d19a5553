//! `/v1/analyze`: retrieval plus an answer with citations, whole or as
//! server-sent events.

use std::convert::Infallible;

use axum::extract::State;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use futures::stream;

use super::AppState;
use super::error::{ApiError, Problem};
use super::extract::{ApiJson, CurrentTenant};
use crate::analyze::{Analysis, AnalyzeRequest, answer_deltas};
use crate::search::Retrieval;
use crate::usage::metrics;

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/v1/analyze", post(analyze))
}

/// Answer a question from the tenant's documents. With `stream: true` the
/// answer is `text/event-stream`: a `citations` event, `delta` events whose
/// `text` concatenates to the answer, then `done` with `model` and `usage`.
#[utoipa::path(post, path = "/v1/analyze", tag = "analyze", security(("bearer" = [])),
    request_body = AnalyzeRequest,
    responses(
        (status = 200, description = "The answer (or an event stream with `stream: true`)", body = Analysis),
        (status = 400, description = "Malformed question", body = Problem),
        (status = 404, description = "Unknown collection", body = Problem)))]
pub(super) async fn analyze(
    State(state): State<AppState>,
    CurrentTenant(tenant): CurrentTenant,
    ApiJson(body): ApiJson<AnalyzeRequest>,
) -> Result<Response, ApiError> {
    let retrieval = Retrieval::parse(
        "question",
        body.question,
        body.top_k,
        body.collection,
        None,
        state.config.limits.max_top_k,
    )?;
    let retrieved = state.retriever().retrieve(&tenant.id, &retrieval).await?;
    let analysis = state
        .analyst
        .analyze(&retrieval.query, &retrieved.hits)
        .await?;
    state.usage.add(&tenant.id, metrics::ANALYSES, 1);
    if !body.stream {
        return Ok(Json(analysis).into_response());
    }
    Ok(Sse::new(stream::iter(events(analysis))).into_response())
}

fn events(analysis: Analysis) -> Vec<Result<Event, Infallible>> {
    let json = |v: serde_json::Value| Event::default().data(v.to_string());
    let mut out = vec![Ok(json(
        serde_json::json!({ "citations": analysis.citations }),
    )
    .event("citations"))];
    for delta in answer_deltas(&analysis.answer) {
        out.push(Ok(json(serde_json::json!({ "text": delta })).event("delta")));
    }
    out.push(Ok(json(
        serde_json::json!({ "model": analysis.model, "usage": analysis.usage }),
    )
    .event("done")));
    out
}
