//! JSON log lines: one object per event, in tracing-subscriber's layout
//! (`timestamp`, `level`, `target`, `fields`, `span`), with the request's
//! `trace_id`, `request_id`, `route`, `tenant_id` and `tier` at the top
//! level of every line written while serving it, however deep the span
//! the line comes from.
//!
//! [`RequestFieldsLayer`] keeps those fields of the `request` span (made
//! in `http`) in the span's extensions; [`JsonLines`] finds them by walking
//! up from the event's span.

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_log::NormalizeEvent as _;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

/// The name of the span that holds a request's fields.
const REQUEST_SPAN: &str = "request";

/// The request span's fields copied to every log line.
const REQUEST_FIELDS: [&str; 6] = [
    "trace_id",
    "request_id",
    "method",
    "route",
    "tenant_id",
    "tier",
];

/// The request span's fields, as recorded so far (by position in
/// [`REQUEST_FIELDS`]; kept small, since most requests write no line).
#[derive(Debug, Default)]
struct RequestFields([Option<Box<str>>; REQUEST_FIELDS.len()]);

impl RequestFields {
    fn set(&mut self, field: &Field, value: impl FnOnce() -> Box<str>) {
        if let Some(i) = REQUEST_FIELDS.iter().position(|f| *f == field.name()) {
            let value = value();
            if !value.is_empty() {
                self.0[i] = Some(value);
            }
        }
    }

    fn entries(&self) -> impl Iterator<Item = (&'static str, &str)> {
        REQUEST_FIELDS
            .iter()
            .zip(&self.0)
            .filter_map(|(name, value)| value.as_deref().map(|v| (*name, v)))
    }
}

impl Visit for RequestFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.set(field, || Box::from(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.set(field, || format!("{value:?}").into_boxed_str());
    }
}

/// Keeps the request span's fields where [`JsonLines`] finds them.
#[derive(Debug, Clone, Copy)]
pub(super) struct RequestFieldsLayer;

impl<S> Layer<S> for RequestFieldsLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().name() != REQUEST_SPAN {
            return;
        }
        let mut fields = RequestFields::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(fields) = span.extensions_mut().get_mut::<RequestFields>()
        {
            values.record(fields);
        }
    }
}

/// An event's own fields, as JSON values (without the `log.*` fields of
/// a `log` record, which become its target).
struct EventFields<'a>(&'a mut Map<String, Value>);

impl EventFields<'_> {
    fn put(&mut self, field: &Field, value: impl FnOnce() -> Value) {
        if !field.name().starts_with("log.") {
            self.0.insert(field.name().to_owned(), value());
        }
    }
}

impl Visit for EventFields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, || value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, || value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, || value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, || value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, || value.into());
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, || value.to_string().into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, || format!("{value:?}").into());
    }
}

/// Span fields are not formatted for the JSON lines (they carry the
/// request's fields from [`RequestFieldsLayer`]): the fmt layer would
/// otherwise format every field of every span into a string.
#[derive(Debug, Clone, Copy)]
pub(super) struct NoSpanFields;

impl<'writer> FormatFields<'writer> for NoSpanFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        _writer: Writer<'writer>,
        _fields: R,
    ) -> fmt::Result {
        Ok(())
    }
}

/// The JSON line format.
#[derive(Debug, Clone, Copy)]
pub(super) struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // A `log` record (qdrant-edge) under its own target and level.
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        let mut line = Map::new();
        line.insert(
            "timestamp".into(),
            humantime::format_rfc3339_micros(std::time::SystemTime::now())
                .to_string()
                .into(),
        );
        line.insert("level".into(), meta.level().as_str().into());
        let mut fields = Map::new();
        event.record(&mut EventFields(&mut fields));
        line.insert("fields".into(), Value::Object(fields));
        line.insert("target".into(), meta.target().into());
        if let Some(scope) = ctx.event_scope() {
            let mut leaf = None;
            for span in scope {
                leaf.get_or_insert_with(|| span.name());
                if let Some(request) = span.extensions().get::<RequestFields>() {
                    for (key, value) in request.entries() {
                        line.insert(key.to_owned(), value.into());
                    }
                    break;
                }
            }
            if let Some(name) = leaf {
                line.insert("span".into(), name.into());
            }
        }
        let text = serde_json::to_string(&line).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| io::Error::other("poisoned"))?
                .extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn log_records_keep_their_own_target_and_drop_the_bridge_fields() {
        // How qdrant-edge's `log` records arrive (as in the server).
        let _ = tracing_log::LogTracer::init();
        let captured = Captured::default();
        let sink = captured.clone();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .event_format(JsonLines)
                .with_writer(move || sink.clone()),
        );
        tracing::subscriber::with_default(subscriber, || {
            tracing_log::log::warn!(target: "qdrant_edge::wal", "segment {} flushed", 7);
        });
        let bytes = captured.0.lock().expect("lock").clone();
        let line: Value = serde_json::from_slice(&bytes).expect("one JSON line");
        assert_eq!(line["target"], "qdrant_edge::wal");
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["fields"]["message"], "segment 7 flushed");
        assert_eq!(
            line["fields"].as_object().map(|f| f.len()),
            Some(1),
            "no log.* fields: {line}"
        );
    }

    #[test]
    fn lines_deep_inside_a_request_carry_its_ids() {
        let captured = Captured::default();
        let sink = captured.clone();
        let subscriber = tracing_subscriber::registry()
            .with(RequestFieldsLayer)
            .with(
                tracing_subscriber::fmt::layer()
                    .event_format(JsonLines)
                    .with_writer(move || sink.clone()),
            );
        tracing::subscriber::with_default(subscriber, || {
            let request = tracing::info_span!(
                "request",
                method = "POST",
                route = "/v1/search",
                request_id = "req-1",
                trace_id = tracing::field::Empty,
                tenant_id = tracing::field::Empty,
                tier = tracing::field::Empty,
            );
            request.record("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736");
            request.record("tenant_id", "acme");
            let _request = request.enter();
            let _inner = tracing::info_span!("vector.search", top_k = 5).entered();
            tracing::info!(hits = 3, "searched");
        });
        tracing::subscriber::with_default(
            tracing_subscriber::registry().with(
                tracing_subscriber::fmt::layer()
                    .event_format(JsonLines)
                    .with_writer({
                        let sink = captured.clone();
                        move || sink.clone()
                    }),
            ),
            || tracing::warn!("outside"),
        );
        let bytes = captured.0.lock().expect("lock").clone();
        let text = String::from_utf8(bytes).expect("utf-8");
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
            .collect();
        assert_eq!(lines.len(), 2);
        let inside = &lines[0];
        assert_eq!(inside["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(inside["request_id"], "req-1");
        assert_eq!(inside["route"], "/v1/search");
        assert_eq!(inside["tenant_id"], "acme");
        assert_eq!(inside["span"], "vector.search");
        assert_eq!(inside["fields"]["message"], "searched");
        assert_eq!(inside["fields"]["hits"], 3);
        assert_eq!(inside["level"], "INFO");
        assert!(
            inside.get("tier").is_none(),
            "unrecorded fields are left out"
        );
        let outside = &lines[1];
        assert_eq!(outside["fields"]["message"], "outside");
        assert!(outside.get("request_id").is_none());
    }
}
