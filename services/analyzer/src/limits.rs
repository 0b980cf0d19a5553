//! Per-tenant request limits that hold for the whole fleet: requests per
//! minute and requests in flight, by tier.
//!
//! Both are one GCRA budget and one lease set per tenant. With Redis, every
//! task checks and updates them in one atomic script on Redis's clock
//! (`{tenant}:rate`, `{tenant}:inflight`: the hash tag keeps a tenant's keys
//! in one cluster slot), so the fleet together admits no more than the
//! tier's limits. Without Redis, or while it is unreachable, each process
//! enforces them itself with `governor` (the engine of tower-governor) and
//! its own in-flight counters: at the full limit when no Redis is
//! configured, at `limit / ANALYZER_EXPECTED_TASKS` while a configured Redis
//! is down, never unlimited and never refusing everyone.
//!
//! The rate budget allows a burst of the whole minute's limit and refills
//! at `limit` per minute: the `limit + 1`th request in a burst is refused.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::{DefaultKeyedRateLimiter, Quota};

use analyzer_store::gate::DbGate;

use crate::cache::{CacheError, RedisCache, Script};
use analyzer_domain::tenants::{TenantId, Tier};

/// The rate window the limits are stated in.
const WINDOW: Duration = Duration::from_secs(60);

/// Checks the rate budget and takes an in-flight lease in one step.
/// KEYS: rate, inflight. ARGV: rate limit, window ms, concurrency cap,
/// lease member, lease ms. Returns {admitted (1/0/-1 for over the
/// concurrency cap), remaining, retry_after ms, reset ms, in flight}.
const ADMIT_LUA: &str = r"
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local cap = tonumber(ARGV[3])
local lease = tonumber(ARGV[5])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local inflight = redis.call('ZCARD', KEYS[2])
local interval = window / limit
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
if inflight >= cap then
  return {-1, math.floor((now + window - tat) / interval), 1000, math.ceil(tat - now), inflight}
end
local new_tat = tat + interval
local allow_at = new_tat - window
if now < allow_at then
  return {0, 0, math.ceil(allow_at - now), math.ceil(tat - now), inflight}
end
redis.call('SET', KEYS[1], string.format('%.3f', new_tat), 'PX', math.ceil(new_tat - now) + 1)
redis.call('ZADD', KEYS[2], now + lease, ARGV[4])
redis.call('PEXPIRE', KEYS[2], lease)
return {1, math.floor((now + window - new_tat) / interval), 0, math.ceil(new_tat - now), inflight + 1}
";

static ADMIT: Script = Script::new(ADMIT_LUA);

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
#[derive(Debug)]
pub struct Permit {
    counter: Arc<AtomicU32>,
    lease: Option<(Arc<RedisCache>, String, String)>,
}

impl Permit {
    /// Give the slot back before the answer goes out, without waiting for
    /// Redis: the removal is queued on the process's one Redis connection
    /// now, so every command this process sends after it (the admission of
    /// the client's next request, if it comes here) reaches Redis after
    /// it, and a client at its cap that sends its next request the moment
    /// it has this answer finds the slot free. (Removed after the answer
    /// instead, the load harness's tenant flooding at its cap got 162
    /// spurious 429s in 40,000 requests; waiting for Redis's reply cost
    /// every answer a round trip.) A next request that lands on another
    /// task is admitted by a command that left after this one; a lost
    /// removal is undone by the lease's expiry.
    pub fn release(mut self) {
        if let Some((redis, key, member)) = self.lease.take() {
            send_removal(redis, key, member);
        }
    }
}

/// Queue the removal of an in-flight lease on the Redis connection now
/// (the first poll of fred's command hands it to the connection's writer,
/// in order) and let its reply arrive in the background; a lease that
/// cannot be removed expires by itself.
fn send_removal(redis: Arc<RedisCache>, key: String, member: String) {
    use fred::interfaces::SortedSetsInterface as _;
    let mut removal = Box::pin(async move {
        if let Ok(client) = redis.fast() {
            let _: Result<i64, _> = client.zrem(key, member).await;
        }
    });
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    if removal.as_mut().poll(&mut cx).is_pending()
        && let Ok(runtime) = tokio::runtime::Handle::try_current()
    {
        runtime.spawn(removal);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::AcqRel);
        if let Some((redis, key, member)) = self.lease.take() {
            send_removal(redis, key, member);
        }
    }
}

type Keyed = DefaultKeyedRateLimiter<TenantId, StateInformationMiddleware>;

/// One tier's limiter at one budget.
struct Local {
    rate: Keyed,
    per_minute: u32,
    concurrency: u32,
}

impl Local {
    fn new(per_minute: u32, concurrency: u32) -> Self {
        let per_minute = per_minute.max(1);
        let burst = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
        let interval = WINDOW / per_minute;
        let quota = Quota::with_period(interval)
            .unwrap_or_else(|| Quota::per_minute(burst))
            .allow_burst(burst);
        Self {
            rate: DefaultKeyedRateLimiter::keyed(quota)
                .with_middleware::<StateInformationMiddleware>(),
            per_minute,
            concurrency: concurrency.max(1),
        }
    }

    fn reset_after(&self, remaining: u32) -> Duration {
        WINDOW / self.per_minute * (self.per_minute - remaining.min(self.per_minute))
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
    redis: Option<Arc<RedisCache>>,
    lease: Duration,
    /// Refusal and fallback counters.
    pub stats: LimitStats,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("redis", &self.redis.is_some())
            .finish_non_exhaustive()
    }
}

/// A map's lock; a panic elsewhere while holding it leaves counts that are
/// still usable.
fn locked<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
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
            redis,
            lease,
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
        if let Some(redis) = &self.redis {
            match self.admit_shared(redis, tenant, tier).await {
                Ok(Ok((member, state))) => {
                    counter.fetch_add(1, Ordering::AcqRel);
                    let permit = Permit {
                        counter,
                        lease: Some((Arc::clone(redis), inflight_key(tenant), member)),
                    };
                    return Ok((permit, state));
                }
                Ok(Err(refusal)) => return Err(counted(tenant, refusal)),
                Err(e) => {
                    self.stats.fallbacks.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(error = %e, "limits: Redis unreachable; enforcing this task's share");
                    return self
                        .admit_local(&self.share[tier_index(tier)], tenant, counter)
                        .map_err(|r| counted(tenant, r));
                }
            }
        }
        self.admit_local(&self.full[tier_index(tier)], tenant, counter)
            .map_err(|r| counted(tenant, r))
    }

    fn admit_local(
        &self,
        local: &Local,
        tenant: &TenantId,
        counter: Arc<AtomicU32>,
    ) -> Result<(Permit, RateState), Refusal> {
        // Take the concurrency slot first, so a refused rate check does not
        // need to give anything back but the slot.
        let in_flight = counter.fetch_add(1, Ordering::AcqRel) + 1;
        let permit = Permit {
            counter,
            lease: None,
        };
        let mut state = RateState {
            limit: local.per_minute,
            remaining: 0,
            reset: Duration::ZERO,
            in_flight,
            concurrency_limit: local.concurrency,
        };
        if in_flight > local.concurrency {
            state.in_flight -= 1;
            return Err(Refusal {
                kind: LimitKind::Concurrency,
                retry_after: Duration::from_secs(1),
                state,
            });
        }
        match local.rate.check_key(tenant) {
            Ok(snapshot) => {
                state.remaining = snapshot.remaining_burst_capacity();
                state.reset = local.reset_after(state.remaining);
                Ok((permit, state))
            }
            Err(not_until) => {
                state.in_flight -= 1;
                state.reset = local.reset_after(0);
                Err(Refusal {
                    kind: LimitKind::Rate,
                    retry_after: not_until.wait_time_from(DefaultClock::default().now()),
                    state,
                })
            }
        }
    }

    async fn admit_shared(
        &self,
        redis: &RedisCache,
        tenant: &TenantId,
        tier: Tier,
    ) -> Result<Result<(String, RateState), Refusal>, CacheError> {
        let limits = self.limits(tier);
        let member = uuid::Uuid::new_v4().to_string();
        let lease_ms = u64::try_from(self.lease.as_millis()).unwrap_or(u64::MAX);
        let reply: Vec<i64> = redis
            .run(
                &ADMIT,
                vec![rate_key(tenant), inflight_key(tenant)],
                vec![
                    limits.requests_per_minute.to_string().into(),
                    WINDOW.as_millis().to_string().into(),
                    limits.concurrent_requests.to_string().into(),
                    member.clone().into(),
                    lease_ms.to_string().into(),
                ],
            )
            .await?;
        let [admitted, remaining, retry_ms, reset_ms, in_flight] = reply[..] else {
            return Err(CacheError("unexpected reply from the limits script".into()));
        };
        let millis = |v: i64| Duration::from_millis(u64::try_from(v).unwrap_or(0));
        let state = RateState {
            limit: limits.requests_per_minute,
            remaining: u32::try_from(remaining).unwrap_or(0),
            reset: millis(reset_ms),
            in_flight: u32::try_from(in_flight).unwrap_or(0),
            concurrency_limit: limits.concurrent_requests,
        };
        Ok(match admitted {
            1 => Ok((member, state)),
            0 => Err(Refusal {
                kind: LimitKind::Rate,
                retry_after: millis(retry_ms),
                state,
            }),
            _ => Err(Refusal {
                kind: LimitKind::Concurrency,
                retry_after: millis(retry_ms),
                state,
            }),
        })
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

fn rate_key(tenant: &TenantId) -> String {
    format!("{{{}}}:rate", tenant.as_str())
}

fn inflight_key(tenant: &TenantId) -> String {
    format!("{{{}}}:inflight", tenant.as_str())
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

    /// With the slots in Redis, a released permit's slot is free for the
    /// very next admission; a dropped one's only once its background
    /// removal has run (on this one-thread runtime, after the next
    /// admission has asked).
    #[tokio::test]
    async fn a_released_or_dropped_slot_is_free_in_redis_for_the_next_request() {
        let url = std::env::var("REDIS_URL")
            .ok()
            .filter(|u| u.starts_with("redis"))
            .unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned());
        let redis = Arc::new(
            RedisCache::connect(&url, Duration::from_secs(2))
                .await
                .expect("client"),
        );
        if redis.fast().is_err() {
            assert!(std::env::var_os("CI").is_none(), "no Redis at {url}");
            eprintln!("skipped: no Redis at {url}");
            return;
        }
        let mut standard = TierLimits::defaults(Tier::Standard);
        standard.requests_per_minute = 1_000;
        standard.concurrent_requests = 1;
        let limits = Limiter::new(
            TierLimits::defaults(Tier::Premium),
            standard,
            1,
            Some(redis),
            Duration::from_secs(60),
        );
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
