//! W3C trace context in and out.
//!
//! When spans are exported, a request's `traceparent` (and `tracestate`)
//! becomes the parent of its `request` span, and calls to OpenAI (HTTP
//! headers) and Qdrant (gRPC metadata) carry the current span's context.
//! When they are not, the service records no spans and passes the
//! caller's context on unchanged, as a hop that does not trace would
//! ([`Passthrough`]; a new trace id when the caller sent none), so the
//! logs and the calls downstream still share one trace id, at almost no
//! cost per request.

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator as _};
use opentelemetry::trace::{SpanId, TraceContextExt as _, TraceId};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

struct Pairs(Vec<(String, String)>);

impl Injector for Pairs {
    fn set(&mut self, key: &str, value: String) {
        self.0.push((key.to_owned(), value));
    }
}

/// A request's trace context when spans are not exported: the caller's,
/// to pass on as it came, or a new one.
#[derive(Debug, Clone)]
pub struct Passthrough {
    /// The trace id (the logs' `trace_id`).
    pub trace_id: TraceId,
    traceparent: String,
    tracestate: Option<String>,
}

impl Passthrough {
    /// The caller's valid `traceparent`, or a new trace (not sampled).
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
        let context = parent.span().span_context().clone();
        if context.is_valid() {
            let state = context.trace_state().header();
            return Self {
                trace_id: context.trace_id(),
                traceparent: format!(
                    "00-{}-{}-{:02x}",
                    context.trace_id(),
                    context.span_id(),
                    context.trace_flags().to_u8()
                ),
                tracestate: (!state.is_empty()).then_some(state),
            };
        }
        let trace_id = TraceId::from(rand::random::<u128>().max(1));
        let span_id = SpanId::from(rand::random::<u64>().max(1));
        Self {
            trace_id,
            traceparent: format!("00-{trace_id}-{span_id}-00"),
            tracestate: None,
        }
    }

    fn pairs(&self) -> impl Iterator<Item = (&'static str, &str)> {
        std::iter::once(("traceparent", self.traceparent.as_str())).chain(
            self.tracestate
                .as_deref()
                .map(|state| ("tracestate", state)),
        )
    }
}

/// Continue the caller's trace, if its headers carry a valid one, in
/// `span`; returns the trace id `span` has now (`None` when no tracing
/// layer records spans, as in some tests).
pub fn continue_trace(span: &Span, headers: &HeaderMap) -> Option<TraceId> {
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    if parent.span().span_context().is_valid() {
        // Fails only when the span is disabled; then there is no trace.
        let _ = span.set_parent(parent);
    }
    let id = span.context().span().span_context().trace_id();
    (id != TraceId::INVALID).then_some(id)
}

/// The trace context to send on: the current span's when spans are
/// recorded, else the request's [`Passthrough`].
fn outgoing(injector: &mut dyn Injector) {
    let context = Span::current().context();
    if context.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(&context, injector);
        return;
    }
    crate::seat::with_seat(|seat| {
        if let Some(trace) = seat.and_then(|s| s.trace.as_deref()) {
            for (key, value) in trace.pairs() {
                injector.set(key, value.to_owned());
            }
        }
    });
}

/// Add the trace context (`traceparent`, `tracestate`) to outgoing HTTP
/// headers.
pub fn inject(headers: &mut HeaderMap) {
    outgoing(&mut HeaderInjector(headers));
}

/// The trace context as header pairs (for gRPC metadata); empty outside a
/// traced request.
pub fn current_headers() -> Vec<(String, String)> {
    let mut pairs = Pairs(Vec::new());
    outgoing(&mut pairs);
    pairs.0
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    #[test]
    fn a_callers_trace_is_continued_and_passed_on() {
        let provider = SdkTracerProvider::builder()
            .with_sampler(Sampler::AlwaysOff)
            .build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, || {
            let mut incoming = HeaderMap::new();
            incoming.insert(
                "traceparent",
                HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            );
            let span = tracing::info_span!("request");
            let id = continue_trace(&span, &incoming).expect("a trace id");
            assert_eq!(id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
            let _entered = span.enter();
            let child = tracing::info_span!("llm");
            let _child = child.enter();
            let mut outgoing = HeaderMap::new();
            inject(&mut outgoing);
            let traceparent = outgoing
                .get("traceparent")
                .and_then(|v| v.to_str().ok())
                .expect("traceparent injected");
            assert!(
                traceparent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
                "{traceparent}"
            );
            assert!(!traceparent.contains("00f067aa0ba902b7"), "a new span id");
            let pairs = current_headers();
            assert_eq!(pairs[0].0, "traceparent");
            drop(_child);
            drop(_entered);

            // Garbage is ignored: a new trace begins.
            let mut bad = HeaderMap::new();
            bad.insert("traceparent", HeaderValue::from_static("00-zz-yy-01"));
            let fresh = tracing::info_span!("request");
            let id = continue_trace(&fresh, &bad).expect("a new trace id");
            assert_ne!(id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        });
    }

    #[test]
    fn without_recorded_spans_the_callers_context_passes_on_unchanged() {
        let mut incoming = HeaderMap::new();
        let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        incoming.insert("traceparent", HeaderValue::from_static(traceparent));
        incoming.insert("tracestate", HeaderValue::from_static("vendor=abc"));
        let trace = Passthrough::from_headers(&incoming);
        assert_eq!(
            trace.trace_id.to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        let pairs: Vec<_> = trace.pairs().collect();
        assert_eq!(
            pairs,
            [("traceparent", traceparent), ("tracestate", "vendor=abc")]
        );

        // No (or a broken) context: a new trace, not sampled.
        let mut bad = HeaderMap::new();
        bad.insert("traceparent", HeaderValue::from_static("00-zz-yy-01"));
        let fresh = Passthrough::from_headers(&bad);
        assert_ne!(fresh.trace_id, TraceId::INVALID);
        let (_, value) = fresh.pairs().next().expect("a traceparent");
        assert!(value.starts_with(&format!("00-{}-", fresh.trace_id)));
        assert!(value.ends_with("-00"));
        assert_ne!(
            Passthrough::from_headers(&HeaderMap::new()).trace_id,
            fresh.trace_id
        );
    }
}
