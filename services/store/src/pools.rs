//! Connecting: the pools (one per tier on SQLite in the server), the
//! writers' turns, the tenant's connection gate, migrations and health.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use analyzer_domain::tenants::{TenantId, Tier};
use analyzer_runtime::lanes;
use secrecy::ExposeSecret;
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Connection as _};

use crate::{Backend, Db, PoolStats, StoreConfig, StoreError, gate, guard, migrator, sqlite_url};

/// The database URL and its kind: `DATABASE_URL`, or the SQLite file in
/// the data directory.
pub(crate) fn target(config: &StoreConfig) -> (String, Backend) {
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
pub(crate) const BUSY_TIMEOUT: &str = "PRAGMA busy_timeout = 5000";

pub(crate) fn pool_options(config: &StoreConfig, backend: Backend) -> AnyPoolOptions {
    let options = AnyPoolOptions::new().max_connections(config.max_connections);
    if backend != Backend::Sqlite {
        return options.acquire_timeout(config.guard.acquire_timeout);
    }
    let options = options.acquire_timeout(Duration::from_secs(5));
    // Every connection opened with the pool, by the caller's thread, and
    // kept: each is a thread with the priority of the one that opened it
    // (see `Db::with_standard_pool`), and local connections never go stale.
    options
        .min_connections(config.max_connections)
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
    pub async fn connect(config: &StoreConfig) -> Result<Self, StoreError> {
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
            guard: (backend == Backend::Postgres).then(|| guard::Guard::new(config.guard)),
            backend,
            notice: Arc::default(),
        })
    }

    /// A PostgreSQL handle whose server is never reached, for the guard's
    /// unit tests.
    #[cfg(test)]
    pub(crate) fn unreachable_for_tests(config: crate::DbGuardConfig) -> Self {
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
            notice: Arc::default(),
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
        let file = crate::lock_data_dir(data_dir)?.ok_or_else(|| {
            std::io::Error::other(format!(
                "another `analyzer serve` uses this data dir ({} is locked); \
                 one server per SQLite database",
                crate::data_dir_lock_path(data_dir).display()
            ))
        })?;
        self._serving = Some(Arc::new(file));
        self.contexts = Some(Arc::default());
        self.unsettled = Some(Arc::default());
        Ok(self)
    }

    /// Run a write of the tenant's documents or generation, then (whatever
    /// its outcome) drop the tenant's in-memory search contexts and tell
    /// the write notice, before the caller acknowledges the write.
    pub(crate) async fn writing<T>(
        &self,
        tenant: &TenantId,
        write: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let result = write.await;
        if let Some(contexts) = &self.contexts {
            contexts.invalidate(tenant);
        }
        if let Some(notice) = self.notice.get() {
            notice.written(tenant).await;
        }
        result
    }

    /// For the server on SQLite: a second pool, of the same size, for
    /// standard-tier requests. A SQLite connection is a thread that runs
    /// the queries, and a thread runs at the priority it was created with;
    /// these are opened on the standard runtime (see [`analyzer_runtime::lanes`]) so
    /// that a standard tenant's queries run at the standard priority, and
    /// the main pool's are opened here, at the server's. On PostgreSQL
    /// the queries run in the server, and one pool serves both tiers.
    pub async fn with_standard_pool(mut self, config: &StoreConfig) -> Result<Self, StoreError> {
        if self.backend != Backend::Sqlite {
            return Ok(self);
        }
        let (url, backend) = target(config);
        let options = pool_options(config, backend);
        let opened = lanes::handle(Tier::Standard, async move { options.connect(&url).await })
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
    pub(crate) fn pool(&self) -> &AnyPool {
        match (&self.standard, lanes::tier()) {
            (Some(standard), Some(Tier::Standard)) => standard,
            _ => &self.pool,
        }
    }

    /// A permit for one call of the tenant being served against its share
    /// of the pool (see [`gate::DbGate`]); bursting is allowed
    /// while the pool has idle connections or room to open one.
    pub(crate) async fn quota(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        gate::db_permit(|| {
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
    pub(crate) async fn write_turn(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match &self.writers {
            Some(writers) => Some(writers.lock().await),
            None => None,
        }
    }

    /// A write transaction, begun in this process's turn (taken first, so
    /// that a writer waits for its turn without holding a connection).
    pub(crate) async fn begin_write(
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
}
