//! `/v1/analyze`: retrieval plus an answer with citations, whole or as
//! server-sent events.

use std::convert::Infallible;

use axum::extract::State;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use futures::{StreamExt as _, stream};
use serde_json::json;

use super::AppState;
use super::error::{ApiError, Problem};
use super::extract::{ApiJson, CurrentTenant};
use crate::analyze::{Analysis, AnalyzeRequest, AnswerEvent, AnswerStream, Usage};
use crate::search::Retrieval;
use crate::tenants::TenantId;
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
    let retrieved = state
        .retriever(tenant.tier)
        .retrieve(&tenant.id, &retrieval)
        .await?;
    state.usage.add(&tenant.id, metrics::ANALYSES, 1);
    if !body.stream {
        let analysis = state
            .analyst
            .analyze(&retrieval.query, &retrieved.hits)
            .await?;
        record_llm_usage(&state, &tenant.id, &analysis.usage);
        return Ok(Json(analysis).into_response());
    }
    let AnswerStream {
        citations,
        model,
        events,
    } = state
        .analyst
        .analyze_stream(&retrieval.query, &retrieved.hits)
        .await?;
    let head = stream::once(async move {
        Ok::<_, Infallible>(json_event("citations", &json!({ "citations": citations })))
    });
    let tenant_id = tenant.id.clone();
    let body = events.map(move |event| {
        Ok::<_, Infallible>(match event {
            Ok(AnswerEvent::Delta(text)) => json_event("delta", &json!({ "text": text })),
            Ok(AnswerEvent::Done(usage)) => {
                record_llm_usage(&state, &tenant_id, &usage);
                json_event("done", &json!({ "model": model, "usage": usage }))
            }
            Err(e) => {
                // The status line is gone by now: the failure is an event,
                // with the same problem the non-streaming call would get.
                let response = ApiError::from(e).into_response();
                let problem = response.extensions().get::<Problem>().cloned();
                json_event("error", &json!(problem))
            }
        })
    });
    Ok(Sse::new(head.chain(body)).into_response())
}

fn json_event(name: &str, data: &serde_json::Value) -> Event {
    Event::default().event(name).data(data.to_string())
}

fn record_llm_usage(state: &AppState, tenant: &TenantId, usage: &Usage) {
    state.usage.add_llm(
        tenant,
        usage.prompt_tokens,
        usage.completion_tokens,
        state.analyst.cost_micro_usd(usage),
    );
}
