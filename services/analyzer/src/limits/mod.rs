//! Per-tenant request limits that hold for the whole fleet: requests per
//! minute and requests in flight, by tier.
//!
//! Both are one GCRA budget and one set of concurrency slots per tenant.
//! With Redis, the budget and the slots live there, on Redis's clock, and
//! each task leases a share of them at a time (`lease`), so that the fleet
//! together admits no more than the tier's limits. Without Redis, or while
//! it is unreachable, each process enforces them itself with `governor`
//! (the engine of tower-governor) and its own in-flight counters (`local`):
//! at the full limit when no Redis is configured, at
//! `limit / ANALYZER_EXPECTED_TASKS` while a configured Redis is down, never
//! unlimited and never refusing everyone.
//!
//! The rate budget allows a burst of the whole minute's limit and refills
//! at `limit` per minute: the `limit + 1`th request in a burst is refused.

mod lease;
mod local;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use analyzer_runtime::locked;
use analyzer_store::gate::DbGate;

use crate::cache::RedisCache;
use analyzer_domain::tenants::{TenantId, Tier};
use lease::{Leases, TenantLease};
use local::Local;

/// The rate window the limits are stated in.
const WINDOW: Duration = Duration::from_secs(60);

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    /// Requests per minute.
    Rate,
    /// Requests in flight.
    Concurrency,
}

impl LimitKind {
    /// `requests_per_minute` or `concurrent_requests`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rate => "requests_per_minute",
            Self::Concurrency => "concurrent_requests",
        }
    }
}

/// The rate budget's state after a decision, for the `RateLimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateState {
    /// Requests per minute (the limit enforced, which is the share while
    /// Redis is unreachable).
    pub limit: u32,
    /// Requests still allowed now.
    pub remaining: u32,
    /// Until the budget is whole again.
    pub reset: Duration,
    /// Requests of the tenant in flight, this one included when admitted.
    pub in_flight: u32,
    /// The concurrency cap enforced.
    pub concurrency_limit: u32,
}

/// A refused request.
#[derive(Debug, Clone, Copy)]
pub struct Refusal {
    /// Which limit.
    pub kind: LimitKind,
    /// When to retry.
    pub retry_after: Duration,
    /// The budget at the time.
    pub state: RateState,
}

/// An admitted request's hold on the tenant's concurrency; released when
/// dropped (when the response body is finished).
pub struct Permit {
    counter: Arc<AtomicU32>,
    /// The fleet lease the slot came from, and the tier's slack then.
    lease: Option<(Arc<TenantLease>, u32)>,
}

impl std::fmt::Debug for Permit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Permit")
            .field("leased", &self.lease.is_some())
            .finish_non_exhaustive()
    }
}

impl Permit {
    /// Give the slot back before the answer goes out. Where it goes back to
    /// Redis, the command is queued on the process's one Redis connection
    /// now, without waiting for the reply: every command this process
    /// sends after it (the admission of the client's next request, if it
    /// comes here) reaches Redis after it, and a client at its cap that
    /// sends its next request the moment it has this answer finds the slot
    /// free. (Given back after the answer instead, the load harness's
    /// tenant flooding at its cap got spurious 429s; waiting for Redis's
    /// reply cost every answer a round trip.) A next request that lands on
    /// another task is admitted by a command that left after this one; a
    /// lost command is undone by the lease's expiry.
    pub fn release(self) {
        drop(self);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::AcqRel);
        if let Some((lease, slack)) = self.lease.take() {
            lease.release(slack);
        }
    }
}

/// Counters of the limiter (for `/metrics`; refusals are counted per
/// tenant in `analyzer_limit_refusals`).
#[derive(Debug, Default)]
pub struct LimitStats {
    /// Decisions taken locally because Redis was unreachable.
    pub fallbacks: AtomicU64,
}

/// Count a refusal in the tenant's `analyzer_limit_refusals`, by the limit.
fn counted(tenant: &TenantId, refusal: Refusal) -> Refusal {
    analyzer_telemetry::metrics::refusal(tenant.as_str(), refusal.kind.as_str());
    refusal
}

/// The limiter of one process.
pub struct Limiter {
    premium: TierLimits,
    standard: TierLimits,
    /// At the full limits: no Redis configured.
    full: [Local; 2],
    /// At the process's share: Redis configured but unreachable.
    share: [Local; 2],
    in_flight: Mutex<HashMap<TenantId, Arc<AtomicU32>>>,
    db_gates: Mutex<HashMap<(TenantId, Tier), Arc<DbGate>>>,
    /// The fleet's limits in Redis, leased.
    leases: Option<Leases>,
    /// Refusal and fallback counters.
    pub stats: LimitStats,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("redis", &self.leases.is_some())
            .finish_non_exhaustive()
    }
}

fn tier_index(tier: Tier) -> usize {
    match tier {
        Tier::Premium => 0,
        Tier::Standard => 1,
    }
}

impl Limiter {
    /// Limits of both tiers; with `redis`, shared by the fleet, with
    /// `expected_tasks` setting each process's share while it is down.
    /// `lease` bounds how long a crashed task's in-flight requests count.
    pub fn new(
        premium: TierLimits,
        standard: TierLimits,
        expected_tasks: u32,
        redis: Option<Arc<RedisCache>>,
        lease: Duration,
    ) -> Self {
        let tasks = expected_tasks.max(1);
        let local = |l: &TierLimits, div: u32| {
            Local::new(
                l.requests_per_minute / div,
                l.concurrent_requests.div_ceil(div),
            )
        };
        Self {
            premium,
            standard,
            full: [local(&premium, 1), local(&standard, 1)],
            share: [local(&premium, tasks), local(&standard, tasks)],
            in_flight: Mutex::default(),
            db_gates: Mutex::default(),
            leases: redis.map(|redis| Leases::new(redis, lease, tasks)),
            stats: LimitStats::default(),
        }
    }

    fn limits(&self, tier: Tier) -> &TierLimits {
        match tier {
            Tier::Premium => &self.premium,
            Tier::Standard => &self.standard,
        }
    }

    fn counter(&self, tenant: &TenantId) -> Arc<AtomicU32> {
        let mut map = locked(&self.in_flight);
        Arc::clone(map.entry(tenant.clone()).or_default())
    }

    /// The tenant's share of this task's database pool at `tier`.
    pub fn db_gate(&self, tenant: &TenantId, tier: Tier) -> Arc<DbGate> {
        let limits = self.limits(tier);
        let mut gates = locked(&self.db_gates);
        Arc::clone(gates.entry((tenant.clone(), tier)).or_insert_with(|| {
            Arc::new(DbGate::new(
                limits.db_connections,
                limits.db_connections_burst,
            ))
        }))
    }

    /// Admit one request of `tenant` at `tier`, or refuse it.
    pub async fn admit(
        &self,
        tenant: &TenantId,
        tier: Tier,
    ) -> Result<(Permit, RateState), Refusal> {
        let counter = self.counter(tenant);
        if let Some(leases) = &self.leases {
            let limits = self.limits(tier);
            match leases.admit(tenant, limits).await {
                Ok(Ok((lease, state))) => {
                    counter.fetch_add(1, Ordering::AcqRel);
                    let permit = Permit {
                        counter,
                        lease: Some((lease, leases.slack(limits))),
                    };
                    return Ok((permit, state));
                }
                Ok(Err(refusal)) => return Err(counted(tenant, refusal)),
                Err(e) => {
                    self.stats.fallbacks.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(error = %e, "limits: Redis unreachable; enforcing this task's share");
                    return self.share[tier_index(tier)]
                        .admit(tenant, counter)
                        .map_err(|r| counted(tenant, r));
                }
            }
        }
        self.full[tier_index(tier)]
            .admit(tenant, counter)
            .map_err(|r| counted(tenant, r))
    }

    /// Forget idle tenants' local state (call now and then).
    pub fn housekeep(&self) {
        for local in self.full.iter().chain(&self.share) {
            local.rate.retain_recent();
        }
        let mut map = locked(&self.in_flight);
        map.retain(|_, c| c.load(Ordering::Acquire) > 0 || Arc::strong_count(c) > 1);
        drop(map);
        let mut gates = locked(&self.db_gates);
        gates.retain(|_, g| g.in_use() > 0 || Arc::strong_count(g) > 1);
        drop(gates);
        if let Some(leases) = &self.leases {
            leases.housekeep();
        }
    }
}

/// The limits of one tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct TierLimits {
    /// Requests in flight at once.
    pub concurrent_requests: u32,
    /// Requests per minute.
    pub requests_per_minute: u32,
    /// Bytes of cached query results.
    pub query_cache_bytes: u64,
    /// Bytes of stored vectors and payload.
    pub vector_storage_bytes: u64,
    /// Database connections held at once.
    pub db_connections: u32,
    /// Extra database connections allowed in bursts.
    pub db_connections_burst: u32,
}

impl TierLimits {
    /// The contract's defaults for a tier.
    pub const fn defaults(tier: Tier) -> Self {
        const MIB: u64 = 1024 * 1024;
        const GIB: u64 = 1024 * MIB;
        match tier {
            Tier::Premium => Self {
                concurrent_requests: 100,
                requests_per_minute: 500,
                query_cache_bytes: 128 * MIB,
                vector_storage_bytes: 10 * GIB,
                db_connections: 5,
                db_connections_burst: 10,
            },
            Tier::Standard => Self {
                concurrent_requests: 20,
                requests_per_minute: 100,
                query_cache_bytes: 32 * MIB,
                vector_storage_bytes: 2 * GIB,
                db_connections: 2,
                db_connections_burst: 5,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use analyzer_store::gate::{db_permit, with_db_gate};

    use super::*;

    fn limiter(tasks: u32) -> Limiter {
        let mut standard = TierLimits::defaults(Tier::Standard);
        standard.requests_per_minute = 10;
        standard.concurrent_requests = 2;
        Limiter::new(
            TierLimits::defaults(Tier::Premium),
            standard,
            tasks,
            None,
            Duration::from_secs(60),
        )
    }

    #[tokio::test]
    async fn the_request_after_the_burst_is_refused_with_a_retry_time() {
        let limits = limiter(1);
        let a = TenantId::generate();
        for i in 0..10 {
            let (_, state) = limits.admit(&a, Tier::Standard).await.expect("within");
            assert_eq!(state.remaining, 9 - i);
        }
        let refused = limits.admit(&a, Tier::Standard).await.expect_err("11th");
        assert_eq!(refused.kind, LimitKind::Rate);
        assert!(refused.retry_after > Duration::from_secs(5));
        assert!(refused.retry_after <= Duration::from_secs(6));
        // Another tenant and another tier have their own budgets.
        assert!(
            limits
                .admit(&TenantId::generate(), Tier::Standard)
                .await
                .is_ok()
        );
        assert!(limits.admit(&a, Tier::Premium).await.is_ok());
        let counted = format!(
            r#"analyzer_limit_refusals_total{{kind="requests_per_minute",tenant_id="{}"}} 1"#,
            a.as_str()
        );
        assert!(
            analyzer_telemetry::metrics::render()
                .lines()
                .any(|l| l == counted),
            "{counted}"
        );
    }

    #[tokio::test]
    async fn the_concurrency_cap_refuses_at_once_and_frees_on_drop() {
        let limits = limiter(1);
        let a = TenantId::generate();
        let (first, _) = limits.admit(&a, Tier::Standard).await.expect("1");
        let (_second, state) = limits.admit(&a, Tier::Standard).await.expect("2");
        assert_eq!(state.in_flight, 2);
        let refused = limits.admit(&a, Tier::Standard).await.expect_err("3");
        assert_eq!(refused.kind, LimitKind::Concurrency);
        drop(first);
        assert!(limits.admit(&a, Tier::Standard).await.is_ok());
    }

    /// A limiter of `tasks` expected tasks on Redis, with the standard
    /// tier at `per_minute` and `cap`.
    fn shared(redis: Arc<RedisCache>, tasks: u32, per_minute: u32, cap: u32) -> Limiter {
        let mut standard = TierLimits::defaults(Tier::Standard);
        standard.requests_per_minute = per_minute;
        standard.concurrent_requests = cap;
        Limiter::new(
            TierLimits::defaults(Tier::Premium),
            standard,
            tasks,
            Some(redis),
            Duration::from_secs(60),
        )
    }

    /// With the slots in Redis, a released permit's slot is free for the
    /// very next admission, and so is a dropped one's: its return is queued
    /// on the connection before the next admission asks.
    #[tokio::test]
    async fn a_released_or_dropped_slot_is_free_in_redis_for_the_next_request() {
        let Some(redis) = RedisCache::for_tests().await else {
            return;
        };
        let limits = shared(redis, 1, 1_000, 1);
        let a = TenantId::generate();
        for _ in 0..20 {
            let (permit, _) = limits.admit(&a, Tier::Standard).await.expect("admitted");
            permit.release();
        }
        // Dropped (a stream's last event), the same: queued before the
        // next admission.
        for _ in 0..20 {
            let (permit, _) = limits.admit(&a, Tier::Standard).await.expect("admitted");
            drop(permit);
        }
        let (held, _) = limits.admit(&a, Tier::Standard).await.expect("admitted");
        let refused = limits
            .admit(&a, Tier::Standard)
            .await
            .expect_err("the cap is one");
        assert_eq!(refused.kind, LimitKind::Concurrency);
        drop(held);
        assert_eq!(limits.stats.fallbacks.load(Ordering::Relaxed), 0);
    }

    /// Two processes taking a large budget in batches admit no more than
    /// it together, and no less than 98% of it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn processes_leasing_the_budget_in_batches_admit_the_limit_together() {
        let (Some(one), Some(two)) = (RedisCache::for_tests().await, RedisCache::for_tests().await)
        else {
            return;
        };
        let fleet = [shared(one, 2, 3_000, 10_000), shared(two, 2, 3_000, 10_000)];
        let tenant = TenantId::generate();
        let started = std::time::Instant::now();
        let mut admitted = 0u32;
        for i in 0..4_000 {
            if fleet[i % 2].admit(&tenant, Tier::Standard).await.is_ok() {
                admitted += 1;
            }
        }
        // The budget refills at 50 a second meanwhile.
        let refilled = (started.elapsed().as_secs_f64() * 50.0).ceil() as u32;
        assert!(
            (2_940..=3_000 + refilled).contains(&admitted),
            "admitted {admitted} of a 3,000 budget (refilled {refilled})"
        );
        assert!(
            fleet
                .iter()
                .all(|l| l.stats.fallbacks.load(Ordering::Relaxed) == 0)
        );
    }

    /// Concurrent requests that find the lease empty wait for one of them
    /// to ask Redis: all are admitted, or all refused with the budget
    /// spent, and none falls back to the local share.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requests_share_one_ask_and_its_refusal() {
        let Some(redis) = RedisCache::for_tests().await else {
            return;
        };
        let limits = Arc::new(shared(redis, 1, 3_000, 10_000));
        let tenant = TenantId::generate();
        let burst = |n: usize| {
            let handles: Vec<_> = (0..n)
                .map(|_| {
                    let (limits, tenant) = (Arc::clone(&limits), tenant.clone());
                    tokio::spawn(async move {
                        limits
                            .admit(&tenant, Tier::Standard)
                            .await
                            .map(|_| ())
                            .map_err(|r| r.kind)
                    })
                })
                .collect();
            futures::future::join_all(handles)
        };
        let started = std::time::Instant::now();
        let first = burst(1_000).await;
        assert!(first.iter().all(|r| matches!(r, Ok(Ok(())))));
        // Past the rest of the minute's budget, together again.
        let rest = burst(2_500).await;
        let admitted = 1_000 + rest.iter().filter(|r| matches!(r, Ok(Ok(())))).count();
        let refused = rest
            .iter()
            .filter(|r| matches!(r, Ok(Err(LimitKind::Rate))))
            .count();
        assert_eq!(
            admitted + refused,
            3_500,
            "each admitted or refused by the rate"
        );
        // The budget refills at 50 a second; a batch left unspent is at most
        // 2% of it.
        let refilled = (started.elapsed().as_secs_f64() * 50.0).ceil() as usize;
        assert!(
            (2_940..=3_000 + refilled).contains(&admitted),
            "admitted {admitted} of a 3,000 budget (refilled {refilled})"
        );
        assert_eq!(limits.stats.fallbacks.load(Ordering::Relaxed), 0);
    }

    /// Slots are leased in blocks: a process holds at most twice its slack
    /// idle (here 10), so another process can take all but that, and the
    /// two never hold more than the cap together.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn processes_leasing_slots_in_blocks_never_pass_the_cap_together() {
        let (Some(one), Some(two)) = (RedisCache::for_tests().await, RedisCache::for_tests().await)
        else {
            return;
        };
        let [a, b] = [one, two].map(|redis| shared(redis, 2, 1_000_000, 1_000));
        let tenant = TenantId::generate();
        let mut held_a = Vec::new();
        for _ in 0..500 {
            held_a.push(
                a.admit(&tenant, Tier::Standard)
                    .await
                    .expect("within the cap"),
            );
        }
        let mut held_b = Vec::new();
        while let Ok(permit) = b.admit(&tenant, Tier::Standard).await {
            held_b.push(permit);
            assert!(held_b.len() <= 500, "past the cap");
        }
        assert!(held_b.len() >= 500 - 20, "b got {}", held_b.len());
        // A may still use the slots it holds idle, and no more.
        while let Ok(permit) = a.admit(&tenant, Tier::Standard).await {
            held_a.push(permit);
            assert!(held_a.len() <= 520, "a used more than its idle slots");
        }
        assert_eq!(held_a.len() + held_b.len(), 1_000, "the cap, exactly");
        let refused = a.admit(&tenant, Tier::Standard).await.map(|_| ());
        assert_eq!(refused.expect_err("full").kind, LimitKind::Concurrency);
        // A's requests end: its slots go back but for its slack, and b
        // gets them once a's give-backs, sent on a's connection, have
        // reached Redis (b asks on its own, in no order with them).
        held_a.clear();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while held_b.len() < 1_000 - 20 && std::time::Instant::now() < deadline {
            while let Ok(permit) = b.admit(&tenant, Tier::Standard).await {
                held_b.push(permit);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(held_b.len() <= 1_000 - 10, "a keeps its slack");
        assert!(held_b.len() >= 1_000 - 20, "b got {}", held_b.len());
    }

    #[tokio::test]
    async fn database_calls_are_gated_only_inside_a_tenant_scope() {
        let limits = limiter(1);
        let tenant = TenantId::generate();
        assert!(db_permit(|| true).await.is_none(), "no tenant, no gate");
        let gate = limits.db_gate(&tenant, Tier::Standard);
        assert_eq!(gate.limit(), 2 + 5);
        let held = with_db_gate(Arc::clone(&gate), async { db_permit(|| true).await }).await;
        assert!(held.is_some());
        assert_eq!(gate.in_use(), 1);
        // Another tenant's gate is its own.
        let other = limits.db_gate(&TenantId::generate(), Tier::Standard);
        assert_eq!(other.in_use(), 0);
    }

    #[test]
    fn the_share_divides_the_limits_and_never_reaches_zero() {
        let limits = limiter(3);
        assert_eq!(limits.share[1].per_minute, 3);
        assert_eq!(limits.share[1].concurrency, 1);
        let tiny = limiter(50);
        assert_eq!(tiny.share[1].per_minute, 1);
        assert_eq!(tiny.share[1].concurrency, 1);
    }
}
