//! Logging: JSON lines (CloudWatch Logs) or human text, filtered by
//! `RUST_LOG`. Request spans carry the request id, route and tenant.

use tracing_subscriber::EnvFilter;

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    /// Standard output (the server).
    Stdout,
    /// Standard error (CLI commands, whose stdout is their result).
    Stderr,
}

/// Install the global subscriber. `ANALYZER_LOG_FORMAT=text` gives plain
/// text; the default is JSON.
pub fn init(sink: Sink) {
    // qdrant-edge logs its WAL at info and, at every start, two warnings
    // about process-wide defaults (feature flags, an mmap probe) that Edge
    // never initializes; they are not actionable, so its chatter is cut to
    // what matters.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(
            "info,sqlx=warn,qdrant_edge=warn,qdrant_edge::common::flags=error,\
             qdrant_edge::common::mmap=error",
        )
    });
    let text = std::env::var("ANALYZER_LOG_FORMAT").is_ok_and(|v| v == "text");
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let result = match (text, sink) {
        (true, Sink::Stdout) => builder.with_writer(std::io::stdout).try_init(),
        (true, Sink::Stderr) => builder.with_writer(std::io::stderr).try_init(),
        (false, Sink::Stdout) => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stdout)
            .try_init(),
        (false, Sink::Stderr) => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .try_init(),
    };
    // Already installed (tests): keep the first.
    let _ = result;
}
