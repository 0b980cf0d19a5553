//! `/v1/analyze`: retrieval plus an answer with citations, whole or as
//! server-sent events.

use std::convert::Infallible;
use std::time::Instant;

use axum::extract::State;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use futures::{StreamExt as _, stream};
use opentelemetry::KeyValue;
use tracing::Instrument as _;

use super::AppState;
use super::error::{ApiError, Problem};
use super::extract::{ApiJson, CurrentTenant};
use crate::search::Retrieval;
use crate::usage::metrics;
use analyzer_domain::analyze::{Analysis, AnswerEvent, AnswerStream, Citation, Usage};
use analyzer_domain::tenants::TenantId;

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/v1/analyze", post(analyze))
}

/// `POST /v1/analyze` body.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnalyzeRequest {
    /// The question.
    pub question: String,
    /// Chunks to retrieve as context (default 5).
    pub top_k: Option<i64>,
    /// Collection; `default` if omitted.
    pub collection: Option<String>,
    /// Answer as `text/event-stream`.
    #[serde(default)]
    pub stream: bool,
}

/// The `data` of the stream's first event, `citations`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct CitationsEvent {
    /// The sources the answer draws on, best first.
    pub citations: Vec<Citation>,
}

/// The `data` of a `delta` event.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct DeltaEvent {
    /// The answer's next piece: the deltas concatenate to the answer.
    pub text: String,
}

/// The `data` of the stream's last event, `done`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct DoneEvent {
    /// The model that answered.
    pub model: String,
    /// Its token accounting.
    pub usage: Usage,
}

/// Answer a question from the tenant's documents. With `stream: true` the
/// answer is `text/event-stream`: a `citations` event, `delta` events whose
/// `text` concatenates to the answer, then `done` with `model` and `usage`.
#[utoipa::path(post, path = "/v1/analyze", operation_id = "analyze", tag = "analyze", security(("bearer" = [])),
    request_body = AnalyzeRequest,
    responses(
        (status = 200, description = "The answer (or an event stream with `stream: true`)", body = Analysis),
        (status = 404, description = "Unknown collection")))]
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
    let began = Instant::now();
    let span =
        analyzer_telemetry::op_span!("llm", model = state.analyst.model(), stream = body.stream);
    if !body.stream {
        let analysis = state
            .analyst
            .analyze(&retrieval.query, &retrieved.hits)
            .instrument(span)
            .await;
        llm_timing(&state, began, analysis.is_ok());
        let analysis = analysis?;
        record_llm_usage(&state, &tenant.id, &analysis.usage);
        return Ok(Json(analysis).into_response());
    }
    let started = state
        .analyst
        .analyze_stream(&retrieval.query, &retrieved.hits)
        .instrument(span)
        .await;
    if started.is_err() {
        llm_timing(&state, began, false);
    }
    let AnswerStream {
        citations,
        model,
        events,
    } = started?;
    let head = stream::once(async move {
        Ok::<_, Infallible>(json_event("citations", &CitationsEvent { citations }))
    });
    let tenant_id = tenant.id.clone();
    let body = events.map(move |event| {
        Ok::<_, Infallible>(match event {
            Ok(AnswerEvent::Delta(text)) => json_event("delta", &DeltaEvent { text }),
            Ok(AnswerEvent::Done(usage)) => {
                llm_timing(&state, began, true);
                record_llm_usage(&state, &tenant_id, &usage);
                json_event(
                    "done",
                    &DoneEvent {
                        model: model.clone(),
                        usage,
                    },
                )
            }
            Err(e) => {
                llm_timing(&state, began, false);
                // The status line is gone by now: the failure is an event,
                // with the same problem the non-streaming call would get.
                let response = ApiError::from(e).into_response();
                let problem = response.extensions().get::<Problem>().cloned();
                json_event("error", &problem)
            }
        })
    });
    Ok(Sse::new(head.chain(body)).into_response())
}

fn json_event(name: &str, data: &impl serde::Serialize) -> Event {
    Event::default()
        .event(name)
        .data(serde_json::to_string(data).unwrap_or_default())
}

/// The answer's duration (a stream's: to its last event), by model: in
/// the metrics and in one log line.
fn llm_timing(state: &AppState, began: Instant, ok: bool) {
    let elapsed = began.elapsed();
    let outcome = if ok { "ok" } else { "error" };
    let model = state.analyst.model();
    analyzer_telemetry::metrics::metrics().llm_duration.record(
        elapsed.as_secs_f64(),
        &[
            KeyValue::new("model", model.to_owned()),
            KeyValue::new("operation", "chat"),
            KeyValue::new("outcome", outcome),
        ],
    );
    tracing::info!(
        model,
        outcome,
        duration_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        "{}",
        analyzer_telemetry::messages::LLM_ANSWER
    );
}

fn record_llm_usage(state: &AppState, tenant: &TenantId, usage: &Usage) {
    state.usage.add_llm(
        tenant,
        state.analyst.model(),
        usage.prompt_tokens,
        usage.completion_tokens,
        state.analyst.cost_micro_usd(usage),
    );
}
