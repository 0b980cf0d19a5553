//! Metrics: OpenTelemetry instruments on one meter provider, read by two
//! readers: the OTLP exporter (when configured, see `export`) and the
//! Prometheus text rendered at `/metrics` ([`render`]).
//!
//! Label cardinality is bounded: routes are the matched route templates,
//! statuses, tiers, outcomes and kinds are small fixed sets. Tenant ids
//! label only the metrics meant per tenant: LLM tokens and cost
//! (`analyzer_llm_tokens`, `analyzer_llm_cost_usd`) and limit refusals
//! (`analyzer_limit_refusals`), one series per tenant (and model or kind).
//!
//! The names below are the OTLP names; Prometheus adds `_total` to
//! counters and `_bucket`/`_sum`/`_count` to histograms.

use std::fmt::Write as _;
use std::sync::{Arc, OnceLock, Weak};

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, Meter, MeterProvider as _, UpDownCounter};
#[cfg(feature = "otlp")]
use opentelemetry_otlp::MetricExporter;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::reader::MetricReader;
use opentelemetry_sdk::metrics::{
    InstrumentKind, ManualReader, MeterProviderBuilder, Pipeline, SdkMeterProvider, Temporality,
};

/// Latency buckets, in seconds: 0.5 ms to 10 s.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// LLM call buckets, in seconds: 50 ms to 60 s.
const LLM_BUCKETS: [f64; 11] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0];

/// The instruments recorded on the request path.
#[derive(Debug)]
pub struct Metrics {
    /// `analyzer_http_requests{method,route,status,tier}`: requests answered.
    pub requests: Counter<u64>,
    /// `analyzer_http_request_duration_seconds{method,route,status,tier}`:
    /// time to the response head (a stream's first event).
    pub request_duration: Histogram<f64>,
    /// `analyzer_http_requests_in_flight`: requests being served.
    pub in_flight: UpDownCounter<i64>,
    /// `analyzer_token_validations{outcome}`: bearer tokens checked.
    pub token_validations: Counter<u64>,
    /// `analyzer_limit_refusals{tenant_id,kind}`: requests refused by a
    /// tenant limit (per tenant); `kind` names the limit
    /// (`requests_per_minute`, `concurrent_requests`, `vector_storage_bytes`).
    pub refusals: Counter<u64>,
    /// `analyzer_vector_request_duration_seconds{backend,operation,outcome}`:
    /// vector store calls, searches included.
    pub vector_duration: Histogram<f64>,
    /// `analyzer_vector_errors{backend,operation,kind}`: failed vector calls.
    pub vector_errors: Counter<u64>,
    /// `analyzer_llm_tokens{tenant_id,model,kind}`: provider tokens (per
    /// tenant): `prompt`, `completion`, `embedding`.
    pub llm_tokens: Counter<u64>,
    /// `analyzer_llm_cost_usd{tenant_id,model}`: estimated provider cost
    /// (per tenant).
    pub llm_cost: Counter<f64>,
    /// `analyzer_llm_request_duration_seconds{model,operation,outcome}`:
    /// provider calls (`chat`, `embeddings`), retries included.
    pub llm_duration: Histogram<f64>,
}

impl Metrics {
    fn new(meter: &Meter) -> Self {
        Self {
            requests: meter
                .u64_counter("analyzer_http_requests")
                .with_description("HTTP requests answered, by route, method, status and tier.")
                .build(),
            request_duration: meter
                .f64_histogram("analyzer_http_request_duration_seconds")
                .with_description(
                    "Time from request to response head, by route, method, status and tier.",
                )
                .with_unit("s")
                .with_boundaries(LATENCY_BUCKETS.to_vec())
                .build(),
            in_flight: meter
                .i64_up_down_counter("analyzer_http_requests_in_flight")
                .with_description("HTTP requests being served.")
                .build(),
            token_validations: meter
                .u64_counter("analyzer_token_validations")
                .with_description("Bearer tokens checked, by outcome.")
                .build(),
            refusals: meter
                .u64_counter("analyzer_limit_refusals")
                .with_description("Requests refused by a tenant limit, by tenant and limit kind.")
                .build(),
            vector_duration: meter
                .f64_histogram("analyzer_vector_request_duration_seconds")
                .with_description("Vector store calls, by backend, operation and outcome.")
                .with_unit("s")
                .with_boundaries(LATENCY_BUCKETS.to_vec())
                .build(),
            vector_errors: meter
                .u64_counter("analyzer_vector_errors")
                .with_description("Failed vector store calls, by backend, operation and kind.")
                .build(),
            llm_tokens: meter
                .u64_counter("analyzer_llm_tokens")
                .with_description("Provider tokens used, by tenant, model and kind.")
                .build(),
            llm_cost: meter
                .f64_counter("analyzer_llm_cost_usd")
                .with_description("Estimated provider cost in US dollars, by tenant and model.")
                .with_unit("USD")
                .build(),
            llm_duration: meter
                .f64_histogram("analyzer_llm_request_duration_seconds")
                .with_description(
                    "Provider calls, by model, operation and outcome, retries included.",
                )
                .with_unit("s")
                .with_boundaries(LLM_BUCKETS.to_vec())
                .build(),
        }
    }
}

/// The provider, the reader behind `/metrics` and the instruments.
struct Pipelines {
    provider: SdkMeterProvider,
    reader: Arc<ManualReader>,
    metrics: Metrics,
}

static PIPELINES: OnceLock<Pipelines> = OnceLock::new();

/// A [`ManualReader`] shared between the provider and `/metrics`.
#[derive(Debug, Clone)]
struct SharedReader(Arc<ManualReader>);

impl MetricReader for SharedReader {
    fn register_pipeline(&self, pipeline: Weak<Pipeline>) {
        self.0.register_pipeline(pipeline);
    }

    fn collect(&self, rm: &mut ResourceMetrics) -> opentelemetry_sdk::error::OTelSdkResult {
        self.0.collect(rm)
    }

    fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
        self.0.force_flush()
    }

    fn shutdown_with_timeout(
        &self,
        timeout: std::time::Duration,
    ) -> opentelemetry_sdk::error::OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn temporality(&self, kind: InstrumentKind) -> Temporality {
        self.0.temporality(kind)
    }
}

/// The provider with the `/metrics` reader, and whatever `export` adds
/// (the OTLP exporter).
fn build(
    export: impl FnOnce(MeterProviderBuilder) -> MeterProviderBuilder,
    resource: Resource,
) -> Pipelines {
    let reader = Arc::new(ManualReader::builder().build());
    let builder = SdkMeterProvider::builder()
        .with_resource(resource)
        .with_reader(SharedReader(Arc::clone(&reader)));
    let provider = export(builder).build();
    let metrics = Metrics::new(&provider.meter("analyzer"));
    Pipelines {
        provider,
        reader,
        metrics,
    }
}

/// Install the provider with the OTLP exporter; returns it for shutdown.
/// The first installation in a process wins (tests start several apps).
#[cfg(feature = "otlp")]
pub(super) fn install_with_otlp(exporter: MetricExporter, resource: Resource) -> SdkMeterProvider {
    PIPELINES
        .get_or_init(|| build(|b| b.with_periodic_exporter(exporter), resource))
        .provider
        .clone()
}

/// Install the provider without OTLP.
pub(super) fn install_local(resource: Resource) {
    PIPELINES.get_or_init(|| build(|b| b, resource));
}

fn pipelines() -> &'static Pipelines {
    PIPELINES.get_or_init(|| build(|b| b, Resource::builder_empty().build()))
}

/// The instruments.
pub fn metrics() -> &'static Metrics {
    &pipelines().metrics
}

/// The meter, for observable instruments.
/// The service's meter, for instruments registered elsewhere (the
/// application state's gauges).
pub fn meter() -> Meter {
    pipelines().provider.meter("analyzer")
}

/// One shared copy of each route template (a bounded set: the router's
/// routes and `unmatched`), so labelling a request allocates nothing.
pub fn route_label(route: &str) -> Arc<str> {
    static ROUTES: OnceLock<std::sync::RwLock<std::collections::HashMap<Box<str>, Arc<str>>>> =
        OnceLock::new();
    let routes = ROUTES.get_or_init(Default::default);
    if let Ok(known) = routes.read()
        && let Some(label) = known.get(route)
    {
        return Arc::clone(label);
    }
    let label: Arc<str> = Arc::from(route);
    if let Ok(mut known) = routes.write() {
        known.insert(Box::from(route), Arc::clone(&label));
    }
    label
}

/// The method label: the standard methods, else `other` (bounded).
pub fn method_label(method: &http::Method) -> &'static str {
    match *method {
        http::Method::GET => "GET",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::PATCH => "PATCH",
        http::Method::DELETE => "DELETE",
        http::Method::HEAD => "HEAD",
        http::Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Count a provider call's tokens and estimated cost for a tenant.
pub fn llm_usage(tenant: &str, model: &str, kind: &'static str, tokens: u64, cost_micro_usd: u64) {
    let m = metrics();
    if tokens > 0 {
        m.llm_tokens.add(
            tokens,
            &[
                KeyValue::new("tenant_id", tenant.to_owned()),
                KeyValue::new("model", model.to_owned()),
                KeyValue::new("kind", kind),
            ],
        );
    }
    if cost_micro_usd > 0 {
        m.llm_cost.add(
            cost_micro_usd as f64 / 1e6,
            &[
                KeyValue::new("tenant_id", tenant.to_owned()),
                KeyValue::new("model", model.to_owned()),
            ],
        );
    }
}

/// Count a request refused by a tenant limit.
pub fn refusal(tenant: &str, kind: &'static str) {
    metrics().refusals.add(
        1,
        &[
            KeyValue::new("tenant_id", tenant.to_owned()),
            KeyValue::new("kind", kind),
        ],
    );
}

/// The metrics now, in the Prometheus text format (0.0.4).
pub fn render() -> String {
    let mut collected = ResourceMetrics::default();
    let mut out = String::with_capacity(8192);
    if let Err(e) = pipelines().reader.collect(&mut collected) {
        tracing::warn!(error = %e, "metrics collection failed");
        return out;
    }
    for scope in collected.scope_metrics() {
        for metric in scope.metrics() {
            render_metric(&mut out, metric.name(), metric.description(), metric.data());
        }
    }
    out
}

fn render_metric(out: &mut String, name: &str, help: &str, data: &AggregatedMetrics) {
    match data {
        AggregatedMetrics::F64(data) => render_data(out, name, help, data, |v| v),
        AggregatedMetrics::U64(data) => render_data(out, name, help, data, |v| v as f64),
        AggregatedMetrics::I64(data) => render_data(out, name, help, data, |v| v as f64),
    }
}

fn render_data<T: Copy>(
    out: &mut String,
    name: &str,
    help: &str,
    data: &MetricData<T>,
    value: impl Fn(T) -> f64,
) {
    match data {
        MetricData::Gauge(gauge) => {
            header(out, name, help, "gauge");
            for point in gauge.data_points() {
                sample(
                    out,
                    name,
                    "",
                    point.attributes(),
                    None,
                    value(point.value()),
                );
            }
        }
        MetricData::Sum(sum) => {
            let counter = sum.is_monotonic();
            let full = if counter {
                format!("{name}_total")
            } else {
                name.to_owned()
            };
            header(out, &full, help, if counter { "counter" } else { "gauge" });
            for point in sum.data_points() {
                sample(
                    out,
                    &full,
                    "",
                    point.attributes(),
                    None,
                    value(point.value()),
                );
            }
        }
        MetricData::Histogram(histogram) => {
            header(out, name, help, "histogram");
            for point in histogram.data_points() {
                let mut cumulative = 0u64;
                for (bound, count) in point.bounds().zip(point.bucket_counts()) {
                    cumulative += count;
                    sample(
                        out,
                        name,
                        "_bucket",
                        point.attributes(),
                        Some(&bound.to_string()),
                        cumulative as f64,
                    );
                }
                let count = point.count();
                sample(
                    out,
                    name,
                    "_bucket",
                    point.attributes(),
                    Some("+Inf"),
                    count as f64,
                );
                sample(
                    out,
                    name,
                    "_sum",
                    point.attributes(),
                    None,
                    value(point.sum()),
                );
                sample(out, name, "_count", point.attributes(), None, count as f64);
            }
        }
        // Not used by this service's instruments.
        MetricData::ExponentialHistogram(_) => {}
    }
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let help = help.replace('\\', "\\\\").replace('\n', "\\n");
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn sample<'a>(
    out: &mut String,
    name: &str,
    suffix: &str,
    attributes: impl Iterator<Item = &'a KeyValue>,
    le: Option<&str>,
    value: f64,
) {
    out.push_str(name);
    out.push_str(suffix);
    let mut labels: Vec<(String, String)> = attributes
        .map(|kv| {
            (
                kv.key.as_str().replace(['.', '-'], "_"),
                kv.value.to_string(),
            )
        })
        .collect();
    // The SDK keeps attributes in the order first recorded; sorted here so
    // a series always reads the same.
    labels.sort_unstable();
    if let Some(le) = le {
        labels.push(("le".to_owned(), le.to_owned()));
    }
    if !labels.is_empty() {
        out.push('{');
        for (i, (key, value)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let escaped = value
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            let _ = write!(out, "{key}=\"{escaped}\"");
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_line(text: &str, series: &str) -> Option<f64> {
        text.lines().find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok())?
        })
    }

    #[test]
    fn counters_and_histograms_render_in_the_text_format() {
        let m = metrics();
        let tenant = "render-test-tenant";
        refusal(tenant, "requests_per_minute");
        refusal(tenant, "requests_per_minute");
        llm_usage(tenant, "m\"1", "prompt", 7, 1_500_000);
        let attrs = [KeyValue::new("route", "/render-test")];
        m.request_duration.record(0.003, &attrs);
        m.request_duration.record(2.0, &attrs);
        let text = render();
        assert!(
            text.contains("# TYPE analyzer_limit_refusals_total counter"),
            "{text}"
        );
        assert_eq!(
            sample_line(
                &text,
                r#"analyzer_limit_refusals_total{kind="requests_per_minute",tenant_id="render-test-tenant"}"#
            ),
            Some(2.0)
        );
        assert_eq!(
            sample_line(
                &text,
                r#"analyzer_llm_tokens_total{kind="prompt",model="m\"1",tenant_id="render-test-tenant"}"#
            ),
            Some(7.0),
            "{text}"
        );
        assert_eq!(
            sample_line(
                &text,
                r#"analyzer_llm_cost_usd_total{model="m\"1",tenant_id="render-test-tenant"}"#
            ),
            Some(1.5),
            "{text}"
        );
        let bucket = |le: &str| {
            sample_line(
                &text,
                &format!(
                    r#"analyzer_http_request_duration_seconds_bucket{{route="/render-test",le="{le}"}}"#
                ),
            )
        };
        assert_eq!(bucket("0.0025"), Some(0.0));
        assert_eq!(bucket("0.005"), Some(1.0));
        assert_eq!(bucket("2.5"), Some(2.0));
        assert_eq!(bucket("+Inf"), Some(2.0));
        assert_eq!(
            sample_line(
                &text,
                r#"analyzer_http_request_duration_seconds_count{route="/render-test"}"#
            ),
            Some(2.0)
        );
    }
}
