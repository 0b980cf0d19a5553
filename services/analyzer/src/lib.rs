//! The analyzer service: a multi-tenant API to ingest documents, search
//! them and get answers with citations.
//!
//! `main.rs` parses the command line ([`cli`]); `serve` builds an
//! [`app::Application`] and runs it until a stop signal.
//!
//! The layers below are crates of their own: `analyzer-domain` (tenants,
//! chunking, embedding, analysis, usage counters), `analyzer-telemetry`,
//! `analyzer-runtime` (lanes, the breaker), `analyzer-store` and
//! `analyzer-vectors`. The map is docs/architecture.md.

// The modules in layers, from the bottom up: a module imports only from
// the layers above its own here (docs/architecture.md says how this is
// checked). Each comment starts a layer.
//
// The backends' clients the request path shares, the server's loop, and
// the child processes that read uploaded files, the control socket.
pub mod cache;
pub mod control;
pub mod openai;
pub mod serve;
pub mod uploads;
// Tier limits, counted in the cache's Redis when there is one.
pub mod limits;
// The configuration, composed of the settings each module above owns.
pub mod config;
// Who is calling, and the secrets configuration may come from.
pub mod auth;
pub mod secrets;
// Tenant administration and the usage recorder.
pub mod tenants;
pub mod usage;
// The service's error.
pub mod error;
// Tenants' API keys: made, listed, revoked.
pub mod api_keys;
// What a request does: ingest, read and delete; retrieval.
pub mod documents;
// Retrieval, with the query cache.
pub mod search;
// The HTTP API.
pub mod http;
// The gauges read from the HTTP state.
pub mod gauges;
// Build, run and stop the application.
pub mod app;
// Backup and restore of a single host's embedded data.
pub mod backup;
// The command line.
pub mod cli;

/// The allocator of the service's binaries (`main.rs`): the system's,
/// without the `jemalloc` feature, for heap profilers that hook malloc.
#[cfg(not(feature = "jemalloc"))]
pub use std::alloc::System as Allocator;
/// The allocator of the service's binaries (`main.rs`): jemalloc, which
/// returns freed pages to the OS within a second (`.cargo/config.toml`);
/// glibc's malloc and mimalloc kept most of what Qdrant Edge's index
/// builds had freed resident.
#[cfg(feature = "jemalloc")]
pub use tikv_jemallocator::Jemalloc as Allocator;
