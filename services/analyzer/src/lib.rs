//! The analyzer service: a multi-tenant API to ingest documents, search
//! them and get answers with citations.
//!
//! `main.rs` parses the command line ([`cli`]); `serve` builds an
//! [`app::Application`] and runs it until a stop signal.

pub mod analyze;
pub mod app;
pub mod auth;
pub mod cache;
pub mod chunk;
pub mod cli;
pub mod config;
pub mod documents;
pub mod embed;
pub mod error;
pub mod http;
pub mod lanes;
pub mod limits;
pub mod openai;
pub mod search;
pub mod secrets;
pub mod serve;
pub mod store;
pub mod telemetry;
pub mod tenants;
pub mod usage;
pub mod vectors;

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
