//! The relational store: tenants, documents and usage counters, through sqlx.
//!
//! SQLite (a file in the data dir) is the embedded default; PostgreSQL is used
//! when `DATABASE_URL` is `postgres://…`. Both are driven through sqlx's Any
//! driver with one set of portable SQL, so the same code and the same tests
//! run against both. Every document query takes the tenant id: there is no
//! way to read or change a document without naming its tenant.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use secrecy::ExposeSecret;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Connection as _, Row};

use crate::config::Config;
use crate::tenants::{Tenant, TenantId, TenantStatus, Tier};
use crate::usage;

mod cleanups;
mod guard;
pub use cleanups::{DueCleanup, SettledMark, VectorRevision};
pub use guard::{DbGuardConfig, FALLBACK_CONTEXT_AGE, OUTAGE_FALLBACK_LIMIT};

/// The migrations, embedded in the binary. A migration applied by a newer
/// release is not an error: migrations only add, so an older image runs
/// on a newer schema, which is what a rollback needs.
fn migrator() -> sqlx::migrate::Migrator {
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
    contexts: Option<Arc<Contexts>>,
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
}

/// Search contexts of a database this process alone writes (the server's
/// SQLite file): a cached search then needs no database round trip.
///
/// Every write of a tenant's documents or generation invalidates the
/// tenant's entries after its transaction and advances the tenant's epoch;
/// a read stores what it read only if the epoch did not move while it
/// read, so a context read before a write can never be stored after it.
/// Only contexts of existing collections are kept (the names a tenant has
/// stored documents under: bounded), at most [`Contexts::MAX`] in all.
#[derive(Debug, Default)]
struct Contexts {
    tenants: Mutex<HashMap<TenantId, TenantContexts>>,
}

#[derive(Debug, Default)]
struct TenantContexts {
    epoch: u64,
    by_collection: HashMap<String, SearchContext>,
}

impl Contexts {
    const MAX: usize = 100_000;

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TenantId, TenantContexts>> {
        self.tenants
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The stored context, or the epoch to read under.
    fn get(&self, tenant: &TenantId, collection: &str) -> Result<SearchContext, u64> {
        let tenants = self.lock();
        match tenants.get(tenant) {
            Some(t) => t.by_collection.get(collection).copied().ok_or(t.epoch),
            None => Err(0),
        }
    }

    fn store(&self, tenant: &TenantId, collection: &str, epoch: u64, context: SearchContext) {
        if !context.collection_exists {
            return;
        }
        let mut tenants = self.lock();
        if tenants
            .values()
            .map(|t| t.by_collection.len())
            .sum::<usize>()
            >= Self::MAX
        {
            tenants.values_mut().for_each(|t| t.by_collection.clear());
        }
        let entry = tenants.entry(tenant.clone()).or_default();
        if entry.epoch == epoch {
            entry.by_collection.insert(collection.to_owned(), context);
        }
    }

    fn invalidate(&self, tenant: &TenantId) {
        let mut tenants = self.lock();
        let entry = tenants.entry(tenant.clone()).or_default();
        entry.epoch += 1;
        entry.by_collection.clear();
    }
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

/// A document as stored: what `GET /v1/documents/{id}` returns.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredDocument {
    /// The tenant-scoped document id.
    pub id: String,
    /// The collection it belongs to.
    pub collection: String,
    /// Changes on every replacement; its vectors are stored under it.
    pub revision: String,
    /// The full text.
    pub text: String,
    /// The caller's metadata (a JSON object).
    pub metadata: serde_json::Value,
    /// How many chunks were embedded.
    pub chunk_count: i64,
    /// Size of the text in bytes.
    pub byte_size: i64,
    /// Bytes the document's vectors and payload take in the vector store.
    pub vector_bytes: i64,
    /// Creation time, Unix milliseconds.
    pub created_at: i64,
    /// Last replacement time, Unix milliseconds.
    pub updated_at: i64,
}

/// What a search reads from the store before it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchContext {
    /// Bumped by every change to the tenant's documents.
    pub generation: i64,
    /// Whether the tenant has any document in the collection.
    pub collection_exists: bool,
    /// Whether the vector journal had entries of the tenant's when this
    /// was read (see `cleanups`): then a search checks its hits.
    pub unsettled: bool,
}

/// One tenant's sum of one counter over a period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerRow {
    /// The tenant.
    pub tenant_id: String,
    /// Its name.
    pub name: String,
    /// Its tier now.
    pub tier: Tier,
    /// The counter.
    pub metric: String,
    /// Its sum over the period.
    pub value: i64,
    /// Bytes the tenant stores now (text, vectors and payload).
    pub storage_bytes: i64,
}

/// What a tenant has stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StorageTotals {
    /// Number of documents.
    pub documents: i64,
    /// Number of chunks.
    pub chunks: i64,
    /// Bytes of document text.
    pub text_bytes: i64,
    /// Bytes of vectors and payload.
    pub vector_bytes: i64,
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

/// The database URL and its kind: `DATABASE_URL`, or the SQLite file in
/// the data directory.
fn target(config: &Config) -> (String, Backend) {
    sqlx::any::install_default_drivers();
    match &config.database_url {
        Some(url) => {
            let url = url.expose_secret().to_owned();
            let backend = if url.starts_with("sqlite:") {
                Backend::Sqlite
            } else {
                Backend::Postgres
            };
            (url, backend)
        }
        None => (
            sqlite_url(&config.data_dir.join("analyzer.db")),
            Backend::Sqlite,
        ),
    }
}

/// How long a SQLite connection waits for a lock before it fails.
const BUSY_TIMEOUT: &str = "PRAGMA busy_timeout = 5000";

fn pool_options(config: &Config, backend: Backend) -> AnyPoolOptions {
    let options = AnyPoolOptions::new().max_connections(config.db_max_connections);
    if backend != Backend::Sqlite {
        return options.acquire_timeout(config.db_guard.acquire_timeout);
    }
    let options = options.acquire_timeout(Duration::from_secs(5));
    // Every connection opened with the pool, by the caller's thread, and
    // kept: each is a thread with the priority of the one that opened it
    // (see `Db::with_standard_pool`), and local connections never go stale.
    options
        .min_connections(config.db_max_connections)
        .idle_timeout(None)
        .max_lifetime(None)
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                // The file is in WAL mode already (`Db::connect`): readers
                // run beside the single writer. The busy timeout makes
                // concurrent writers wait instead of failing. Each
                // connection's page cache is held to 1 MiB (SQLite's default
                // is 2 MiB, times every connection of both pools); the
                // file's pages stay in the OS page cache anyway.
                for pragma in [
                    BUSY_TIMEOUT,
                    "PRAGMA synchronous = NORMAL",
                    "PRAGMA foreign_keys = ON",
                    "PRAGMA cache_size = -1024",
                ] {
                    sqlx::query(pragma).execute(&mut *conn).await?;
                }
                Ok(())
            })
        })
}

impl Db {
    /// Open the configured database (creating the SQLite file if needed).
    /// Does not migrate: call [`Db::migrate`].
    pub async fn connect(config: &Config) -> Result<Self, StoreError> {
        let (url, backend) = target(config);
        if backend == Backend::Sqlite {
            // Switch a new file to WAL alone, before the pools open their
            // connections (WAL is a property of the file: they all use it
            // then): the switch cannot wait out a reader on another
            // connection (the start's first query, say), it fails with
            // "database is locked". On a file already in WAL it is a no-op.
            let mut conn = sqlx::AnyConnection::connect(&url).await?;
            for pragma in [BUSY_TIMEOUT, "PRAGMA journal_mode = WAL"] {
                sqlx::query(pragma).execute(&mut conn).await?;
            }
            conn.close().await?;
        }
        let pool = pool_options(config, backend).connect(&url).await?;
        Ok(Self {
            pool,
            standard: None,
            contexts: None,
            unsettled: None,
            _serving: None,
            writers: (backend == Backend::Sqlite).then(Arc::default),
            guard: (backend == Backend::Postgres).then(|| guard::Guard::new(config.db_guard)),
            backend,
        })
    }

    /// A PostgreSQL handle whose server is never reached, for the guard's
    /// unit tests.
    #[cfg(test)]
    fn unreachable_for_tests(config: DbGuardConfig) -> Self {
        sqlx::any::install_default_drivers();
        Self {
            pool: AnyPoolOptions::new()
                .connect_lazy("postgres://postgres@127.0.0.1:9/none")
                .expect("a lazy pool"),
            standard: None,
            contexts: None,
            unsettled: None,
            _serving: None,
            writers: None,
            backend: Backend::Postgres,
            guard: Some(guard::Guard::new(config)),
        }
    }

    /// For the server on SQLite: make it the database's only server (an
    /// exclusive lock on `serve.lock` in the data dir, held while it runs;
    /// a second `analyzer serve` on the same data dir stops at start), and
    /// keep search contexts in memory, which only the only writer may (a
    /// cached search then touches no SQLite thread). CLI commands take no
    /// lock: they change no document. Not for PostgreSQL, which every task
    /// writes.
    pub fn with_context_cache(mut self, data_dir: &Path) -> std::io::Result<Self> {
        if self.backend != Backend::Sqlite {
            return Ok(self);
        }
        let path = data_dir.join("serve.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        file.try_lock().map_err(|_| {
            std::io::Error::other(format!(
                "another `analyzer serve` uses this data dir ({} is locked); \
                 one server per SQLite database",
                path.display()
            ))
        })?;
        self._serving = Some(Arc::new(file));
        self.contexts = Some(Arc::default());
        self.unsettled = Some(Arc::default());
        Ok(self)
    }

    /// Run a write of the tenant's documents or generation, then (whatever
    /// its outcome) drop the tenant's in-memory search contexts.
    async fn writing<T>(
        &self,
        tenant: &TenantId,
        write: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let result = write.await;
        if let Some(contexts) = &self.contexts {
            contexts.invalidate(tenant);
        }
        result
    }

    /// For the server on SQLite: a second pool, of the same size, for
    /// standard-tier requests. A SQLite connection is a thread that runs
    /// the queries, and a thread runs at the priority it was created with;
    /// these are opened on the standard runtime (see [`crate::lanes`]) so
    /// that a standard tenant's queries run at the standard priority, and
    /// the main pool's are opened here, at the server's. On PostgreSQL
    /// the queries run in the server, and one pool serves both tiers.
    pub async fn with_standard_pool(mut self, config: &Config) -> Result<Self, StoreError> {
        if self.backend != Backend::Sqlite {
            return Ok(self);
        }
        let (url, backend) = target(config);
        let options = pool_options(config, backend);
        let opened =
            crate::lanes::handle(Tier::Standard, async move { options.connect(&url).await })
                .await
                .map_err(|_| sqlx::Error::WorkerCrashed)??;
        self.standard = Some(opened);
        Ok(self)
    }

    /// Connection counts of each pool (`main`, and `standard` on SQLite in
    /// the server), for metrics.
    pub fn pool_stats(&self) -> Vec<PoolStats> {
        let stats = |name, pool: &AnyPool| {
            let idle = u32::try_from(pool.num_idle()).unwrap_or(u32::MAX);
            PoolStats {
                name,
                in_use: pool.size().saturating_sub(idle),
                idle,
                max: pool.options().get_max_connections(),
            }
        };
        let mut all = vec![stats("main", &self.pool)];
        if let Some(standard) = &self.standard {
            all.push(stats("standard", standard));
        }
        all
    }

    /// The pool for the work being done: the standard pool for a standard
    /// tenant's request when there is one, else the main pool.
    fn pool(&self) -> &AnyPool {
        match (&self.standard, crate::lanes::tier()) {
            (Some(standard), Some(Tier::Standard)) => standard,
            _ => &self.pool,
        }
    }

    /// A permit for one call of the tenant being served against its share
    /// of the pool (see [`crate::limits::DbGate`]); bursting is allowed
    /// while the pool has idle connections or room to open one.
    async fn quota(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        crate::limits::db_permit(|| {
            let pool = self.pool();
            pool.num_idle() > 0 || pool.size() < pool.options().get_max_connections()
        })
        .await
    }

    /// On SQLite, this process's turn to write, taken before a write takes
    /// its connection. SQLite has one writer at a time; without turns every
    /// waiting writer holds a pooled connection (which readers then lack)
    /// and polls the file lock in SQLite's busy handler, unordered, so
    /// that under a burst of ingests one could wait out the busy timeout
    /// and fail (a 503) while later ones went first. In turn, writers wait
    /// in arrival order and without a connection; the busy timeout is left
    /// for other processes (the CLI). PostgreSQL locks rows: no turn.
    async fn write_turn(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match &self.writers {
            Some(writers) => Some(writers.lock().await),
            None => None,
        }
    }

    /// A write transaction, begun in this process's turn (taken first, so
    /// that a writer waits for its turn without holding a connection).
    async fn begin_write(
        &self,
    ) -> Result<
        (
            Option<tokio::sync::MutexGuard<'_, ()>>,
            sqlx::Transaction<'static, sqlx::Any>,
        ),
        StoreError,
    > {
        let turn = self.write_turn().await;
        Ok((turn, self.pool().begin().await?))
    }

    /// Apply pending migrations.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        migrator().run(&self.pool).await?;
        Ok(())
    }

    /// Which engine this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A cheap round trip, for readiness checks.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.guarded(async {
            sqlx::query("SELECT 1").execute(&self.pool).await?;
            Ok(())
        })
        .await
    }

    /// Close the pool, waiting for connections to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
        if let Some(standard) = &self.standard {
            standard.close().await;
        }
    }

    // ---- tenants -------------------------------------------------------

    /// Insert a new tenant.
    pub async fn insert_tenant(
        &self,
        id: &TenantId,
        name: &str,
        tier: Tier,
    ) -> Result<Tenant, StoreError> {
        let now = now_millis();
        let _turn = self.write_turn().await;
        self.guarded(async {
            sqlx::query(
                "INSERT INTO tenants (id, name, tier, status, created_at, updated_at) \
                 VALUES ($1, $2, $3, 'active', $4, $4)",
            )
            .bind(id.as_str())
            .bind(name)
            .bind(tier.as_str())
            .bind(now)
            .execute(self.pool())
            .await?;
            Ok(())
        })
        .await?;
        Ok(Tenant {
            id: id.clone(),
            name: name.to_owned(),
            tier,
            status: TenantStatus::Active,
            created_at: rfc3339(now),
        })
    }

    /// Read one tenant.
    pub async fn tenant(&self, id: &TenantId) -> Result<Option<Tenant>, StoreError> {
        self.guarded(async {
            sqlx::query("SELECT id, name, tier, status, created_at FROM tenants WHERE id = $1")
                .bind(id.as_str())
                .fetch_optional(self.pool())
                .await?
                .map(|row| tenant_from_row(&row))
                .transpose()
        })
        .await
    }

    /// All tenants, oldest first.
    pub async fn tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        self.guarded(async {
            sqlx::query(
                "SELECT id, name, tier, status, created_at FROM tenants ORDER BY created_at, id",
            )
            .fetch_all(self.pool())
            .await?
            .iter()
            .map(tenant_from_row)
            .collect()
        })
        .await
    }

    /// Change tier and/or status; `None` if there is no such tenant.
    pub async fn update_tenant(
        &self,
        id: &TenantId,
        tier: Option<Tier>,
        status: Option<TenantStatus>,
    ) -> Result<Option<Tenant>, StoreError> {
        let turn = self.write_turn().await;
        self.guarded(async {
            sqlx::query(
                "UPDATE tenants SET tier = COALESCE($2, tier), status = COALESCE($3, status), \
                 updated_at = $4 WHERE id = $1",
            )
            .bind(id.as_str())
            .bind(tier.map(Tier::as_str))
            .bind(status.map(TenantStatus::as_str))
            .bind(now_millis())
            .execute(self.pool())
            .await?;
            Ok(())
        })
        .await?;
        drop(turn);
        self.tenant(id).await
    }

    // ---- documents -----------------------------------------------------

    /// One document of a tenant.
    pub async fn document(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> Result<Option<StoredDocument>, StoreError> {
        let _quota = self.quota().await;
        self.guarded(async {
            sqlx::query(
                "SELECT id, collection, revision, text, metadata, chunk_count, byte_size, \
                 vector_bytes, created_at, updated_at FROM documents WHERE tenant_id = $1 AND id = $2",
            )
            .bind(tenant.as_str())
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .map(|row| document_from_row(&row))
            .transpose()
        })
        .await
    }

    /// Up to `limit` documents of every tenant, ordered by tenant and id,
    /// after the `(tenant, id)` given: the pages the vector store's
    /// reconciliation walks.
    pub async fn documents_after(
        &self,
        after: Option<&(String, String)>,
        limit: u32,
    ) -> Result<Vec<(String, StoredDocument)>, StoreError> {
        let _quota = self.quota().await;
        self.guarded(async {
            let (tenant, id) = after.map_or(("", ""), |(t, i)| (t.as_str(), i.as_str()));
            sqlx::query(
                "SELECT tenant_id, id, collection, revision, text, metadata, chunk_count, byte_size, \
                 vector_bytes, created_at, updated_at FROM documents \
                 WHERE tenant_id > $1 OR (tenant_id = $1 AND id > $2) \
                 ORDER BY tenant_id, id LIMIT $3",
            )
            .bind(tenant)
            .bind(id)
            .bind(i64::from(limit))
            .fetch_all(self.pool())
            .await?
            .iter()
            .map(|row| Ok((row.try_get("tenant_id")?, document_from_row(row)?)))
            .collect()
        })
        .await
    }

    /// The current `(revision, chunk_count, vector_bytes)` of those of
    /// `ids` the tenant already has.
    pub async fn existing_revisions(
        &self,
        tenant: &TenantId,
        ids: &[String],
    ) -> Result<HashMap<String, (String, i64, i64)>, StoreError> {
        let _quota = self.quota().await;
        self.guarded(async {
            let mut found = HashMap::new();
            // One query per id keeps the SQL portable (no array binds in SQLite);
            // batches are bounded by ANALYZER_MAX_BATCH_DOCUMENTS.
            for id in ids {
                let row = sqlx::query(
                    "SELECT revision, chunk_count, vector_bytes FROM documents \
                     WHERE tenant_id = $1 AND id = $2",
                )
                .bind(tenant.as_str())
                .bind(id)
                .fetch_optional(self.pool())
                .await?;
                if let Some(row) = row {
                    found.insert(
                        id.clone(),
                        (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?),
                    );
                }
            }
            Ok(found)
        })
        .await
    }

    /// Insert or replace a batch of documents, all or nothing, and count the
    /// ingest in the tenant's usage. Each document's revision must have been
    /// recorded as pending ([`Db::record_pending`]); the revisions it
    /// replaces are recorded for removal in the same transaction and
    /// returned. When the tenant would then store more than `vector_budget`
    /// bytes of vectors and payload, nothing is written
    /// ([`StoreError::OverQuota`]); the check holds across tasks, as the
    /// tenant's row is locked first.
    pub async fn upsert_documents(
        &self,
        tenant: &TenantId,
        documents: &[StoredDocument],
        vector_budget: u64,
    ) -> Result<Vec<VectorRevision>, StoreError> {
        let written = self
            .writing(
                tenant,
                self.upsert_documents_tx(tenant, documents, vector_budget),
            )
            .await;
        if let Ok(superseded) = &written {
            // The superseded revisions are counted before the pending ones
            // are let go, so that the count never drops to zero between.
            self.unsettle(tenant, superseded.len());
            self.settle(tenant, documents.len());
        }
        written
    }

    async fn upsert_documents_tx(
        &self,
        tenant: &TenantId,
        documents: &[StoredDocument],
        vector_budget: u64,
    ) -> Result<Vec<VectorRevision>, StoreError> {
        let _quota = self.quota().await;
        self.guarded(async {
            let (_turn, mut tx) = self.begin_write().await?;
            // Lock the tenant's row before reading its total (a row lock on
            // PostgreSQL, the write lock on SQLite): concurrent ingests of one
            // tenant on any task then see each other's bytes, and each reads
            // the revision it replaces after the other has committed.
            bump_generation(&mut tx, tenant).await?;
            let mut chunks = 0;
            let mut superseded = Vec::new();
            for doc in documents {
                cleanups::commit_pending(&mut tx, tenant, &doc.id, &doc.revision).await?;
                superseded.extend(cleanups::supersede(&mut tx, tenant, &doc.id).await?);
                sqlx::query(
                    "INSERT INTO documents (tenant_id, id, collection, revision, text, metadata, \
                     chunk_count, byte_size, vector_bytes, created_at, updated_at) \
                     VALUES ($1, $2, $3, $10, $4, $5, $6, $7, $8, $9, $9) \
                     ON CONFLICT (tenant_id, id) DO UPDATE SET collection = excluded.collection, \
                     revision = excluded.revision, text = excluded.text, metadata = excluded.metadata, \
                     chunk_count = excluded.chunk_count, byte_size = excluded.byte_size, \
                     vector_bytes = excluded.vector_bytes, updated_at = excluded.updated_at",
                )
                .bind(tenant.as_str())
                .bind(&doc.id)
                .bind(&doc.collection)
                .bind(&doc.text)
                .bind(doc.metadata.to_string())
                .bind(doc.chunk_count)
                .bind(doc.byte_size)
                .bind(doc.vector_bytes)
                .bind(doc.updated_at)
                .bind(&doc.revision)
                .execute(&mut *tx)
                .await?;
                chunks += doc.chunk_count;
            }
            let stored = storage_totals(&mut tx, tenant).await?.vector_bytes;
            if u64::try_from(stored).unwrap_or(0) > vector_budget {
                tx.rollback().await?;
                return Err(StoreError::OverQuota {
                    stored,
                    budget: vector_budget,
                });
            }
            let ingested = i64::try_from(documents.len()).unwrap_or(i64::MAX);
            let hour = usage::current_hour();
            for (metric, value) in [
                (usage::metrics::DOCUMENTS_INGESTED, ingested),
                (usage::metrics::CHUNKS_INGESTED, chunks),
            ] {
                add_usage(&mut tx, tenant, metric, hour, value).await?;
            }
            tx.commit().await?;
            Ok(superseded)
        })
        .await
    }

    /// Delete one document, recording its revision's vectors for removal
    /// in the same transaction; `None` if the tenant has no such document.
    pub async fn delete_document(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> Result<Option<VectorRevision>, StoreError> {
        // Counted before the transaction can make the revision's vectors
        // stale, let go if it did not.
        self.unsettle(tenant, 1);
        let deleted = self.delete_document_tx(tenant, id).await;
        if !matches!(deleted, Ok(Some(_))) {
            self.settle(tenant, 1);
        }
        deleted
    }

    async fn delete_document_tx(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> Result<Option<VectorRevision>, StoreError> {
        self.writing(tenant, async {
            let _quota = self.quota().await;
            self.guarded(async {
                let (_turn, mut tx) = self.begin_write().await?;
                // The tenant's row first, as every write of its documents locks it.
                bump_generation(&mut tx, tenant).await?;
                let Some(old) = cleanups::supersede(&mut tx, tenant, id).await? else {
                    tx.rollback().await?;
                    return Ok(None);
                };
                sqlx::query("DELETE FROM documents WHERE tenant_id = $1 AND id = $2")
                    .bind(tenant.as_str())
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(Some(old))
            })
            .await
        })
        .await
    }

    /// Of the documents `ids`, the revision each has in the database now
    /// (a document without a row is absent): what a search checks its
    /// hits against, so that it shows only committed revisions.
    pub async fn current_revisions(
        &self,
        tenant: &TenantId,
        ids: &[&str],
    ) -> Result<HashMap<String, String>, StoreError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let _quota = self.quota().await;
        self.guarded(async {
            let placeholders: Vec<String> = (2..ids.len() + 2).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT id, revision FROM documents WHERE tenant_id = $1 AND id IN ({})",
                placeholders.join(", ")
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(tenant.as_str());
            for id in ids {
                query = query.bind(*id);
            }
            query
                .fetch_all(self.pool())
                .await?
                .iter()
                .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
                .collect()
        })
        .await
    }

    /// Mark the tenant's data as changed (after a change made outside a
    /// transaction of this store, such as removing replaced vectors).
    pub async fn bump_generation(&self, tenant: &TenantId) -> Result<(), StoreError> {
        self.writing(tenant, async {
            let _quota = self.quota().await;
            self.guarded(async {
                let (_turn, mut tx) = self.begin_write().await?;
                bump_generation(&mut tx, tenant).await?;
                tx.commit().await?;
                Ok(())
            })
            .await
        })
        .await
    }

    /// What a search needs from the store, in one round trip: the tenant's
    /// data generation and whether it has any document in `collection`.
    pub async fn search_context(
        &self,
        tenant: &TenantId,
        collection: &str,
    ) -> Result<SearchContext, StoreError> {
        let epoch = match self.contexts.as_ref().map(|c| c.get(tenant, collection)) {
            Some(Ok(known)) => return Ok(known),
            Some(Err(epoch)) => epoch,
            None => 0,
        };
        let read = match self.read_search_context(tenant, collection).await {
            Ok(read) => read,
            // While the database is unreachable, the context this task
            // read last stands in if it is recent enough (`guard`): cached
            // results stay reachable, and nothing is written meanwhile.
            Err(e) if guard::is_outage(&e) => {
                return self.fallback_context(tenant, collection).ok_or(e);
            }
            Err(e) => return Err(e),
        };
        if let Some(contexts) = &self.contexts {
            contexts.store(tenant, collection, epoch, read);
        }
        self.remember_context(tenant, collection, read);
        Ok(read)
    }

    async fn read_search_context(
        &self,
        tenant: &TenantId,
        collection: &str,
    ) -> Result<SearchContext, StoreError> {
        let _quota = self.quota().await;
        self.guarded(async {
            let row = sqlx::query(
                "SELECT data_generation, CAST(CASE WHEN EXISTS (SELECT 1 FROM documents \
                 WHERE tenant_id = $1 AND collection = $2) THEN 1 ELSE 0 END AS BIGINT), \
                 vector_journal FROM tenants WHERE id = $1",
            )
            .bind(tenant.as_str())
            .bind(collection)
            .fetch_optional(self.pool())
            .await?;
            Ok(match row {
                Some(row) => SearchContext {
                    generation: row.try_get(0)?,
                    collection_exists: row.try_get::<i64, _>(1)? == 1,
                    unsettled: row.try_get::<i64, _>(2)? > 0,
                },
                None => SearchContext {
                    generation: 0,
                    collection_exists: false,
                    unsettled: false,
                },
            })
        })
        .await
    }

    /// What a tenant has stored.
    pub async fn storage_totals(&self, tenant: &TenantId) -> Result<StorageTotals, StoreError> {
        let _quota = self.quota().await;
        self.guarded(async { storage_totals(&mut *self.pool().acquire().await?, tenant).await })
            .await
    }

    // ---- usage ---------------------------------------------------------

    /// Add a batch of `(tenant, metric) → delta` to the usage counters, in
    /// one transaction.
    pub async fn add_usage_batch(&self, batch: &usage::Pending) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.guarded(async {
            let (_turn, mut tx) = self.begin_write().await?;
            for ((tenant, metric, hour), value) in batch {
                add_usage(&mut tx, tenant, metric, *hour, *value).await?;
            }
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// Every tenant's ledger summed over hours `[from, to)`, and what each
    /// stores now. Tenants with no usage in the period are left out.
    pub async fn usage_report(&self, from: i64, to: i64) -> Result<Vec<LedgerRow>, StoreError> {
        let rows = self
            .guarded(async {
                Ok(sqlx::query(
                    "SELECT l.tenant_id, t.name, t.tier, l.metric, CAST(SUM(l.value) AS BIGINT), \
                    CAST(COALESCE((SELECT SUM(d.byte_size + d.vector_bytes) FROM documents d \
                                   WHERE d.tenant_id = l.tenant_id), 0) AS BIGINT) \
             FROM usage_ledger l JOIN tenants t ON t.id = l.tenant_id \
             WHERE l.hour >= $1 AND l.hour < $2 \
             GROUP BY l.tenant_id, t.name, t.tier, l.metric \
             ORDER BY t.name, l.tenant_id, l.metric",
                )
                .bind(from)
                .bind(to)
                .fetch_all(self.pool())
                .await?)
            })
            .await?;
        rows.iter()
            .map(|row| {
                let tier: String = row.try_get(2)?;
                Ok(LedgerRow {
                    tenant_id: row.try_get(0)?,
                    name: row.try_get(1)?,
                    tier: tier
                        .parse()
                        .map_err(|e| StoreError::Corrupt(format!("tier: {e}")))?,
                    metric: row.try_get(3)?,
                    value: row.try_get(4)?,
                    storage_bytes: row.try_get(5)?,
                })
            })
            .collect()
    }

    /// A tenant's usage counters.
    pub async fn usage(&self, tenant: &TenantId) -> Result<HashMap<String, i64>, StoreError> {
        let _quota = self.quota().await;
        self.guarded(async {
            let rows = sqlx::query("SELECT metric, value FROM usage_counters WHERE tenant_id = $1")
                .bind(tenant.as_str())
                .fetch_all(self.pool())
                .await?;
            rows.iter()
                .map(|row| Ok((row.try_get::<String, _>(0)?, row.try_get::<i64, _>(1)?)))
                .collect()
        })
        .await
    }
}

/// What a tenant stores, summed over its documents. Every column it reads
/// is in the `documents_storage` index, so the sum never reads a
/// document's text (a test holds SQLite's plan to that).
const STORAGE_TOTALS: &str = "SELECT CAST(COUNT(*) AS BIGINT), \
     CAST(COALESCE(SUM(chunk_count), 0) AS BIGINT), \
     CAST(COALESCE(SUM(byte_size), 0) AS BIGINT), \
     CAST(COALESCE(SUM(vector_bytes), 0) AS BIGINT) \
     FROM documents WHERE tenant_id = $1";

/// What the tenant stores, read on `conn` (a pooled connection, or a
/// transaction that sees its own writes).
async fn storage_totals(
    conn: &mut sqlx::AnyConnection,
    tenant: &TenantId,
) -> Result<StorageTotals, StoreError> {
    let row = sqlx::query(STORAGE_TOTALS)
        .bind(tenant.as_str())
        .fetch_one(&mut *conn)
        .await?;
    Ok(StorageTotals {
        documents: row.try_get(0)?,
        chunks: row.try_get(1)?,
        text_bytes: row.try_get(2)?,
        vector_bytes: row.try_get(3)?,
    })
}

async fn bump_generation(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    tenant: &TenantId,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE tenants SET data_generation = data_generation + 1 WHERE id = $1")
        .bind(tenant.as_str())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Add `value` to the tenant's lifetime total and to its `hour` in the
/// ledger, inside the caller's transaction.
async fn add_usage(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    tenant: &TenantId,
    metric: &str,
    hour: i64,
    value: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO usage_counters (tenant_id, metric, value) VALUES ($1, $2, $3) \
         ON CONFLICT (tenant_id, metric) DO UPDATE SET value = usage_counters.value + excluded.value",
    )
    .bind(tenant.as_str())
    .bind(metric)
    .bind(value)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO usage_ledger (tenant_id, hour, metric, value) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (tenant_id, hour, metric) DO UPDATE SET value = usage_ledger.value + excluded.value",
    )
    .bind(tenant.as_str())
    .bind(hour)
    .bind(metric)
    .bind(value)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}?mode=rwc", path.display())
}

fn tenant_from_row(row: &AnyRow) -> Result<Tenant, StoreError> {
    let id: String = row.try_get("id")?;
    let tier: String = row.try_get("tier")?;
    let status: String = row.try_get("status")?;
    Ok(Tenant {
        id: TenantId::from_str(&id).map_err(|e| StoreError::Corrupt(e.0))?,
        name: row.try_get("name")?,
        tier: tier
            .parse()
            .map_err(|e: crate::tenants::InvalidValue| StoreError::Corrupt(e.0))?,
        status: status
            .parse()
            .map_err(|e: crate::tenants::InvalidValue| StoreError::Corrupt(e.0))?,
        created_at: rfc3339(row.try_get("created_at")?),
    })
}

fn document_from_row(row: &AnyRow) -> Result<StoredDocument, StoreError> {
    let metadata: String = row.try_get("metadata")?;
    Ok(StoredDocument {
        id: row.try_get("id")?,
        collection: row.try_get("collection")?,
        revision: row.try_get("revision")?,
        text: row.try_get("text")?,
        metadata: serde_json::from_str(&metadata)
            .map_err(|e| StoreError::Corrupt(format!("document metadata: {e}")))?,
        chunk_count: row.try_get("chunk_count")?,
        byte_size: row.try_get("byte_size")?,
        vector_bytes: row.try_get("vector_bytes")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::lanes::{Seat, seated};

    /// The configuration of a SQLite database in `dir`.
    fn sqlite_in(dir: &Path) -> Config {
        let env: HashMap<String, String> = [(
            "ANALYZER_DATA_DIR".to_owned(),
            dir.to_str().expect("utf-8 path").to_owned(),
        )]
        .into_iter()
        .collect();
        Config::load(&env).expect("config")
    }

    /// A migrated SQLite database in `dir` with one premium tenant.
    async fn sqlite_with_tenant(dir: &Path) -> (Db, TenantId) {
        let db = Db::connect(&sqlite_in(dir)).await.expect("connect");
        db.migrate().await.expect("migrate");
        let tenant = TenantId::generate();
        db.insert_tenant(&tenant, "acme", Tier::Premium)
            .await
            .expect("tenant");
        (db, tenant)
    }

    /// A one-chunk document of four bytes of text.
    fn stored(id: &str, revision: &str) -> StoredDocument {
        StoredDocument {
            id: id.to_owned(),
            collection: "default".into(),
            revision: revision.to_owned(),
            text: "text".into(),
            metadata: serde_json::json!({}),
            chunk_count: 1,
            byte_size: 4,
            vector_bytes: 10,
            created_at: 0,
            updated_at: 0,
        }
    }

    /// Store `doc` as an ingest does: its revision recorded as pending
    /// first. Answers the revisions it superseded.
    async fn ingest(
        db: &Db,
        tenant: &TenantId,
        doc: StoredDocument,
        budget: u64,
    ) -> Result<Vec<VectorRevision>, StoreError> {
        db.record_pending(tenant, &[vectors_of(&doc)]).await?;
        db.upsert_documents(tenant, &[doc], budget).await
    }

    fn vectors_of(doc: &StoredDocument) -> VectorRevision {
        VectorRevision {
            document_id: doc.id.clone(),
            revision: doc.revision.clone(),
            chunk_count: doc.chunk_count,
        }
    }

    #[tokio::test]
    async fn a_claimed_revision_can_never_commit_and_a_committed_one_cannot_be_claimed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (db, tenant) = sqlite_with_tenant(dir.path()).await;
        let given_up = stored("a", "r1");
        db.record_pending(&tenant, &[vectors_of(&given_up)])
            .await
            .expect("record");
        let claimed = db
            .claim_pending(&tenant, &[vectors_of(&given_up)])
            .await
            .expect("claim");
        assert_eq!(claimed, [vectors_of(&given_up)]);
        assert!(matches!(
            db.upsert_documents(&tenant, &[given_up], u64::MAX).await,
            Err(StoreError::Abandoned)
        ));
        assert!(db.document(&tenant, "a").await.expect("read").is_none());

        let kept = stored("b", "r1");
        ingest(&db, &tenant, kept.clone(), u64::MAX)
            .await
            .expect("ingest");
        assert!(
            db.claim_pending(&tenant, &[vectors_of(&kept)])
                .await
                .expect("claim")
                .is_empty(),
            "a committed revision is not pending any more"
        );
        assert!(db.document(&tenant, "b").await.expect("read").is_some());
        db.close().await;
    }

    #[tokio::test]
    async fn replaced_and_deleted_revisions_are_recorded_for_removal() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (db, tenant) = sqlite_with_tenant(dir.path()).await;
        let first = stored("a", "r1");
        assert!(
            ingest(&db, &tenant, first.clone(), u64::MAX)
                .await
                .expect("ingest")
                .is_empty()
        );
        let second = stored("a", "r2");
        let superseded = ingest(&db, &tenant, second.clone(), u64::MAX)
            .await
            .expect("replace");
        assert_eq!(superseded, [vectors_of(&first)]);
        let deleted = db.delete_document(&tenant, "a").await.expect("delete");
        assert_eq!(deleted, Some(vectors_of(&second)));
        assert_eq!(db.delete_document(&tenant, "a").await.expect("again"), None);

        let later = now_millis() + 1;
        let due = db.due_cleanups(later, later, 10).await.expect("due");
        let due: Vec<_> = due
            .iter()
            .map(|d| (d.vectors.revision.as_str(), d.pending))
            .collect();
        assert_eq!(due, [("r1", false), ("r2", false)]);
        db.finish_cleanups(&tenant, &[vectors_of(&first), vectors_of(&second)])
            .await
            .expect("finish");
        assert!(
            db.due_cleanups(later, later, 10)
                .await
                .expect("due")
                .is_empty()
        );
        db.close().await;
    }

    /// A context that found no journal entry (which the SQLite server's
    /// count overrides).
    const SETTLED: SearchContext = SearchContext {
        generation: 0,
        collection_exists: true,
        unsettled: false,
    };

    #[tokio::test]
    async fn a_search_skips_its_check_only_if_nothing_was_unsettled_before_or_during_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (db, tenant) = sqlite_with_tenant(dir.path()).await;
        let db = db.with_context_cache(dir.path()).expect("the only server");
        let first = db.settled_mark(&tenant, &SETTLED);
        // Without the server's count (the CLI, or PostgreSQL), the context decides.
        let other_dir = tempfile::tempdir().expect("temp dir");
        let (plain, _) = sqlite_with_tenant(other_dir.path()).await;
        assert!(plain.stayed_settled(&tenant, plain.settled_mark(&tenant, &SETTLED)));
        let unsettled = SearchContext {
            unsettled: true,
            ..SETTLED
        };
        assert!(!plain.stayed_settled(&tenant, plain.settled_mark(&tenant, &unsettled)));
        plain.close().await;
        assert!(db.stayed_settled(&tenant, first), "nothing written yet");

        // An ingest: unsettled from its pending record to its commit.
        let doc = stored("a", "r1");
        db.record_pending(&tenant, &[vectors_of(&doc)])
            .await
            .expect("record");
        assert!(!db.stayed_settled(&tenant, first));
        assert!(!db.stayed_settled(&tenant, db.settled_mark(&tenant, &SETTLED)));
        db.upsert_documents(&tenant, std::slice::from_ref(&doc), u64::MAX)
            .await
            .expect("commit");
        assert!(
            !db.stayed_settled(&tenant, first),
            "it began during the search"
        );
        let settled = db.settled_mark(&tenant, &SETTLED);
        assert!(db.stayed_settled(&tenant, settled));

        // A delete: unsettled until its vectors are gone and forgotten.
        let removed = db
            .delete_document(&tenant, "a")
            .await
            .expect("delete")
            .expect("it was there");
        assert!(!db.stayed_settled(&tenant, db.settled_mark(&tenant, &SETTLED)));
        db.finish_cleanups(&tenant, &[removed])
            .await
            .expect("finish");
        assert!(db.stayed_settled(&tenant, db.settled_mark(&tenant, &SETTLED)));
        assert!(!db.stayed_settled(&tenant, settled));
        // Deleting what is not there leaves nothing unsettled.
        assert_eq!(
            db.delete_document(&tenant, "a").await.expect("delete"),
            None
        );
        assert!(db.stayed_settled(&tenant, db.settled_mark(&tenant, &SETTLED)));

        // A restart counts what the journal holds.
        db.record_pending(&tenant, &[vectors_of(&stored("b", "r1"))])
            .await
            .expect("record");
        db.close().await;
        drop(db);
        let again = Db::connect(&sqlite_in(dir.path()))
            .await
            .expect("connect")
            .with_context_cache(dir.path())
            .expect("the only server");
        again.load_unsettled().await.expect("load");
        assert!(!again.stayed_settled(&tenant, again.settled_mark(&tenant, &SETTLED)));
        again.close().await;
    }

    #[tokio::test]
    async fn the_tenants_count_of_journal_entries_follows_every_change() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (db, tenant) = sqlite_with_tenant(dir.path()).await;
        let unsettled = async || {
            db.read_search_context(&tenant, "default")
                .await
                .expect("read")
                .unsettled
        };
        assert!(!unsettled().await);
        let first = stored("a", "r1");
        db.record_pending(&tenant, &[vectors_of(&first)])
            .await
            .expect("record");
        assert!(unsettled().await, "pending");
        db.upsert_documents(&tenant, std::slice::from_ref(&first), u64::MAX)
            .await
            .expect("commit");
        assert!(!unsettled().await, "committed");
        let old = ingest(&db, &tenant, stored("a", "r2"), u64::MAX)
            .await
            .expect("replace");
        assert!(unsettled().await, "the replaced revision is to be removed");
        db.finish_cleanups(&tenant, &old).await.expect("finish");
        assert!(!unsettled().await, "removed");
        let gone = db
            .delete_document(&tenant, "a")
            .await
            .expect("delete")
            .expect("it was there");
        assert!(unsettled().await, "the deleted revision is to be removed");
        let given_up = stored("b", "r1");
        db.record_pending(&tenant, &[vectors_of(&given_up)])
            .await
            .expect("record");
        let claimed = db
            .claim_pending(&tenant, &[vectors_of(&given_up)])
            .await
            .expect("claim");
        db.finish_cleanups(&tenant, &claimed).await.expect("finish");
        db.finish_cleanups(&tenant, std::slice::from_ref(&gone))
            .await
            .expect("finish");
        db.finish_cleanups(&tenant, &[gone])
            .await
            .expect("twice is once");
        assert!(!unsettled().await, "all removed");
        db.close().await;
    }

    #[tokio::test]
    async fn a_young_pending_revision_is_not_due() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (db, tenant) = sqlite_with_tenant(dir.path()).await;
        let doc = stored("a", "r1");
        db.record_pending(&tenant, &[vectors_of(&doc)])
            .await
            .expect("record");
        let now = now_millis();
        assert!(
            db.due_cleanups(now + 1, now - 60_000, 10)
                .await
                .expect("due")
                .is_empty()
        );
        let due = db.due_cleanups(now + 1, now + 1, 10).await.expect("due");
        assert_eq!(due.len(), 1);
        assert!(due[0].pending);
        assert_eq!(due[0].tenant, tenant);
        db.close().await;
    }

    #[tokio::test]
    async fn current_revisions_name_only_the_tenants_stored_documents() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (db, tenant) = sqlite_with_tenant(dir.path()).await;
        ingest(&db, &tenant, stored("a", "r1"), u64::MAX)
            .await
            .expect("ingest");
        let other = TenantId::generate();
        db.insert_tenant(&other, "other", Tier::Standard)
            .await
            .expect("tenant");
        ingest(&db, &other, stored("b", "r9"), u64::MAX)
            .await
            .expect("ingest");
        let found = db
            .current_revisions(&tenant, &["a", "b", "missing"])
            .await
            .expect("read");
        assert_eq!(found.len(), 1);
        assert_eq!(found["a"], "r1");
        db.close().await;
    }

    #[test]
    fn a_context_read_before_a_write_is_never_kept_after_it() {
        let contexts = Contexts::default();
        let tenant = TenantId::generate();
        let old = SearchContext {
            generation: 1,
            collection_exists: true,
            unsettled: false,
        };
        // A read starts (epoch 0), a write lands, the read ends: not kept.
        let epoch = contexts.get(&tenant, "default").expect_err("nothing yet");
        contexts.invalidate(&tenant);
        contexts.store(&tenant, "default", epoch, old);
        let epoch = contexts
            .get(&tenant, "default")
            .expect_err("the stale read was dropped");
        // A read under the current epoch is kept until the next write.
        let new = SearchContext {
            generation: 2,
            collection_exists: true,
            unsettled: false,
        };
        contexts.store(&tenant, "default", epoch, new);
        assert_eq!(contexts.get(&tenant, "default"), Ok(new));
        contexts.invalidate(&tenant);
        assert!(contexts.get(&tenant, "default").is_err());
        // Missing collections are not kept (their names are the caller's).
        let epoch = contexts.get(&tenant, "nope").expect_err("absent");
        contexts.store(
            &tenant,
            "nope",
            epoch,
            SearchContext {
                generation: 2,
                collection_exists: false,
                unsettled: false,
            },
        );
        assert!(contexts.get(&tenant, "nope").is_err());
    }

    #[tokio::test]
    async fn an_in_memory_context_follows_every_write() {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = sqlite_in(dir.path());
        let db = Db::connect(&config)
            .await
            .expect("connect")
            .with_context_cache(dir.path())
            .expect("the only server");
        assert!(
            Db::connect(&config)
                .await
                .expect("connect")
                .with_context_cache(dir.path())
                .is_err(),
            "a second server on the same data dir is refused"
        );
        db.migrate().await.expect("migrate");
        let tenant = TenantId::generate();
        db.insert_tenant(&tenant, "acme", Tier::Premium)
            .await
            .expect("tenant");
        let doc = |id: &str| stored(id, "r1");
        ingest(&db, &tenant, doc("a"), u64::MAX)
            .await
            .expect("ingest");
        let first = db.search_context(&tenant, "default").await.expect("read");
        assert!(first.collection_exists);
        assert_eq!(
            db.search_context(&tenant, "default").await.ok(),
            Some(first)
        );
        ingest(&db, &tenant, doc("b"), u64::MAX)
            .await
            .expect("ingest");
        let second = db.search_context(&tenant, "default").await.expect("read");
        assert!(second.generation > first.generation);
        db.bump_generation(&tenant).await.expect("bump");
        let third = db.search_context(&tenant, "default").await.expect("read");
        assert!(third.generation > second.generation);
        assert!(
            db.delete_document(&tenant, "a")
                .await
                .expect("delete")
                .is_some()
        );
        let fourth = db.search_context(&tenant, "default").await.expect("read");
        assert!(fourth.generation > third.generation);
        db.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writers_on_sqlite_all_land() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (db, tenant) = sqlite_with_tenant(dir.path()).await;
        let before = db.search_context(&tenant, "default").await.expect("read");
        // Far more writers than connections, all at once: ingests of new
        // documents, ingests replacing one document, generation bumps.
        let writes = (0..300).map(|i| {
            let (db, tenant) = (db.clone(), tenant.clone());
            tokio::spawn(async move {
                let id = if i % 3 == 0 {
                    "shared".to_owned()
                } else {
                    format!("d{i}")
                };
                if i % 10 == 9 {
                    return db.bump_generation(&tenant).await;
                }
                let doc = stored(&id, &format!("r{i}"));
                ingest(&db, &tenant, doc, u64::MAX).await.map(drop)
            })
        });
        for write in futures::future::join_all(writes).await {
            write.expect("task").expect("every write lands");
        }
        let after = db.search_context(&tenant, "default").await.expect("read");
        assert_eq!(
            after.generation - before.generation,
            300,
            "one bump per write"
        );
        let totals = db.storage_totals(&tenant).await.expect("totals");
        // 30 bumps, 90 writes of "shared", 180 other documents.
        assert_eq!(totals.documents, 181);
        assert_eq!(
            db.usage(&tenant).await.expect("usage")[usage::metrics::DOCUMENTS_INGESTED],
            270
        );
        db.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writers_wait_for_their_turn_without_a_connection() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (db, tenant) = sqlite_with_tenant(dir.path()).await;
        let turn = db.write_turn().await.expect("SQLite writers take turns");
        // Four times the pool's connections queue behind the held turn.
        let writers = 4 * db.pool.options().get_max_connections();
        let writes: Vec<_> = (0..writers)
            .map(|i| {
                let (db, tenant) = (db.clone(), tenant.clone());
                tokio::spawn(async move {
                    ingest(&db, &tenant, stored(&format!("d{i}"), "r1"), u64::MAX).await
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            writes.iter().all(|w| !w.is_finished()),
            "no write lands out of turn"
        );
        assert_eq!(
            db.pool_stats()[0].in_use,
            0,
            "waiting writers hold no connection"
        );
        // So readers are served meanwhile.
        assert_eq!(db.storage_totals(&tenant).await.expect("read").documents, 0);
        drop(turn);
        for write in futures::future::join_all(writes).await {
            write.expect("task").expect("every write lands");
        }
        assert_eq!(
            db.storage_totals(&tenant).await.expect("read").documents,
            i64::from(writers)
        );
        db.close().await;
    }

    #[tokio::test]
    async fn storage_totals_read_only_the_covering_index() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Db::connect(&sqlite_in(dir.path())).await.expect("connect");
        db.migrate().await.expect("migrate");
        let plan: Vec<String> = sqlx::query(sqlx::AssertSqlSafe(format!(
            "EXPLAIN QUERY PLAN {STORAGE_TOTALS}"
        )))
        .bind("t")
        .fetch_all(&db.pool)
        .await
        .expect("plan")
        .iter()
        .map(|row| row.try_get::<String, _>(3).expect("detail"))
        .collect();
        assert_eq!(
            plan,
            ["SEARCH documents USING COVERING INDEX documents_storage (tenant_id=?)"],
            "the sum must not read documents' rows (their text)"
        );
        db.close().await;
    }

    #[tokio::test]
    async fn an_older_release_starts_on_a_schema_a_newer_one_migrated() {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = sqlite_in(dir.path());
        let db = Db::connect(&config).await.expect("connect");
        db.migrate().await.expect("migrate");
        // A migration this binary does not know, as a later release leaves.
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (99991231000001, 'from the future', TRUE, X'00', 1)",
        )
        .execute(&db.pool)
        .await
        .expect("record a newer migration");
        db.migrate()
            .await
            .expect("the older release still starts (rollback)");
        db.close().await;
    }

    #[tokio::test]
    async fn on_sqlite_standard_requests_use_their_own_pool() {
        crate::lanes::start();
        let dir = tempfile::tempdir().expect("temp dir");
        let env: HashMap<String, String> = [
            (
                "ANALYZER_DATA_DIR",
                dir.path().to_str().expect("utf-8 path"),
            ),
            ("ANALYZER_DB_MAX_CONNECTIONS", "2"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let config = Config::load(&env).expect("config");
        let db = Db::connect(&config)
            .await
            .expect("connect")
            .with_standard_pool(&config)
            .await
            .expect("standard pool");
        db.migrate().await.expect("migrate");
        let standard = db.standard.clone().expect("a standard pool on SQLite");
        assert_eq!(standard.size(), 2, "opened whole, at start");
        assert_eq!(db.pool.size(), 2, "opened whole, at start");
        let stats = db.pool_stats();
        assert_eq!(stats.len(), 2);
        // Idle and in use move as connections come back; their sum is the pool.
        assert_eq!(
            (stats[1].name, stats[1].in_use + stats[1].idle, stats[1].max),
            ("standard", 2, 2)
        );

        let seat = |tier| Seat {
            tenant: TenantId::generate(),
            tier,
            route: std::sync::Arc::from("/test"),
            trace: None,
        };
        let picks_standard =
            |db: Db| async move { std::ptr::eq(db.pool(), db.standard.as_ref().expect("pool")) };
        assert!(seated(seat(Tier::Standard), picks_standard(db.clone())).await);
        assert!(!seated(seat(Tier::Premium), picks_standard(db.clone())).await);
        assert!(!picks_standard(db.clone()).await, "work outside a request");

        // Both pools see one database.
        let id = TenantId::generate();
        seated(seat(Tier::Standard), async {
            db.insert_tenant(&id, "acme", Tier::Standard).await
        })
        .await
        .expect("created through the standard pool");
        let read = db.tenant(&id).await.expect("read through the main pool");
        assert_eq!(read.map(|t| t.name), Some("acme".to_owned()));
        db.close().await;
    }
}
