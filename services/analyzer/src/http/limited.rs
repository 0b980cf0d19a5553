//! Enforcing the tenant's request limits around a request: a 429 problem
//! naming the limit when over it, the `RateLimit-*` headers on every
//! answer, and the in-flight slot held until the answer is complete (a
//! streamed analysis counts for as long as it streams).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Frame, SizeHint};

use super::AppState;
use super::error::{Problem, set_retry_after, whole_seconds};
use crate::limits::{LimitKind, Permit, RateState, Refusal};
use crate::usage::{self, UsageRecorder};
use analyzer_domain::tenants::{Tenant, TenantId, Tier};
use analyzer_runtime::lanes::{self, Seat, seated};
use analyzer_store::gate::with_db_gate;

/// Run `req` under the tenant's limits. Admission runs here, on the
/// server's runtime; the handler runs on its tier's (see
/// [`lanes::handle`]).
pub(super) async fn enforce(
    state: &AppState,
    tenant: &Tenant,
    mut req: Request,
    next: Next,
) -> Response {
    match state.limiter.admit(&tenant.id, tenant.tier).await {
        Ok((permit, rate)) => {
            let meter = ComputeMeter {
                usage: state.usage.clone(),
                tenant: tenant.id.clone(),
                began: Instant::now(),
            };
            req.extensions_mut().insert(rate);
            let gate = state.limiter.db_gate(&tenant.id, tenant.tier);
            let tier = tenant.tier;
            let route = req
                .extensions()
                .get::<MatchedPath>()
                .map_or("unmatched", MatchedPath::as_str);
            let seat = Seat {
                tenant: tenant.id.clone(),
                tier,
                route: analyzer_telemetry::metrics::route_label(route),
                trace: req
                    .extensions()
                    .get::<Arc<analyzer_telemetry::propagation::Passthrough>>()
                    .cloned(),
            };
            let handled = lanes::handle(tier, seated(seat, with_db_gate(gate, next.run(req))));
            let response = match handled.await {
                Ok(response) => response,
                Err(_) => Problem::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the request's handler failed",
                )
                .into_response_with_id(""),
            };
            let (mut parts, body) = response.into_parts();
            rate_headers(&mut parts.headers, &rate);
            // A whole answer (every JSON one) frees its slot before it goes
            // out; a stream holds it until its last event.
            let permit = if http_body::Body::size_hint(&body).exact().is_some() {
                permit.release();
                None
            } else {
                Some(permit)
            };
            Response::from_parts(
                parts,
                Body::new(Held {
                    inner: body,
                    _permit: permit,
                    _meter: meter,
                }),
            )
        }
        Err(refusal) => refused(tenant.tier, &refusal),
    }
}

fn rate_headers(headers: &mut HeaderMap, rate: &RateState) {
    for (name, value) in [
        ("ratelimit-limit", u64::from(rate.limit)),
        ("ratelimit-remaining", u64::from(rate.remaining)),
        ("ratelimit-reset", whole_seconds(rate.reset)),
    ] {
        headers.insert(name, HeaderValue::from(value));
    }
}

fn refused(tier: Tier, refusal: &Refusal) -> Response {
    let retry = whole_seconds(refusal.retry_after).max(1);
    let (limit, what) = match refusal.kind {
        LimitKind::Rate => (refusal.state.limit, "requests per minute"),
        LimitKind::Concurrency => (refusal.state.concurrency_limit, "concurrent requests"),
    };
    let detail = format!(
        "over the {} tier's limit of {limit} {what} ({}); retry after {retry} s",
        tier.as_str(),
        refusal.kind.as_str()
    );
    let code = match refusal.kind {
        LimitKind::Rate => "rate_limited",
        LimitKind::Concurrency => "concurrency_limited",
    };
    let mut response = Problem::new(StatusCode::TOO_MANY_REQUESTS, detail)
        .code(code)
        .into_response_with_id("");
    let headers = response.headers_mut();
    rate_headers(headers, &refusal.state);
    set_retry_after(headers, refusal.retry_after);
    response
}

/// A response body that holds the request's compute meter, and a
/// streamed answer's in-flight slot, until it is finished or dropped.
struct Held {
    inner: Body,
    _permit: Option<Permit>,
    _meter: ComputeMeter,
}

/// Counts the time from admission to the end of the answer (a stream's
/// last event included) as the tenant's compute time, in the usage ledger.
struct ComputeMeter {
    usage: UsageRecorder,
    tenant: TenantId,
    began: Instant,
}

impl Drop for ComputeMeter {
    fn drop(&mut self) {
        let micros = i64::try_from(self.began.elapsed().as_micros()).unwrap_or(i64::MAX);
        self.usage
            .add(&self.tenant, usage::metrics::COMPUTE_MICROS, micros);
    }
}

impl http_body::Body for Held {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
