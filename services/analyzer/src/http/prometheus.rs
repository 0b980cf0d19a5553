//! `GET /metrics`: the service's OpenTelemetry metrics as Prometheus text
//! (format 0.0.4); the names and labels are in `telemetry::metrics`.

use axum::http::header;
use axum::response::IntoResponse;

use analyzer_telemetry::metrics;

/// The exposition, collected at the time of the call.
#[utoipa::path(get, path = "/metrics", operation_id = "operations_metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain", body = String)))]
pub(super) async fn metrics() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics::render(),
    )
}
