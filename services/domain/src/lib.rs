//! The analyzer's domain: what a tenant is and what the service does with
//! its documents, with no I/O framework (no HTTP server, database, vector
//! database or async runtime). The crates above store it
//! (`analyzer-store`, `analyzer-vectors`) and serve it (`analyzer`).
//!
//! - [`tenants`]: tenants, their tiers and statuses.
//! - [`chunk`]: how a document's text is split before embedding.
//! - [`embed`]: the embedder trait and the built-in embedder.
//! - [`retrieval`]: the chunks a search returns.
//! - [`analyze`]: the analyst trait and the extractive analyst.
//! - [`usage`]: the usage counters and the ledger's hours.

pub mod analyze;
pub mod chunk;
pub mod embed;
pub mod retrieval;
pub mod tenants;
pub mod usage;
