//! The fleet-wide limits in Redis, taken by each process in leases: a
//! batch of the tenant's rate budget and a block of its concurrency slots
//! at a time, so that most requests are decided in memory and Redis sees
//! one script call per batch instead of one per request.
//!
//! Exactness is kept where it matters by sizing: a batch is about 100 ms
//! of the tenant's recent rate on this process and at most 2% of its limit
//! divided among the expected tasks (so one token when the limit is small:
//! every request asks Redis, as before); a block leaves at most
//! `cap / (tasks * 50)` slots idle per process (none for small caps). Leased
//! tokens are spent on this process within a second or lost, so the fleet
//! never admits more than the limit; it may admit up to 2% less while its
//! tasks hold unspent tokens.
//!
//! Redis keys (one hash tag per tenant): `{tenant}:rate`, the GCRA's
//! theoretical arrival time as before; `{tenant}:slots`, a hash of each
//! process's held slots (`<holder>`) and until when they count
//! (`<holder>:until`). A process's count moves only by what the script
//! grants and what it gives back (`HINCRBY -n`), so its calls may overlap;
//! a slot is given back after the call that granted it, on the process's
//! one Redis connection, in order. A process that stops renewing (crashed)
//! stops counting at its `until`.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use analyzer_domain::tenants::TenantId;
use tokio::sync::Notify;

use analyzer_runtime::locked;

use super::{LimitKind, RateState, Refusal, TierLimits, WINDOW};
use crate::cache::{CacheError, RedisCache, Script};

/// How long leased rate tokens may be spent.
const TOKENS_VALID: Duration = Duration::from_secs(1);
/// How many times one admission asks Redis before giving up on the lease.
const ASKS: usize = 8;
/// How many answers one admission waits for before giving up.
const WAITS: usize = 10_000;
/// Batches of at least this many tokens are asked for by one request for
/// all; smaller ones by each request for itself.
const COALESCE_FROM: u32 = 8;
/// How much of the recent rate one batch covers.
const BATCH_SPAN: Duration = Duration::from_millis(100);

/// Takes rate tokens and concurrency slots for one holder in one step.
/// KEYS: rate, slots. ARGV: rate limit, window ms, concurrency cap,
/// holder, tokens needed (0/1), tokens wanted, slots needed (0/1), slots
/// wanted, lease ms. Returns {1 granted / 0 over the rate / -1 over the
/// cap, remaining, retry ms, reset ms, slots held by the others, tokens
/// granted, slots granted}. The holder's count only moves by what is
/// granted here and given back (`HINCRBY`), so calls of one process may
/// overlap.
const LEASE_LUA: &str = r"
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local cap = tonumber(ARGV[3])
local holder = ARGV[4]
local need_tokens = tonumber(ARGV[5])
local want_tokens = tonumber(ARGV[6])
local need_slots = tonumber(ARGV[7])
local want_slots = tonumber(ARGV[8])
local lease = tonumber(ARGV[9])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local fields = redis.call('HGETALL', KEYS[2])
local counts, untils = {}, {}
for i = 1, #fields, 2 do
  local f, v = fields[i], tonumber(fields[i + 1])
  if string.sub(f, -6) == ':until' then
    untils[string.sub(f, 1, -7)] = v
  else
    counts[f] = v
  end
end
local others, dead = 0, {}
local mine = math.max(counts[holder] or 0, 0)
for h, c in pairs(counts) do
  if h ~= holder then
    local u = untils[h]
    if u and u > now then
      if c > 0 then others = others + c end
    else
      table.insert(dead, h)
      table.insert(dead, h .. ':until')
    end
  end
end
for h, u in pairs(untils) do
  if counts[h] == nil and h ~= holder then table.insert(dead, h .. ':until') end
end
if #dead > 0 then redis.call('HDEL', KEYS[2], unpack(dead)) end
local interval = window / limit
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local function remaining(at)
  return math.max(0, math.floor((now + window - at) / interval))
end
if need_slots > 0 and others + mine + 1 > cap then
  return {-1, remaining(tat), 1000, math.ceil(tat - now), others, 0, 0}
end
local available = remaining(tat)
if need_tokens > available then
  return {0, 0, math.ceil(tat + interval - window - now), math.ceil(tat - now), others, 0, 0}
end
local slots = math.max(0, math.min(want_slots, cap - others - mine))
local tokens = math.min(want_tokens, available)
if tokens > 0 then
  tat = tat + tokens * interval
  redis.call('SET', KEYS[1], string.format('%.3f', tat), 'PX', math.ceil(tat - now) + 1)
end
redis.call('HSET', KEYS[2], holder, mine + slots, holder .. ':until', now + lease)
redis.call('PEXPIRE', KEYS[2], lease)
return {1, remaining(tat), 0, math.ceil(tat - now), others, tokens, slots}
";

static LEASE: Script = Script::new(LEASE_LUA);

/// This process's leases of every tenant it serves.
pub(super) struct Leases {
    redis: Arc<RedisCache>,
    /// This process's name in the tenants' slot hashes.
    holder: String,
    /// How long a holder's slots count without a renewal.
    lease: Duration,
    tasks: u32,
    tenants: Mutex<HashMap<TenantId, Arc<TenantLease>>>,
}

/// What a decision gave: a slot of the lease, or a refusal.
pub(super) type Decision = Result<(Arc<TenantLease>, RateState), Refusal>;

impl Leases {
    pub(super) fn new(redis: Arc<RedisCache>, lease: Duration, tasks: u32) -> Self {
        Self {
            redis,
            holder: uuid::Uuid::new_v4().simple().to_string(),
            lease,
            tasks: tasks.max(1),
            tenants: Mutex::default(),
        }
    }

    fn tenant(&self, tenant: &TenantId) -> Arc<TenantLease> {
        let mut tenants = locked(&self.tenants);
        Arc::clone(tenants.entry(tenant.clone()).or_insert_with(|| {
            Arc::new(TenantLease {
                redis: Arc::clone(&self.redis),
                slots_key: slots_key(tenant),
                holder: self.holder.clone(),
                state: Mutex::new(LeaseState::default()),
                asking: tokio::sync::Mutex::new(()),
                answered: Notify::new(),
                round: AtomicU64::new(0),
                refused: Mutex::new(None),
                waiting: AtomicU32::new(0),
            })
        }))
    }

    /// Admit one request: from this process's lease when it has a token
    /// and a slot, else from Redis.
    ///
    /// Where leases are batches, one request asks for everyone and the
    /// others wait for it, all woken together when it has the answer (a
    /// lock handed from waiter to waiter made a convoy: under 1,000
    /// connections, each wait for the scheduler, one after another); a
    /// refusal it gets is theirs too (they asked while it was decided).
    /// Where leases are single requests (small limits), each request asks
    /// for itself, as concurrently as they come.
    pub(super) async fn admit(
        &self,
        tenant: &TenantId,
        limits: &TierLimits,
    ) -> Result<Decision, CacheError> {
        let sizing = Sizing::new(limits, self.tasks, self.lease);
        let lease = self.tenant(tenant);
        let granted = |decision: Result<RateState, Refusal>| {
            Ok(decision.map(|state| (Arc::clone(&lease), state)))
        };
        // Asking Redis is bounded; waiting is not, but every wake follows
        // an answer from Redis (a grant others spent first, or a refusal
        // this request shares).
        let (mut asked, mut waited) = (0, 0);
        while asked < ASKS && waited < WAITS {
            if let Some(state) = lease.take_leased(&sizing, Instant::now()) {
                return granted(Ok(state));
            }
            if sizing.max_batch < COALESCE_FROM {
                asked += 1;
                if let Some(decision) = lease.ask_redis(tenant, &sizing).await? {
                    return granted(decision);
                }
                continue;
            }
            let answered = lease.answered.notified();
            tokio::pin!(answered);
            answered.as_mut().enable();
            let round = lease.round.load(Ordering::Acquire);
            if let Some(state) = lease.take_leased(&sizing, Instant::now()) {
                return granted(Ok(state));
            }
            let Ok(turn) = lease.asking.try_lock() else {
                waited += 1;
                lease.waiting.fetch_add(1, Ordering::AcqRel);
                answered.await;
                lease.waiting.fetch_sub(1, Ordering::AcqRel);
                if let Some(refusal) = lease.refused_since(round) {
                    return granted(Err(refusal));
                }
                continue;
            };
            asked += 1;
            let decision = lease.ask_redis(tenant, &sizing).await;
            lease.finish_round(&decision);
            drop(turn);
            lease.answered.notify_waiters();
            if let Some(decision) = decision? {
                return granted(decision);
            }
        }
        Err(CacheError(
            "the lease was spent by other requests each time it was renewed".into(),
        ))
    }

    /// The slots a process may hold idle for `limits`.
    pub(super) fn slack(&self, limits: &TierLimits) -> u32 {
        Sizing::new(limits, self.tasks, self.lease).slack
    }

    /// Give back the slots of tenants idle for a while, and forget tenants
    /// with nothing leased.
    pub(super) fn housekeep(&self) {
        let mut tenants = locked(&self.tenants);
        let now = Instant::now();
        tenants.retain(|_, lease| {
            let mut state = locked(&lease.state);
            if state.in_use == 0 && now.duration_since(state.last_used) > Duration::from_secs(1) {
                let idle = state.held;
                if idle > 0 {
                    state.held = 0;
                    lease.give_back(idle);
                }
            }
            state.held > 0 || state.in_use > 0 || Arc::strong_count(lease) > 1
        });
    }
}

/// How a tier's limits are leased on this process.
struct Sizing {
    limit: u32,
    cap: u32,
    /// Most tokens one batch may take.
    max_batch: u32,
    /// Slots a process may hold beyond those in use.
    slack: u32,
    /// How long the slots count without a renewal.
    lease: Duration,
    /// Renew them at least this often.
    renew: Duration,
}

impl Sizing {
    fn new(limits: &TierLimits, tasks: u32, lease: Duration) -> Self {
        let limit = limits.requests_per_minute.max(1);
        let cap = limits.concurrent_requests.max(1);
        Self {
            limit,
            cap,
            max_batch: (u64::from(limit) / 50 / u64::from(tasks)).clamp(1, u64::from(u32::MAX))
                as u32,
            slack: cap / 50 / tasks,
            lease,
            renew: lease / 4,
        }
    }

    /// About [`BATCH_SPAN`] of the rate at which the last batch was spent.
    fn batch(&self, last: u32, spent_in: Duration) -> u32 {
        let per_second = f64::from(last) / spent_in.as_secs_f64().max(0.001);
        let batch = (per_second * BATCH_SPAN.as_secs_f64()).round();
        (batch as u32).clamp(1, self.max_batch)
    }
}

/// One tenant's lease on this process.
pub(super) struct TenantLease {
    redis: Arc<RedisCache>,
    slots_key: String,
    holder: String,
    state: Mutex<LeaseState>,
    /// Held by the one request asking Redis for the others (batches).
    asking: tokio::sync::Mutex<()>,
    /// Told when it has the answer.
    answered: Notify,
    /// Answers so far, and the last refusal with its round.
    round: AtomicU64,
    refused: Mutex<Option<(u64, Refusal)>>,
    /// Requests waiting for the answer: the ask covers them too.
    waiting: AtomicU32,
}

#[derive(Debug)]
struct LeaseState {
    /// Rate tokens leased and not spent, usable until `tokens_until`.
    tokens: u32,
    tokens_until: Instant,
    /// The last batch and when it came, for the next batch's size.
    batch: u32,
    batch_at: Instant,
    /// The budget as Redis last told it, for the headers.
    remaining: u32,
    reset_at: Instant,
    /// Slots leased, and how many requests use them now.
    held: u32,
    in_use: u32,
    /// Slots the other processes held at the last call.
    others: u32,
    renewed_at: Instant,
    last_used: Instant,
}

impl Default for LeaseState {
    fn default() -> Self {
        let now = Instant::now();
        Self {
            tokens: 0,
            tokens_until: now,
            batch: 0,
            batch_at: now,
            remaining: 0,
            reset_at: now,
            held: 0,
            in_use: 0,
            others: 0,
            renewed_at: now,
            last_used: now,
        }
    }
}

impl LeaseState {
    fn rate_state(&self, sizing: &Sizing, now: Instant) -> RateState {
        RateState {
            limit: sizing.limit,
            remaining: self.remaining.saturating_add(self.tokens),
            reset: self.reset_at.saturating_duration_since(now),
            in_flight: self.in_use.saturating_add(self.others),
            concurrency_limit: sizing.cap,
        }
    }

    fn has_tokens(&self, now: Instant) -> bool {
        self.tokens > 0 && now < self.tokens_until
    }
}

impl TenantLease {
    /// Decide without Redis when the lease allows it.
    fn take_leased(&self, sizing: &Sizing, now: Instant) -> Option<RateState> {
        let mut state = locked(&self.state);
        let renewed = now.duration_since(state.renewed_at) < sizing.renew;
        if state.has_tokens(now) && state.in_use < state.held && renewed {
            state.tokens -= 1;
            state.in_use += 1;
            state.last_used = now;
            return Some(state.rate_state(sizing, now));
        }
        None
    }

    /// Ask Redis for what the lease lacks (and renew it).
    async fn ask_redis(
        &self,
        tenant: &TenantId,
        sizing: &Sizing,
    ) -> Result<Option<Result<RateState, Refusal>>, CacheError> {
        // Sent while the state is held, so that slots given back later
        // reach Redis after this call (which may grant them).
        let call = {
            let now = Instant::now();
            let mut state = locked(&self.state);
            let need_tokens = u32::from(!state.has_tokens(now));
            if need_tokens == 1 {
                state.tokens = 0;
            }
            let waiting = self.waiting.load(Ordering::Acquire);
            let want_tokens = if need_tokens == 1 {
                sizing
                    .batch(state.batch, now.duration_since(state.batch_at))
                    .max(waiting.saturating_add(1))
                    .min(sizing.max_batch)
            } else {
                0
            };
            let need_slots = u32::from(state.in_use >= state.held);
            let want_slots = if need_slots == 1 {
                (state.in_use + 1 + waiting + sizing.slack).saturating_sub(state.held)
            } else {
                0
            };
            let args: Vec<fred::types::Value> = [
                sizing.limit,
                u32::try_from(WINDOW.as_millis()).unwrap_or(u32::MAX),
                sizing.cap,
            ]
            .map(|n| n.to_string().into())
            .into_iter()
            .chain([self.holder.clone().into()])
            .chain(
                [
                    need_tokens,
                    want_tokens,
                    need_slots,
                    want_slots,
                    u32::try_from(sizing.lease.as_millis()).unwrap_or(u32::MAX),
                ]
                .map(|n| n.to_string().into()),
            )
            .collect();
            queued(self.redis.run::<Vec<i64>>(
                &LEASE,
                vec![rate_key(tenant), self.slots_key.clone()],
                args,
            ))
        };
        let reply = call.await?;
        let [status, remaining, retry_ms, reset_ms, others, tokens, slots] = reply[..] else {
            return Err(CacheError("unexpected reply from the limits script".into()));
        };
        let count = |v: i64| u32::try_from(v).unwrap_or(0);
        let millis = |v: i64| Duration::from_millis(u64::try_from(v).unwrap_or(0));
        let now = Instant::now();
        let mut state = locked(&self.state);
        state.remaining = count(remaining);
        state.reset_at = now + millis(reset_ms);
        state.others = count(others);
        match status {
            1 => {
                state.renewed_at = now;
                state.held += count(slots);
                if count(tokens) > 0 {
                    state.tokens = count(tokens);
                    state.tokens_until = now + TOKENS_VALID;
                    state.batch = count(tokens);
                    state.batch_at = now;
                }
                // Requests decided from the lease meanwhile may have spent
                // the grant: then the caller asks again.
                if !(state.has_tokens(now) && state.in_use < state.held) {
                    return Ok(None);
                }
                state.tokens -= 1;
                state.in_use += 1;
                state.last_used = now;
                Ok(Some(Ok(state.rate_state(sizing, now))))
            }
            0 => Ok(Some(Err(Refusal {
                kind: LimitKind::Rate,
                retry_after: millis(retry_ms),
                state: state.rate_state(sizing, now),
            }))),
            _ => Ok(Some(Err(Refusal {
                kind: LimitKind::Concurrency,
                retry_after: millis(retry_ms),
                state: state.rate_state(sizing, now),
            }))),
        }
    }

    /// Count an answer from Redis, keeping a refusal for the requests that
    /// waited for it.
    fn finish_round(&self, decision: &Result<Option<Result<RateState, Refusal>>, CacheError>) {
        let round = self.round.fetch_add(1, Ordering::AcqRel) + 1;
        if let Ok(Some(Err(refusal))) = decision {
            *locked(&self.refused) = Some((round, *refusal));
        }
    }

    /// A refusal given after `round` (while the caller waited): the budget
    /// was spent after it asked, so it is refused as of then.
    fn refused_since(&self, round: u64) -> Option<Refusal> {
        match *locked(&self.refused) {
            Some((at, refusal)) if at > round => Some(refusal),
            _ => None,
        }
    }

    /// A request of this lease is over: its slot is free here, and slots
    /// beyond the block's slack go back to Redis. `slack` is the tier's at
    /// admission.
    pub(super) fn release(&self, slack: u32) {
        let mut state = locked(&self.state);
        state.in_use = state.in_use.saturating_sub(1);
        state.last_used = Instant::now();
        let idle = state.held.saturating_sub(state.in_use);
        let keep = if slack == 0 { 0 } else { slack * 2 };
        if idle > keep {
            let back = idle - slack;
            state.held -= back;
            self.give_back(back);
        }
    }

    /// Queue `HINCRBY -n` on the connection now (called with the state
    /// held, so it is ordered after every call that counted those slots)
    /// and let its reply arrive in the background; slots that cannot be
    /// given back stop counting at the lease's end.
    fn give_back(&self, n: u32) {
        use fred::interfaces::HashesInterface as _;
        let Ok(client) = self.redis.fast() else {
            return;
        };
        let key = self.slots_key.clone();
        let field = self.holder.clone();
        let back = -i64::from(n);
        let call = queued(async move {
            let _: Result<i64, _> = client.hincrby(key, field, back).await;
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(call);
        }
    }
}

/// A future polled once now, so that a Redis command inside it is handed
/// to the connection's writer (in order) before anything sent later.
fn queued<F: Future>(future: F) -> Queued<F> {
    let mut future = Box::pin(future);
    let mut cx = Context::from_waker(Waker::noop());
    match future.as_mut().poll(&mut cx) {
        Poll::Ready(out) => Queued::Done(Some(out)),
        Poll::Pending => Queued::Sent(future),
    }
}

enum Queued<F: Future> {
    Sent(Pin<Box<F>>),
    Done(Option<F::Output>),
}

impl<F: Future> Future for Queued<F>
where
    F::Output: Unpin,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        match self.get_mut() {
            Queued::Sent(future) => future.as_mut().poll(cx),
            Queued::Done(out) => match out.take() {
                Some(out) => Poll::Ready(out),
                None => Poll::Pending,
            },
        }
    }
}

pub(super) fn rate_key(tenant: &TenantId) -> String {
    format!("{{{}}}:rate", tenant.as_str())
}

fn slots_key(tenant: &TenantId) -> String {
    format!("{{{}}}:slots", tenant.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use analyzer_domain::tenants::Tier;

    fn sizing(limit: u32, cap: u32, tasks: u32) -> Sizing {
        let mut limits = TierLimits::defaults(Tier::Standard);
        limits.requests_per_minute = limit;
        limits.concurrent_requests = cap;
        Sizing::new(&limits, tasks, Duration::from_secs(60))
    }

    #[test]
    fn small_limits_are_leased_one_request_at_a_time() {
        let standard = sizing(100, 20, 3);
        assert_eq!(standard.max_batch, 1);
        assert_eq!(standard.slack, 0);
        assert_eq!(standard.batch(1_000, Duration::from_millis(1)), 1);
        let premium = sizing(500, 100, 3);
        assert_eq!(premium.max_batch, 3);
        assert_eq!(premium.slack, 0);
    }

    #[test]
    fn a_batch_covers_a_tenth_of_a_second_of_the_recent_rate() {
        let big = sizing(100_000_000, 100_000, 3);
        assert_eq!(big.slack, 666);
        // 2,000 spent in 100 ms: 20,000 a second, so 2,000 more.
        assert_eq!(big.batch(2_000, Duration::from_millis(100)), 2_000);
        // One spent in a second: one at a time.
        assert_eq!(big.batch(1, Duration::from_secs(1)), 1);
        // Never more than 2% of the limit among the tasks.
        let fleet = sizing(6_000, 100, 3);
        assert_eq!(fleet.batch(1_000_000, Duration::from_millis(1)), 40);
    }
}
