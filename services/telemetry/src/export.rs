//! What leaves the process over OTLP, decided by the standard `OTEL_*`
//! variables: traces when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, metrics when it (or
//! `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`) is; `OTEL_TRACES_EXPORTER=none`,
//! `OTEL_METRICS_EXPORTER=none` and `OTEL_SDK_DISABLED=true` turn a signal
//! off. The exporter reads the rest itself (headers, timeout, compression,
//! `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, the sampler, the
//! metric interval).
//!
//! The protocol is OTLP/HTTP with protobuf (the specification's default,
//! a collector's port 4318). The exporters run on threads of their own,
//! outside the async runtime, with a blocking HTTP client; gRPC would need
//! a runtime there. Any other protocol asked for is refused at start, not
//! silently dropped.

#[cfg(feature = "otlp")]
use opentelemetry_otlp::{MetricExporter, SpanExporter, WithExportConfig as _};
use opentelemetry_sdk::Resource;

/// The one OTLP protocol this build exports with.
const PROTOCOL: &str = "http/protobuf";

/// Which signals are exported, and as which service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exports {
    /// Spans, over OTLP.
    pub traces: bool,
    /// Metrics, over OTLP.
    pub metrics: bool,
    /// `OTEL_SERVICE_NAME`, if set (default `analyzer`).
    pub service_name: Option<String>,
}

/// A signal's settings that cannot be served.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ExportError {
    /// An exporter other than `otlp` or `none`.
    #[error("{var}={value}: only `otlp` and `none` are supported")]
    Exporter { var: String, value: String },
    /// A protocol other than http/protobuf.
    #[error("{var}={value}: only `http/protobuf` is supported (OTLP over HTTP, port 4318)")]
    Protocol { var: String, value: String },
}

impl Exports {
    /// Nothing exported (CLI commands, tests).
    pub fn none() -> Self {
        Self::default()
    }

    /// Read the standard variables through `var`.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Self, ExportError> {
        let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        if set("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
            return Ok(Self::none());
        }
        let signal = |upper: &str| -> Result<bool, ExportError> {
            let exporter_var = format!("OTEL_{upper}_EXPORTER");
            match set(&exporter_var).map(|v| v.trim().to_ascii_lowercase()) {
                Some(v) if v == "none" => return Ok(false),
                Some(v) if v != "otlp" => {
                    return Err(ExportError::Exporter {
                        var: exporter_var,
                        value: v,
                    });
                }
                _ => {}
            }
            let endpoint = set(&format!("OTEL_EXPORTER_OTLP_{upper}_ENDPOINT"))
                .or_else(|| set("OTEL_EXPORTER_OTLP_ENDPOINT"));
            if endpoint.is_none() {
                return Ok(false);
            }
            let signal_protocol = format!("OTEL_EXPORTER_OTLP_{upper}_PROTOCOL");
            let protocol = set(&signal_protocol)
                .map(|v| (signal_protocol, v))
                .or_else(|| {
                    set("OTEL_EXPORTER_OTLP_PROTOCOL")
                        .map(|v| ("OTEL_EXPORTER_OTLP_PROTOCOL".to_owned(), v))
                });
            if let Some((var, value)) = protocol
                && value.trim() != PROTOCOL
            {
                return Err(ExportError::Protocol { var, value });
            }
            Ok(true)
        };
        Ok(Self {
            traces: signal("TRACES")?,
            metrics: signal("METRICS")?,
            service_name: set("OTEL_SERVICE_NAME").map(|v| v.trim().to_owned()),
        })
    }

    /// Refuse to start when a signal is to be exported and this build
    /// cannot export (without the `otlp` feature).
    #[cfg(not(feature = "otlp"))]
    pub(super) fn require_none(&self) -> anyhow::Result<()> {
        if self.traces || self.metrics {
            anyhow::bail!(
                "OTEL_EXPORTER_OTLP_ENDPOINT: this build exports no telemetry (cargo feature `otlp`)"
            );
        }
        Ok(())
    }

    /// The span exporter, when traces are exported.
    #[cfg(feature = "otlp")]
    pub(super) fn span_exporter(&self) -> anyhow::Result<Option<SpanExporter>> {
        if !self.traces {
            return Ok(None);
        }
        let exporter = SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .build()
            .map_err(|e| anyhow::anyhow!("OTLP trace exporter: {e}"))?;
        Ok(Some(exporter))
    }

    /// The metric exporter, when metrics are exported.
    #[cfg(feature = "otlp")]
    pub(super) fn metric_exporter(&self) -> anyhow::Result<Option<MetricExporter>> {
        if !self.metrics {
            return Ok(None);
        }
        let exporter = MetricExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .build()
            .map_err(|e| anyhow::anyhow!("OTLP metric exporter: {e}"))?;
        Ok(Some(exporter))
    }

    /// The process as a resource: `service.name` (`OTEL_SERVICE_NAME`,
    /// default `analyzer`), `service.version`, and the SDK's detectors
    /// (`OTEL_RESOURCE_ATTRIBUTES`).
    pub(super) fn resource(&self) -> Resource {
        Resource::builder()
            .with_attribute(opentelemetry::KeyValue::new(
                "service.version",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_service_name(
                self.service_name
                    .clone()
                    .unwrap_or_else(|| "analyzer".into()),
            )
            .build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exports(vars: &[(&str, &str)]) -> Result<Exports, ExportError> {
        Exports::from_env(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn nothing_is_exported_without_an_endpoint() {
        assert_eq!(exports(&[]), Ok(Exports::none()));
        assert_eq!(
            exports(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")]),
            Ok(Exports::none())
        );
        assert_eq!(
            exports(&[("OTEL_SERVICE_NAME", "x"), ("OTEL_TRACES_EXPORTER", "otlp")]),
            Ok(Exports {
                service_name: Some("x".into()),
                ..Exports::none()
            })
        );
    }

    #[test]
    fn an_endpoint_exports_both_signals_unless_one_is_turned_off() {
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318");
        assert_eq!(
            exports(&[endpoint]),
            Ok(Exports {
                traces: true,
                metrics: true,
                service_name: None
            })
        );
        assert_eq!(
            exports(&[endpoint, ("OTEL_METRICS_EXPORTER", "none")]),
            Ok(Exports {
                traces: true,
                metrics: false,
                service_name: None
            })
        );
        assert_eq!(
            exports(&[(
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://c:4318/v1/traces"
            )]),
            Ok(Exports {
                traces: true,
                metrics: false,
                service_name: None
            })
        );
        assert_eq!(
            exports(&[endpoint, ("OTEL_SDK_DISABLED", "TRUE")]),
            Ok(Exports::none())
        );
    }

    #[test]
    fn other_protocols_and_exporters_are_refused_by_name() {
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317");
        assert_eq!(
            exports(&[endpoint, ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")])
                .map(|e| e.traces),
            Ok(true)
        );
        let err = exports(&[endpoint, ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")])
            .expect_err("grpc refused");
        assert!(err.to_string().contains("OTEL_EXPORTER_OTLP_PROTOCOL=grpc"));
        let err = exports(&[
            endpoint,
            ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/json"),
        ])
        .expect_err("json refused");
        assert!(
            err.to_string()
                .contains("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL")
        );
        let err =
            exports(&[endpoint, ("OTEL_TRACES_EXPORTER", "zipkin")]).expect_err("zipkin refused");
        assert!(err.to_string().contains("OTEL_TRACES_EXPORTER=zipkin"));
    }
}
