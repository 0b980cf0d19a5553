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
pub mod store;
pub mod telemetry;
pub mod tenants;
pub mod usage;
pub mod vectors;

/// The allocator of the service's binaries (`main.rs`): mimalloc returns
/// the pages of freed allocations to the OS, where glibc's malloc kept the
/// hundreds of MiB of each of Qdrant Edge's index builds resident.
#[cfg(not(feature = "system-allocator"))]
pub use mimalloc::MiMalloc as Allocator;
/// The allocator of the service's binaries (`main.rs`): the system's, with
/// the `system-allocator` feature, for heap profilers that hook malloc.
#[cfg(feature = "system-allocator")]
pub use std::alloc::System as Allocator;
