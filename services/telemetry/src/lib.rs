//! Telemetry: how the service explains itself.
//!
//! - Logs: JSON lines (CloudWatch Logs) or human text, filtered by
//!   `RUST_LOG` (only logs: exported spans have their own filter,
//!   `ANALYZER_TRACE_FILTER`); every line written inside a request carries
//!   its trace id, request id, route, tenant and tier ([`logs`]).
//! - Traces: `tracing` spans for the request, auth, cache, embedding,
//!   vector search, LLM and store writes. When the standard `OTEL_*`
//!   variables name an endpoint ([`export`]), tracing-opentelemetry turns
//!   them into OpenTelemetry spans, exported over OTLP: one trace per
//!   request, the caller's W3C `traceparent` continued and passed on to
//!   OpenAI and Qdrant. Otherwise nothing leaves the process and no
//!   OpenTelemetry span is built; the caller's context passes through
//!   ([`propagation::Passthrough`]).
//! - Metrics: OpenTelemetry instruments ([`metrics`]), exported over OTLP
//!   the same way and rendered as Prometheus text at `/metrics`.

pub mod export;
mod logs;
pub mod metrics;
pub mod propagation;
pub mod seat;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

pub use export::Exports;

/// Log messages that CloudWatch metric filters match (the alarms in
/// `infra/modules/monitoring`; a test checks the two agree).
pub mod messages {
    /// The vector store's circuit breaker opened (error, `open_for_s`).
    pub const BREAKER_OPENED: &str = "vector store circuit opened";
    /// The breaker closed again (info).
    pub const BREAKER_CLOSED: &str = "vector store circuit closed";
    /// The database's breaker opened: requests that need the database
    /// answer 503 at once (error, `open_for_s`).
    pub const DB_BREAKER_OPENED: &str = "database circuit opened";
    /// The database's breaker closed again (info).
    pub const DB_BREAKER_CLOSED: &str = "database circuit closed";
    /// An answer of `/v1/analyze` (info, `model`, `outcome`, `duration_ms`).
    pub const LLM_ANSWER: &str = "llm answer";
    /// An uploaded file was read by its child process (info, `file`,
    /// `outcome` (its format, or `refused`), `pages`, `duration_ms`,
    /// `peak_rss_kb`: the child's peak resident memory).
    pub const FILE_EXTRACTED: &str = "file extracted";
}

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    /// Standard output (the server).
    Stdout,
    /// Standard error (CLI commands, whose stdout is their result).
    Stderr,
}

/// Whether spans are recorded as OpenTelemetry spans (and exported).
static SPANS_EXPORTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether spans are exported: request spans then continue the caller's
/// trace as OpenTelemetry spans; otherwise its context passes through.
pub fn spans_exported() -> bool {
    SPANS_EXPORTED.load(std::sync::atomic::Ordering::Relaxed)
}

/// The longest each exporter may take to send its last batch at exit.
const EXPORT_SHUTDOWN: std::time::Duration = std::time::Duration::from_secs(2);

/// The installed providers, flushed and stopped by [`Telemetry::shutdown`].
#[derive(Debug)]
pub struct Telemetry {
    tracer: SdkTracerProvider,
    meter: Option<opentelemetry_sdk::metrics::SdkMeterProvider>,
}

impl Telemetry {
    /// Export what is still buffered and stop the exporters. Blocks (the
    /// exporters' HTTP client is a blocking one): call it off the runtime's
    /// workers.
    pub fn shutdown(self) {
        // Bounded: a collector that is gone must not hold the exit past
        // the orchestrator's stop timeout (the drain has used most of it).
        if let Err(e) = self.tracer.shutdown_with_timeout(EXPORT_SHUTDOWN) {
            tracing::warn!(error = %e, "trace export did not shut down cleanly");
        }
        if let Some(meter) = self.meter
            && let Err(e) = meter.shutdown_with_timeout(EXPORT_SHUTDOWN)
        {
            tracing::warn!(error = %e, "metric export did not shut down cleanly");
        }
    }
}

/// Install logging, tracing and metrics for the process. `exports` says
/// what leaves it over OTLP (see [`Exports::from_env`]); with no traces
/// exported, no OpenTelemetry span is built and requests pass their
/// callers' trace context through (`propagation::Passthrough`).
pub fn init(sink: Sink, exports: &Exports) -> anyhow::Result<Telemetry> {
    let (logged, request_fields) = (log_filter(), log_filter());
    let resource = exports.resource();
    let tracer = SdkTracerProvider::builder().with_resource(resource.clone());
    #[cfg(feature = "otlp")]
    let (tracer, meter) = {
        let tracer = match exports.span_exporter()? {
            // The sampler comes from OTEL_TRACES_SAMPLER (default:
            // parent-based, always on).
            Some(exporter) => tracer.with_batch_exporter(exporter),
            None => tracer.with_sampler(Sampler::AlwaysOff),
        };
        let meter = match exports.metric_exporter()? {
            Some(exporter) => Some(metrics::install_with_otlp(exporter, resource)),
            None => {
                metrics::install_local(resource);
                None
            }
        };
        (tracer.build(), meter)
    };
    #[cfg(not(feature = "otlp"))]
    let (tracer, meter) = {
        exports.require_none()?;
        metrics::install_local(resource);
        (tracer.with_sampler(Sampler::AlwaysOff).build(), None)
    };
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    // Spans become OpenTelemetry spans only when they are exported: the
    // layer costs allocations and locks on every span (measured: -35%
    // cached searches/s with it and nothing exported). Without it, trace
    // ids come from `propagation::Passthrough`.
    let otel = exports.traces.then(|| {
        tracing_opentelemetry::layer()
            .with_tracer(tracer.tracer("analyzer"))
            // Contexts are read from spans where they are needed
            // (`propagation`), not activated on every poll.
            .with_context_activation(false)
            .with_location(false)
            .with_threads(false)
    });
    SPANS_EXPORTED.store(exports.traces, std::sync::atomic::Ordering::Relaxed);
    let text = std::env::var("ANALYZER_LOG_FORMAT").is_ok_and(|v| v == "text");
    // Each layer has its own filter: what is logged follows `RUST_LOG`,
    // what is exported follows `ANALYZER_TRACE_FILTER`, so an operator who
    // cuts the logs to warnings keeps the traces, and one who turns on
    // debug logs does not flood the exporter.
    let registry = tracing_subscriber::registry()
        .with(otel.map(|otel| otel.with_filter(trace_filter())))
        .with(logs::RequestFieldsLayer.with_filter(request_fields));
    let writer = match sink {
        Sink::Stdout => BoxMakeWriter::new(std::io::stdout),
        Sink::Stderr => BoxMakeWriter::new(std::io::stderr),
    };
    let result = if text {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(writer)
                    .with_filter(logged),
            )
            .try_init()
    } else {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .event_format(logs::JsonLines)
                    .fmt_fields(logs::NoSpanFields)
                    .with_ansi(false)
                    .with_writer(writer)
                    .with_filter(logged),
            )
            .try_init()
    };
    // Already installed (tests): keep the first.
    let _ = result;
    Ok(Telemetry { tracer, meter })
}

/// Dependencies' chatter cut from both logs and traces by default:
/// qdrant-edge logs its WAL at info and, at every start, two warnings about
/// process-wide defaults (feature flags, an mmap probe) that Edge never
/// initializes; they are not actionable.
const QUIET: &str = "sqlx=warn,qdrant_edge=warn,qdrant_edge::common::flags=error,\
                     qdrant_edge::common::mmap=error";

/// What is logged: `RUST_LOG`, else info and above.
fn log_filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(format!("info,{QUIET}")))
}

/// Which spans are exported: `ANALYZER_TRACE_FILTER` (the syntax of
/// `RUST_LOG`), else info and above, whatever `RUST_LOG` says.
fn trace_filter() -> EnvFilter {
    EnvFilter::try_from_env("ANALYZER_TRACE_FILTER")
        .unwrap_or_else(|_| EnvFilter::new(format!("info,{QUIET}")))
}

/// Record the tenant id, tier and route of the request being served on
/// `span` (declared with those fields empty), as [`op_span!`] does at
/// creation.
pub fn record_seat(span: &tracing::Span) {
    crate::seat::with_seat(|seat| {
        if let Some(seat) = seat {
            span.record("tenant_id", seat.tenant.as_str());
            span.record("tier", seat.tier.as_str());
            span.record("route", seat.route.as_ref());
        }
    });
}

/// A span for one step of a tenant's request, carrying the tenant id,
/// tier and route of the request being served (empty outside one) and the
/// extra fields given: `op_span!("vector.search", top_k = 5)`.
#[macro_export]
macro_rules! op_span {
    ($name:literal $(, $($fields:tt)+)?) => {
        $crate::seat::with_seat(|seat| {
            ::tracing::info_span!(
                $name,
                tenant_id = seat.map(|s| s.tenant.as_str()),
                tier = seat.map(|s| s.tier.as_str()),
                route = seat.map(|s| s.route.as_ref()),
                $($($fields)+)?
            )
        })
    };
}
