//! Each tenant's share of this task's database pool, and the gate of the
//! tenant a task is serving: every call of [`crate::Db`] made inside
//! [`with_db_gate`] holds one of its permits. The limiter
//! (`analyzer::limits`) sizes each tenant's gate from its tier.

use std::future::Future;
use std::sync::Arc;

/// A tenant's share of this task's database pool: `db_connections`
/// connections at any time, and up to `db_connections_burst` more while the
/// pool has spare ones. A tenant's database calls beyond that wait for its
/// own connections to come back, so a tenant flooding the service cannot
/// take the pool from the others.
#[derive(Debug)]
pub struct DbGate {
    base: Arc<tokio::sync::Semaphore>,
    burst: Arc<tokio::sync::Semaphore>,
    size: u32,
}

impl DbGate {
    /// A gate of `base` connections plus `burst`.
    pub fn new(base: u32, burst: u32) -> Self {
        let permits = |n: u32| Arc::new(tokio::sync::Semaphore::new(n as usize));
        Self {
            base: permits(base.max(1)),
            burst: permits(burst),
            size: base.max(1) + burst,
        }
    }

    /// Take one connection's permit; a burst one only when `spare` says
    /// the pool has connections to spare now.
    pub async fn acquire(
        &self,
        spare: impl FnOnce() -> bool,
    ) -> Option<tokio::sync::OwnedSemaphorePermit> {
        if let Ok(permit) = Arc::clone(&self.base).try_acquire_owned() {
            return Some(permit);
        }
        if spare()
            && let Ok(permit) = Arc::clone(&self.burst).try_acquire_owned()
        {
            return Some(permit);
        }
        Arc::clone(&self.base).acquire_owned().await.ok()
    }

    /// Connections the tenant may hold at most.
    pub fn limit(&self) -> u32 {
        self.size
    }

    /// Connections the tenant holds now.
    pub fn in_use(&self) -> u32 {
        let available = self.base.available_permits() + self.burst.available_permits();
        self.size
            .saturating_sub(u32::try_from(available).unwrap_or(u32::MAX))
    }
}

tokio::task_local! {
    /// The gate of the tenant whose request this task is serving.
    static DB_GATE: Arc<DbGate>;
}

/// Run `f` with database calls counted against `gate`.
pub async fn with_db_gate<F: Future>(gate: Arc<DbGate>, f: F) -> F::Output {
    DB_GATE.scope(gate, f).await
}

/// The gate of the tenant this task is serving, for work it hands to a
/// task of its own (which does not inherit task-locals).
pub fn current_db_gate() -> Option<Arc<DbGate>> {
    DB_GATE.try_with(Arc::clone).ok()
}

/// A permit for one database call of the tenant being served, if any (none
/// for admin calls, the CLI and background work).
pub async fn db_permit(spare: impl FnOnce() -> bool) -> Option<tokio::sync::OwnedSemaphorePermit> {
    let gate = DB_GATE.try_with(Arc::clone).ok()?;
    gate.acquire(spare).await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_tenant_holds_its_connections_and_bursts_only_into_spare_ones() {
        let gate = DbGate::new(2, 1);
        let a = gate.acquire(|| false).await.expect("1");
        let _b = gate.acquire(|| false).await.expect("2");
        assert_eq!(gate.in_use(), 2);
        // No spare connections in the pool: the third call waits.
        let waiting = tokio::time::timeout(Duration::from_millis(50), gate.acquire(|| false)).await;
        assert!(
            waiting.is_err(),
            "took a burst connection the pool did not have"
        );
        // Spare ones: it bursts, but no further.
        let _c = gate.acquire(|| true).await.expect("burst");
        assert_eq!(gate.in_use(), 3);
        let waiting = tokio::time::timeout(Duration::from_millis(50), gate.acquire(|| true)).await;
        assert!(waiting.is_err(), "passed base plus burst");
        // A returned connection lets the next call through.
        drop(a);
        assert!(gate.acquire(|| false).await.is_some());
    }

    #[tokio::test]
    async fn work_handed_to_a_task_of_its_own_can_keep_the_tenants_gate() {
        assert!(current_db_gate().is_none(), "no tenant outside a request");
        let gate = Arc::new(DbGate::new(1, 0));
        let kept = with_db_gate(Arc::clone(&gate), async { current_db_gate() })
            .await
            .expect("inside the request");
        let handed = tokio::spawn(with_db_gate(kept, async {
            let _permit = db_permit(|| false).await.expect("counted");
            current_db_gate().map(|g| g.in_use())
        }));
        assert_eq!(handed.await.expect("joined"), Some(1));
        assert_eq!(gate.in_use(), 0);
    }
}
