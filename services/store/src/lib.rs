//! The relational store: tenants, documents and usage counters, through sqlx.
//!
//! SQLite (a file in the data dir) is the embedded default; PostgreSQL is used
//! when `DATABASE_URL` is `postgres://…`. Both are driven through sqlx's Any
//! driver with one set of portable SQL, so the same code and the same tests
//! run against both. Every document query takes the tenant id: there is no
//! way to read or change a document without naming its tenant.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use analyzer_domain::tenants::{InvalidValue, TenantId};
use secrecy::SecretString;
use sqlx::AnyPool;

mod announce;
mod api_keys;
mod audit;
mod backup;
mod cleanups;
mod collections;
mod contexts;
mod documents;
pub mod gate;
mod generation;
mod guard;
mod metadata;
mod pools;
mod tenants;
mod usage;
mod written;
pub use announce::{Announced, Listener};
pub use api_keys::ApiKey;
pub use audit::{AuditEntry, AuditFilter};
pub use backup::{data_dir_lock_path, lock_data_dir};
pub use cleanups::{DueCleanup, SettledMark, VectorRevision};
pub use collections::{CollectionStats, DEFAULT_COLLECTION};
pub use contexts::SearchContext;
pub use documents::{
    DocumentFilter, DocumentSummary, ListPosition, StorageTotals, StoredDocument, StoredFile,
};
pub use guard::{DbGuardConfig, FALLBACK_CONTEXT_AGE, OUTAGE_FALLBACK_LIMIT};
pub use metadata::{DueMetadataSync, MetadataWrite};
pub use usage::LedgerRow;
pub use written::WriteNotice;

/// Where the database is and how it is used (`DATABASE_URL`,
/// `ANALYZER_DATA_DIR`, `ANALYZER_DB_*`).
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// The SQLite file's directory, without `database_url`.
    pub data_dir: PathBuf,
    /// `postgres://…` or `sqlite:…`; `None`: SQLite in `data_dir`.
    pub database_url: Option<SecretString>,
    /// Connections of the pool (of each pool, on SQLite in the server).
    pub max_connections: u32,
    /// Timeouts and breaker of the database's calls (PostgreSQL).
    pub guard: DbGuardConfig,
}

/// The migrations, embedded in the binary. A migration applied by a newer
/// release is not an error: migrations only add, so an older image runs
/// on a newer schema, which is what a rollback needs.
pub(crate) fn migrator() -> sqlx::migrate::Migrator {
    let mut migrator = sqlx::migrate!("./migrations");
    migrator.set_ignore_missing(true);
    migrator
}

/// A failure of the relational store. Its text is for logs, not for clients.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database answered with an error or could not be reached.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// Migrations failed.
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A row held a value this version cannot read.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The write would take the tenant's stored vector bytes past its
    /// budget; nothing was written.
    #[error("vector storage quota: {stored} bytes stored after the write, {budget} allowed")]
    OverQuota {
        /// Bytes the tenant would store.
        stored: i64,
        /// The tier's budget.
        budget: u64,
    },
    /// The revision being stored was given up on (claimed for removal by
    /// the sweep, see `cleanups`); nothing was written.
    #[error("the ingest's vectors were claimed for removal before it committed")]
    Abandoned,
    /// The tenant was deleted (offboarded): nothing of it is written again.
    #[error("the tenant was deleted")]
    TenantDeleted,
    /// The database's breaker is open: not called (see `guard`).
    #[error("database circuit open for {retry_after:?}")]
    Unavailable {
        /// Time until a call may be tried again.
        retry_after: Duration,
    },
    /// The database did not answer within the call's deadline.
    #[error("database: no answer within {0:?}")]
    TimedOut(Duration),
}

impl StoreError {
    /// Whether the database could not be reached or did not answer (as
    /// opposed to answering with an error).
    pub fn is_outage(&self) -> bool {
        guard::is_outage(self)
    }
}

/// Which database engine is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The embedded SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// A handle to the relational store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Db {
    pool: AnyPool,
    /// On SQLite in the server: the pool standard-tier requests use.
    standard: Option<AnyPool>,
    /// On SQLite in the server, its only writer: search contexts kept in
    /// memory (see [`Contexts`]).
    contexts: Option<Arc<contexts::Contexts>>,
    /// On SQLite in the server, its only writer: the vector journal's
    /// entries counted in memory (see `cleanups`).
    unsettled: Option<Arc<cleanups::Unsettled>>,
    /// The lock that makes this server the SQLite file's only one.
    _serving: Option<Arc<std::fs::File>>,
    /// On SQLite: this process's writers take turns here, first come first
    /// served, before they take a connection (see [`Db::write_turn`]).
    writers: Option<Arc<tokio::sync::Mutex<()>>>,
    backend: Backend,
    /// On PostgreSQL: the breaker and deadline of every call.
    guard: Option<Arc<guard::Guard>>,
    /// Told after every write of a tenant's data (see [`WriteNotice`]);
    /// shared by every clone of this handle.
    notice: Arc<std::sync::OnceLock<Arc<dyn WriteNotice>>>,
}

/// A connection pool's counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// `main`, or `standard` for the standard tier's SQLite pool.
    pub name: &'static str,
    /// Connections lent out.
    pub in_use: u32,
    /// Connections open and idle.
    pub idle: u32,
    /// The pool's bound.
    pub max: u32,
}

/// A tenant id read from `column`: a malformed one is a corrupt row.
pub(crate) fn tenant_column(column: &str, value: &str) -> Result<TenantId, StoreError> {
    value
        .parse()
        .map_err(|e: InvalidValue| StoreError::Corrupt(format!("{column}: {e}")))
}

/// The current time in Unix milliseconds.
pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Unix milliseconds as RFC 3339.
pub fn rfc3339(millis: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(u64::try_from(millis).unwrap_or(0));
    humantime::format_rfc3339_millis(t).to_string()
}

pub(crate) fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}?mode=rwc", path.display())
}

#[cfg(test)]
mod tests;
