//! A real OTLP/HTTP receiver, started by a test on loopback: it accepts
//! `POST /v1/traces` and `POST /v1/metrics` with protobuf bodies, as an
//! OpenTelemetry collector's port 4318 does, decodes them with the
//! protocol's own message types and keeps what arrived for the test.
//! A body that is not OTLP/protobuf (JSON, undecodable) is answered 415
//! and counted, so a wrong export fails the test; other paths get 404.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};

/// One span as received.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    /// The span's name.
    pub name: String,
    /// Lower-case hex.
    pub trace_id: String,
    /// Lower-case hex.
    pub span_id: String,
    /// Lower-case hex; empty for a root span.
    pub parent_span_id: String,
    /// The span's attributes, as text.
    pub attributes: HashMap<String, String>,
    /// The resource's attributes (`service.name`, ...), as text.
    pub resource: HashMap<String, String>,
}

impl ReceivedSpan {
    /// An attribute's text, if present.
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

#[derive(Debug, Default)]
struct Received {
    spans: Vec<ReceivedSpan>,
    metric_names: Vec<String>,
    rejected: usize,
}

/// A running receiver; stops with the test's runtime.
pub struct OtlpReceiver {
    /// `http://127.0.0.1:PORT`, for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub endpoint: String,
    received: Arc<Mutex<Received>>,
}

fn text(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn attributes(list: &[KeyValue]) -> HashMap<String, String> {
    list.iter()
        .map(|kv| (kv.key.clone(), text(kv.value.as_ref())))
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Decode an export request of type `M` and keep it with `keep`; a body
/// that is not OTLP/protobuf is refused and counted.
fn intake<M: prost::Message + Default>(
    received: &Mutex<Received>,
    headers: &HeaderMap,
    body: Bytes,
    keep: impl FnOnce(&mut Received, M),
) -> StatusCode {
    let protobuf = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-protobuf"));
    let decoded = protobuf.then(|| M::decode(body).ok()).flatten();
    let Ok(mut r) = received.lock() else {
        return StatusCode::INTERNAL_SERVER_ERROR;
    };
    match decoded {
        Some(request) => {
            keep(&mut r, request);
            StatusCode::OK
        }
        None => {
            r.rejected += 1;
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        }
    }
}

async fn traces(
    State(received): State<Arc<Mutex<Received>>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    intake(
        &received,
        &headers,
        body,
        |r, request: ExportTraceServiceRequest| {
            for resource_spans in request.resource_spans {
                let resource = resource_spans
                    .resource
                    .map(|res| attributes(&res.attributes))
                    .unwrap_or_default();
                for scope in resource_spans.scope_spans {
                    for span in scope.spans {
                        r.spans.push(ReceivedSpan {
                            name: span.name,
                            trace_id: hex(&span.trace_id),
                            span_id: hex(&span.span_id),
                            parent_span_id: hex(&span.parent_span_id),
                            attributes: attributes(&span.attributes),
                            resource: resource.clone(),
                        });
                    }
                }
            }
        },
    )
}

async fn metrics(
    State(received): State<Arc<Mutex<Received>>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    intake(
        &received,
        &headers,
        body,
        |r, request: ExportMetricsServiceRequest| {
            for resource_metrics in request.resource_metrics {
                for scope in resource_metrics.scope_metrics {
                    for metric in scope.metrics {
                        if !r.metric_names.contains(&metric.name) {
                            r.metric_names.push(metric.name);
                        }
                    }
                }
            }
        },
    )
}

impl OtlpReceiver {
    /// Listen on a free loopback port.
    pub async fn start() -> Self {
        let received = Arc::new(Mutex::new(Received::default()));
        let app = Router::new()
            .route("/v1/traces", post(traces))
            .route("/v1/metrics", post(metrics))
            .with_state(Arc::clone(&received));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the OTLP receiver");
        let addr = listener.local_addr().expect("address");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            endpoint: format!("http://{addr}"),
            received,
        }
    }

    /// The spans received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.received
            .lock()
            .map(|r| r.spans.clone())
            .unwrap_or_default()
    }

    /// The names of the metrics received so far.
    pub fn metric_names(&self) -> Vec<String> {
        self.received
            .lock()
            .map(|r| r.metric_names.clone())
            .unwrap_or_default()
    }

    /// Exports refused as not OTLP/protobuf.
    pub fn rejected(&self) -> usize {
        self.received.lock().map(|r| r.rejected).unwrap_or_default()
    }

    /// Wait up to `within` until `done` holds for what arrived.
    pub async fn wait_for(&self, within: Duration, done: impl Fn(&Self) -> bool) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if done(self) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        done(self)
    }
}
