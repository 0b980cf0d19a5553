//! A database outage costs milliseconds, not seconds: on PostgreSQL every
//! call has a deadline and goes through a circuit breaker, so that while
//! the server is unreachable the calls that need it fail at once (503 with
//! `Retry-After`), and the searches whose result is cached keep their
//! answers from the last data generation this task read.
//!
//! The embedded SQLite file has neither: it is a local file, whose calls
//! wait for their turn to write, not for a network.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::{Db, SearchContext, StoreError};
use analyzer_domain::tenants::TenantId;
use analyzer_runtime::breaker::{Breaker, BreakerConfig};

/// The database's timeouts and breaker (`ANALYZER_DB_*`).
#[derive(Debug, Clone, Copy)]
pub struct DbGuardConfig {
    /// How long a call waits for a pooled connection.
    pub acquire_timeout: Duration,
    /// Consecutive failures that open the breaker, how long it stays open,
    /// and the deadline of each call.
    pub breaker: BreakerConfig,
}

impl Default for DbGuardConfig {
    /// The defaults of `ANALYZER_DB_ACQUIRE_TIMEOUT_MS` (2000),
    /// `ANALYZER_DB_QUERY_TIMEOUT_MS` (5000),
    /// `ANALYZER_DB_BREAKER_FAILURES` (3) and
    /// `ANALYZER_DB_BREAKER_OPEN_SECONDS` (5).
    fn default() -> Self {
        Self {
            acquire_timeout: Duration::from_millis(2000),
            breaker: BreakerConfig {
                failure_threshold: 3,
                open_for: Duration::from_secs(5),
                call_timeout: Duration::from_millis(5000),
            },
        }
    }
}

/// How much older than the database's last answer a search context may
/// be and still stand in while the database is unreachable: such a
/// context misses at most the writes acknowledged in that time before the
/// outage (docs/operations.md, "When a backend is slow or down").
pub const FALLBACK_CONTEXT_AGE: Duration = Duration::from_secs(2);

/// How long what was read last (a search context, a tenant record) may
/// stand in at all: when only this task has lost the database, other tasks
/// may go on writing, and what it serves must not stay behind for longer.
pub const OUTAGE_FALLBACK_LIMIT: Duration = Duration::from_secs(60);

/// Most contexts kept for a fallback.
const MAX_FALLBACK_CONTEXTS: usize = 100_000;

/// Each tenant's last search context read per collection, with when.
type KnownContexts = HashMap<TenantId, HashMap<String, (SearchContext, u64)>>;

/// The breaker and what was last read, shared by every clone of a [`Db`].
#[derive(Debug)]
pub(super) struct Guard {
    breaker: Breaker,
    deadline: Duration,
    /// When this guard was made: the origin of the times below.
    created: Instant,
    /// When the database last answered a call, in milliseconds.
    last_answer: AtomicU64,
    /// The last search context read for each tenant and collection, and
    /// when (updated in place: a search allocates nothing here).
    contexts: Mutex<KnownContexts>,
    /// How many contexts `contexts` holds.
    held: std::sync::atomic::AtomicUsize,
}

impl Guard {
    pub(super) fn new(config: DbGuardConfig) -> Arc<Self> {
        Arc::new(Self {
            breaker: Breaker::new(config.breaker).with_messages(
                analyzer_telemetry::messages::DB_BREAKER_OPENED,
                analyzer_telemetry::messages::DB_BREAKER_CLOSED,
            ),
            deadline: config.breaker.call_timeout,
            created: Instant::now(),
            last_answer: AtomicU64::new(0),
            contexts: Mutex::new(HashMap::new()),
            held: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// Milliseconds since this guard was made, on tokio's clock.
    fn millis(&self) -> u64 {
        u64::try_from(self.created.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn contexts(&self) -> std::sync::MutexGuard<'_, KnownContexts> {
        analyzer_runtime::locked(&self.contexts)
    }
}

/// Whether an error says the database could not be reached or did not
/// answer (as opposed to answering with an error).
pub(super) fn is_outage(e: &StoreError) -> bool {
    match e {
        StoreError::Unavailable { .. } | StoreError::TimedOut(_) => true,
        StoreError::Database(e) => match e {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => true,
            // Connection exceptions (08…) and operator intervention (57…:
            // the server shutting down).
            sqlx::Error::Database(db) => db
                .code()
                .is_some_and(|code| code.starts_with("08") || code.starts_with("57")),
            _ => false,
        },
        _ => false,
    }
}

impl Db {
    /// Run one call under the breaker and its deadline (PostgreSQL); as it
    /// is on SQLite.
    pub(super) async fn guarded<T>(
        &self,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let Some(guard) = &self.guard else {
            return call.await;
        };
        let ticket = guard
            .breaker
            .acquire()
            .map_err(|retry_after| StoreError::Unavailable { retry_after })?;
        let outcome = match tokio::time::timeout(guard.deadline, call).await {
            Ok(outcome) => outcome,
            Err(_) => Err(StoreError::TimedOut(guard.deadline)),
        };
        let reached = !outcome.as_ref().is_err_and(is_outage);
        if reached {
            guard.last_answer.store(guard.millis(), Ordering::Relaxed);
        }
        guard.breaker.record(ticket, reached);
        outcome
    }

    /// The breaker's state (`closed`, `half_open`, `open`), on PostgreSQL.
    pub fn breaker_state(&self) -> Option<&'static str> {
        self.guard.as_ref().map(|g| g.breaker.state_name())
    }

    /// Keep a context just read, for [`Db::fallback_context`].
    pub(super) fn remember_context(
        &self,
        tenant: &TenantId,
        collection: &str,
        context: SearchContext,
    ) {
        let Some(guard) = &self.guard else {
            return;
        };
        let now = guard.millis();
        let mut contexts = guard.contexts();
        if let Some(known) = contexts.get_mut(tenant).and_then(|t| t.get_mut(collection)) {
            *known = (context, now);
            return;
        }
        if guard.held.load(Ordering::Relaxed) >= MAX_FALLBACK_CONTEXTS {
            contexts.clear();
            guard.held.store(0, Ordering::Relaxed);
        }
        contexts
            .entry(tenant.clone())
            .or_default()
            .insert(collection.to_owned(), (context, now));
        guard.held.fetch_add(1, Ordering::Relaxed);
    }

    /// While the database is unreachable: the context last read for this
    /// tenant and collection, if it was read at most
    /// [`FALLBACK_CONTEXT_AGE`] before the database's last answer and at
    /// most [`OUTAGE_FALLBACK_LIMIT`] ago.
    pub(super) fn fallback_context(
        &self,
        tenant: &TenantId,
        collection: &str,
    ) -> Option<SearchContext> {
        let guard = self.guard.as_ref()?;
        let last_answer = guard.last_answer.load(Ordering::Relaxed);
        let (context, read_at) = *guard.contexts().get(tenant)?.get(collection)?;
        let before_answer = Duration::from_millis(last_answer.saturating_sub(read_at));
        let age = Duration::from_millis(guard.millis().saturating_sub(read_at));
        (before_answer <= FALLBACK_CONTEXT_AGE && age <= OUTAGE_FALLBACK_LIMIT).then_some(context)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> DbGuardConfig {
        DbGuardConfig {
            acquire_timeout: Duration::from_millis(100),
            breaker: BreakerConfig {
                failure_threshold: 2,
                open_for: Duration::from_secs(5),
                call_timeout: Duration::from_millis(100),
            },
        }
    }

    #[test]
    fn only_failures_to_reach_the_database_count_as_an_outage() {
        assert!(is_outage(&StoreError::Database(sqlx::Error::PoolTimedOut)));
        assert!(is_outage(&StoreError::TimedOut(Duration::from_secs(1))));
        assert!(!is_outage(&StoreError::Database(sqlx::Error::RowNotFound)));
        assert!(!is_outage(&StoreError::Abandoned));
        assert!(!is_outage(&StoreError::Corrupt("x".into())));
    }

    #[tokio::test(start_paused = true)]
    async fn calls_that_hang_open_the_breaker_and_then_fail_at_once() {
        let db = Db::unreachable_for_tests(config());
        for _ in 0..2 {
            let hung = db
                .guarded(std::future::pending::<Result<(), StoreError>>())
                .await;
            assert!(matches!(hung, Err(StoreError::TimedOut(_))));
        }
        let started = Instant::now();
        let refused = db.guarded(async { Ok(()) }).await;
        assert!(
            matches!(refused, Err(StoreError::Unavailable { retry_after }) if retry_after > Duration::from_secs(4))
        );
        assert_eq!(started.elapsed(), Duration::ZERO);
        assert_eq!(db.breaker_state(), Some("open"));
        // After the open window one probe goes through; its success closes it.
        tokio::time::advance(Duration::from_secs(5)).await;
        db.guarded(async { Ok(()) }).await.expect("the probe");
        assert_eq!(db.breaker_state(), Some("closed"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_context_stands_in_only_if_read_just_before_the_last_answer() {
        let db = Db::unreachable_for_tests(config());
        let tenant = TenantId::generate();
        let context = SearchContext {
            generation: 7,
            collection_exists: true,
            unsettled: false,
        };
        tokio::time::advance(Duration::from_secs(1)).await;
        db.remember_context(&tenant, "default", context);
        db.guarded(async { Ok(()) }).await.expect("an answer");
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(db.fallback_context(&tenant, "default"), Some(context));
        assert_eq!(db.fallback_context(&tenant, "other"), None);
        // Not for longer than the limit, however long the outage.
        tokio::time::advance(Duration::from_secs(31)).await;
        assert_eq!(db.fallback_context(&tenant, "default"), None);
        db.remember_context(&tenant, "default", context);
        // The database answered well after that read: the read is too old.
        tokio::time::advance(Duration::from_secs(3)).await;
        db.guarded(async { Ok(()) }).await.expect("an answer");
        assert_eq!(db.fallback_context(&tenant, "default"), None);
    }
}
