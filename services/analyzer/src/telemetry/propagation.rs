//! W3C trace context in and out: a request's `traceparent` (and
//! `tracestate`) becomes the parent of its `request` span; calls to OpenAI
//! (HTTP headers) and Qdrant (gRPC metadata) carry the current span's.

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator as _};
use opentelemetry::trace::{TraceContextExt as _, TraceId};
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

/// Add the current span's `traceparent` (and `tracestate`) to outgoing
/// HTTP headers.
pub fn inject(headers: &mut HeaderMap) {
    let context = Span::current().context();
    if context.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(&context, &mut HeaderInjector(headers));
    }
}

/// The current span's trace context as header pairs (for gRPC metadata);
/// empty outside a trace.
pub fn current_headers() -> Vec<(String, String)> {
    let context = Span::current().context();
    let mut pairs = Pairs(Vec::new());
    if context.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(&context, &mut pairs);
    }
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
}
