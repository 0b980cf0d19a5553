//! The query cache: search results (and remote query embeddings) by tenant.
//!
//! Two implementations of one trait: Redis (fred) when `REDIS_URL` is set,
//! else a bounded in-process cache. Keys are always built here as
//! `{tenant}:…`, so a tenant's keys share a Redis cluster hash slot and no
//! caller can read another tenant's entry. Callers put the tenant's data
//! generation in the key (see `store::Db::search_context`), so a change to
//! a tenant's data makes its old entries unreachable at once.
//!
//! The cache is an accelerator: every failure is reported to the caller,
//! which carries on without it, and counted.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use fred::prelude::*;

use crate::tenants::TenantId;

/// A cache failure (timeout, connection down). The text is for logs.
#[derive(Debug, thiserror::Error)]
#[error("cache unavailable: {0}")]
pub struct CacheError(pub String);

/// Counters of cache outcomes, for `/ready` and metrics.
#[derive(Debug, Default)]
pub struct CacheStats {
    /// Lookups that found an entry.
    pub hits: AtomicU64,
    /// Lookups that found nothing.
    pub misses: AtomicU64,
    /// Calls that failed, so the cache was bypassed.
    pub bypassed: AtomicU64,
}

impl CacheStats {
    /// Count one outcome of a lookup.
    pub fn record<T>(&self, outcome: &Result<Option<T>, CacheError>) {
        let counter = match outcome {
            Ok(Some(_)) => &self.hits,
            Ok(None) => &self.misses,
            Err(_) => &self.bypassed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A byte cache partitioned by tenant.
#[async_trait]
pub trait Cache: Send + Sync {
    /// `memory` or `redis`.
    fn backend(&self) -> &'static str;
    /// The entry stored under the tenant's `key`, if present and fresh.
    async fn get(&self, tenant: &TenantId, key: &str) -> Result<Option<Bytes>, CacheError>;
    /// Store an entry for `ttl`, keeping the tenant's entries within
    /// `budget` bytes (keys and values; in-process, what they cost the
    /// process, see [`MemoryCache`]): its oldest entries go first, and an
    /// entry larger than the budget is not stored.
    async fn put(
        &self,
        tenant: &TenantId,
        key: &str,
        value: Bytes,
        ttl: Duration,
        budget: u64,
    ) -> Result<(), CacheError>;
    /// Bytes the tenant's entries hold now.
    async fn used_bytes(&self, tenant: &TenantId) -> Result<u64, CacheError>;
    /// Whether the cache answers now.
    async fn health(&self) -> Result<(), CacheError>;
    /// Whether the cache is connected, without a round trip (metrics).
    fn is_up(&self) -> bool {
        true
    }
}

/// The key as stored: tenant first, in braces (a Redis Cluster hash tag).
pub fn full_key(tenant: &TenantId, key: &str) -> String {
    format!("{{{}}}:{key}", tenant.as_str())
}

// ---- in-process ----------------------------------------------------------

/// The embedded cache: bounded in bytes, entries expire, oldest go first.
///
/// The bound, a tenant's budget and `used_bytes` count what an entry costs
/// the process ([`footprint`]), not only its key and value: a heap profile
/// of the load harness found the cache at 91 MB under a 64 MiB bound that
/// counted keys and values alone (BENCHMARKS.md, memory).
#[derive(Debug)]
pub struct MemoryCache {
    max_bytes: usize,
    inner: Mutex<MemoryInner>,
}

/// Each key is held once (`Arc<str>`) by the map and both order queues.
#[derive(Debug, Default)]
struct MemoryInner {
    entries: HashMap<Arc<str>, Entry>,
    // Insertion order, for eviction; may hold keys already replaced or gone.
    order: VecDeque<Arc<str>>,
    bytes: usize,
    // By tenant id: the tenant of an entry is the start of its key.
    tenants: HashMap<String, TenantShare>,
}

#[derive(Debug)]
struct Entry {
    value: Bytes,
    expires: Instant,
}

/// What an entry of the in-process cache holds beyond its key's and
/// value's allocations: its slot in the map (64 bytes, and hashbrown keeps
/// between 8/7 and 16/7 slots an entry), its place in the two order
/// queues (which may hold a replaced key until they are compacted, and
/// grow by doubling), and the header a value gets when it is first shared.
const ENTRY_OVERHEAD: usize = 256;

/// The size an allocator hands out for `len` bytes: jemalloc's size
/// classes, like most allocators', are 16 bytes apart up to 64, then four
/// per doubling (a 2,100-byte result takes 2,560).
fn allocated(len: usize) -> usize {
    if len <= 64 {
        return len.next_multiple_of(16).max(16);
    }
    let step = 1usize << (usize::BITS - (len - 1).leading_zeros() - 3);
    len.next_multiple_of(step)
}

/// The memory an entry of the in-process cache costs: its key (an
/// `Arc<str>`, 16 bytes of counts before the text), its value, both as
/// allocated, and [`ENTRY_OVERHEAD`].
fn footprint(key: &str, value_len: usize) -> usize {
    allocated(16 + key.len()) + allocated(value_len) + ENTRY_OVERHEAD
}

/// The tenant id at the start of a key made by [`full_key`].
fn tenant_of(key: &str) -> &str {
    key.strip_prefix('{')
        .and_then(|rest| rest.split_once('}'))
        .map_or("", |(tenant, _)| tenant)
}

/// One tenant's part of the cache, for its budget.
#[derive(Debug, Default)]
struct TenantShare {
    // Insertion order; may hold keys already replaced or gone.
    order: VecDeque<Arc<str>>,
    bytes: usize,
    entries: usize,
}

impl MemoryCache {
    /// A cache holding at most `max_bytes` of values and keys.
    pub fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            inner: Mutex::new(MemoryInner::default()),
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, MemoryInner>, CacheError> {
        self.inner
            .lock()
            .map_err(|_| CacheError("memory cache lock poisoned".into()))
    }
}

impl MemoryInner {
    fn remove(&mut self, key: &str) {
        if let Some(entry) = self.entries.remove(key) {
            let size = footprint(key, entry.value.len());
            self.bytes -= size;
            let tenant = tenant_of(key);
            if let Some(share) = self.tenants.get_mut(tenant) {
                share.bytes -= size;
                share.entries -= 1;
                if share.entries == 0 {
                    self.tenants.remove(tenant);
                }
            }
        }
    }

    /// Remove the tenant's oldest entries until `size` more bytes fit in
    /// `budget`.
    fn make_room(&mut self, tenant: &TenantId, size: usize, budget: usize) {
        loop {
            let Some(share) = self.tenants.get_mut(tenant.as_str()) else {
                return;
            };
            if share.bytes + size <= budget {
                return;
            }
            let Some(oldest) = share.order.pop_front() else {
                return;
            };
            self.remove(&oldest);
        }
    }
}

#[async_trait]
impl Cache for MemoryCache {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn get(&self, tenant: &TenantId, key: &str) -> Result<Option<Bytes>, CacheError> {
        let key = full_key(tenant, key);
        let mut inner = self.lock()?;
        match inner.entries.get(key.as_str()) {
            Some(entry) if entry.expires > Instant::now() => Ok(Some(entry.value.clone())),
            Some(_) => {
                inner.remove(&key);
                Ok(None)
            }
            None => Ok(None),
        }
    }

    async fn put(
        &self,
        tenant: &TenantId,
        key: &str,
        value: Bytes,
        ttl: Duration,
        budget: u64,
    ) -> Result<(), CacheError> {
        let key: Arc<str> = full_key(tenant, key).into();
        let size = footprint(&key, value.len());
        let budget = usize::try_from(budget).unwrap_or(usize::MAX);
        if size > self.max_bytes || size > budget {
            return Ok(()); // never fits; not an error
        }
        // A copy of exactly its length: a `Bytes` made from a `Vec` keeps
        // the vector's whole capacity (up to twice the length of a
        // serialized result), which the bound would not see: the cache
        // held ~97 MiB at its 64 MiB bound (BENCHMARKS.md, memory).
        let value = Bytes::copy_from_slice(&value);
        let mut inner = self.lock()?;
        inner.remove(&key);
        inner.make_room(tenant, size, budget);
        while inner.bytes + size > self.max_bytes {
            let Some(oldest) = inner.order.pop_front() else {
                break;
            };
            inner.remove(&oldest);
        }
        inner.bytes += size;
        inner.order.push_back(Arc::clone(&key));
        let share = inner.tenants.entry(tenant.as_str().to_owned()).or_default();
        share.bytes += size;
        share.entries += 1;
        share.order.push_back(Arc::clone(&key));
        let stale_share = share.order.len() > 2 * share.entries + 64;
        inner.entries.insert(
            key,
            Entry {
                value,
                expires: Instant::now() + ttl,
            },
        );
        // Keep the order queues from growing without bound through replaced keys.
        let MemoryInner {
            entries,
            order,
            tenants,
            ..
        } = &mut *inner;
        if order.len() > 2 * entries.len() + 64 {
            order.retain(|k| entries.contains_key(k));
        }
        if stale_share && let Some(share) = tenants.get_mut(tenant.as_str()) {
            share.order.retain(|k| entries.contains_key(k));
        }
        Ok(())
    }

    async fn used_bytes(&self, tenant: &TenantId) -> Result<u64, CacheError> {
        Ok(self
            .lock()?
            .tenants
            .get(tenant.as_str())
            .map_or(0, |share| share.bytes as u64))
    }

    async fn health(&self) -> Result<(), CacheError> {
        self.lock().map(|_| ())
    }
}

// ---- Redis ---------------------------------------------------------------

/// Redis through fred, with short timeouts and reconnection in the
/// background: while Redis is slow or down, calls fail fast and the service
/// answers without the cache.
pub struct RedisCache {
    client: Client,
}

impl std::fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCache").finish_non_exhaustive()
    }
}

impl RedisCache {
    /// Build the client and connect, waiting a short, bounded time for the
    /// first connection: a Redis that is down at start does not stop the
    /// service, which keeps reconnecting in the background.
    pub async fn connect(url: &str, timeout: Duration) -> Result<Self, CacheError> {
        let mut config =
            Config::from_url(url).map_err(|e| CacheError(format!("REDIS_URL: {e}")))?;
        // Keep retrying the first connection too, instead of giving up.
        config.fail_fast = false;
        let client = Builder::from_config(config)
            .with_connection_config(|c| {
                c.connection_timeout = timeout;
                c.internal_command_timeout = timeout;
                c.max_command_attempts = 1;
                // Commands issued while disconnected are not queued for later.
                c.max_command_buffer_len = 0;
            })
            .with_performance_config(|p| {
                p.default_command_timeout = timeout;
            })
            .set_policy(ReconnectPolicy::new_exponential(0, 100, 5_000, 2))
            .build()
            .map_err(|e| CacheError(format!("REDIS_URL: {e}")))?;
        let _connection_task = client.connect();
        let first = (timeout * 8).max(Duration::from_secs(1));
        match tokio::time::timeout(first, client.wait_for_connect()).await {
            Ok(Ok(())) => tracing::info!("cache: connected to Redis"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cache: Redis unreachable; serving without it until it returns");
            }
            Err(_) => tracing::warn!(
                "cache: Redis not connected within {first:?}; serving without it until it returns"
            ),
        }
        Ok(Self { client })
    }

    /// The client for one call, failing at once while disconnected (fred
    /// would otherwise wait for a reconnect). Also serves the fleet-wide
    /// limits, which share this connection.
    pub fn fast(&self) -> Result<fred::clients::WithOptions<Client>, CacheError> {
        if !self.client.is_connected() {
            return Err(CacheError("not connected".into()));
        }
        Ok(self.client.with_options(&fred::types::config::Options {
            fail_fast: true,
            ..Default::default()
        }))
    }

    /// Close the connection.
    pub async fn quit(&self) {
        let _ = self.client.quit().await;
    }
}

pub(crate) fn redis_error(e: fred::error::Error) -> CacheError {
    CacheError(e.to_string())
}

/// Stores one entry within the tenant's budget. KEYS: the entry, the
/// tenant's index (entry key by expiry time), its sizes (entry key to
/// bytes), its byte total; all share the tenant's hash tag. ARGV: value,
/// ttl ms, budget, size. Expired entries leave the books first, then the
/// oldest entries are removed until the new one fits.
const PUT_LUA: &str = r"
local ttl = tonumber(ARGV[2])
local budget = tonumber(ARGV[3])
local size = tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local total = tonumber(redis.call('GET', KEYS[4]) or '0')
local function forget(key)
  local s = tonumber(redis.call('HGET', KEYS[3], key) or '0')
  redis.call('HDEL', KEYS[3], key)
  redis.call('ZREM', KEYS[2], key)
  total = total - s
end
for _, key in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)) do
  forget(key)
end
forget(KEYS[1])
while total + size > budget do
  local oldest = redis.call('ZRANGE', KEYS[2], 0, 0)
  if #oldest == 0 then break end
  redis.call('DEL', oldest[1])
  forget(oldest[1])
end
if total < 0 then total = 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
redis.call('ZADD', KEYS[2], now + ttl, KEYS[1])
redis.call('HSET', KEYS[3], KEYS[1], size)
total = total + size
redis.call('SET', KEYS[4], total)
for i = 2, 4 do redis.call('PEXPIRE', KEYS[i], ttl) end
return total
";

/// The tenant's cache books in Redis: index, sizes, total.
fn books(tenant: &TenantId) -> [String; 3] {
    ["cache:index", "cache:sizes", "cache:bytes"].map(|name| full_key(tenant, name))
}

#[async_trait]
impl Cache for RedisCache {
    fn backend(&self) -> &'static str {
        "redis"
    }

    async fn get(&self, tenant: &TenantId, key: &str) -> Result<Option<Bytes>, CacheError> {
        self.fast()?
            .get::<Option<Bytes>, _>(full_key(tenant, key))
            .await
            .map_err(redis_error)
    }

    async fn put(
        &self,
        tenant: &TenantId,
        key: &str,
        value: Bytes,
        ttl: Duration,
        budget: u64,
    ) -> Result<(), CacheError> {
        use fred::interfaces::LuaInterface as _;
        let key = full_key(tenant, key);
        let size = (value.len() + key.len()) as u64;
        if size > budget {
            return Ok(()); // never fits; not an error
        }
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let [index, sizes, total] = books(tenant);
        let _total: i64 = self
            .fast()?
            .eval(
                PUT_LUA,
                vec![key, index, sizes, total],
                vec![
                    fred::types::Value::Bytes(value),
                    ttl_ms.to_string().into(),
                    budget.to_string().into(),
                    size.to_string().into(),
                ],
            )
            .await
            .map_err(redis_error)?;
        Ok(())
    }

    async fn used_bytes(&self, tenant: &TenantId) -> Result<u64, CacheError> {
        let [_, _, total] = books(tenant);
        let bytes: Option<u64> = self.fast()?.get(total).await.map_err(redis_error)?;
        Ok(bytes.unwrap_or(0))
    }

    async fn health(&self) -> Result<(), CacheError> {
        self.fast()?.ping::<()>(None).await.map_err(redis_error)
    }

    fn is_up(&self) -> bool {
        self.client.is_connected()
    }
}

/// The in-process cache's bound when `ANALYZER_CACHE_MAX_BYTES` is unset.
const DEFAULT_BOUND: usize = 32 * 1024 * 1024;

/// The in-process cache's bound: `explicit` (`ANALYZER_CACHE_MAX_BYTES`)
/// when set, else a sixteenth of the memory limit of the process's cgroup
/// (a container's limit), at most 32 MiB and at least 1 MiB. The cache
/// fills to its bound in seconds under new queries, and it shares the
/// limit with everything else: at 200 MB a 32 MiB cache left the heap under
/// ingest within a few MB of the limit and the server was killed for memory
/// (BENCHMARKS.md). From 512 MB up the bound is the full 32 MiB.
pub fn in_process_bound(explicit: Option<usize>) -> usize {
    let limit = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|own| cgroup_memory_limit(&own, |p| std::fs::read_to_string(p).ok()));
    let bound = bound_for(explicit, limit);
    tracing::info!(
        bytes = bound,
        memory_limit = limit,
        source = if explicit.is_some() {
            "ANALYZER_CACHE_MAX_BYTES"
        } else if limit.is_some() {
            "memory limit"
        } else {
            "default"
        },
        "in-process query cache bound"
    );
    bound
}

/// See [`in_process_bound`].
fn bound_for(explicit: Option<usize>, memory_limit: Option<u64>) -> usize {
    explicit.unwrap_or_else(|| match memory_limit {
        Some(limit) => usize::try_from(limit / 16)
            .unwrap_or(usize::MAX)
            .clamp(1024 * 1024, DEFAULT_BOUND),
        None => DEFAULT_BOUND,
    })
}

/// The memory limit of the cgroup named in `own` (the text of
/// `/proc/self/cgroup`), read through `read`: cgroup v2's `memory.max`, or
/// v1's `memory.limit_in_bytes`. `None` when there is none (`max`, or v1's
/// "unlimited", a number near 2^63) or it cannot be read.
fn cgroup_memory_limit(own: &str, read: impl Fn(&str) -> Option<String>) -> Option<u64> {
    let file = own.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (id, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let path = path.trim_end_matches('/');
        if controllers.split(',').any(|c| c == "memory") {
            Some(format!("/sys/fs/cgroup/memory{path}/memory.limit_in_bytes"))
        } else if id == "0" && controllers.is_empty() {
            Some(format!("/sys/fs/cgroup{path}/memory.max"))
        } else {
            None
        }
    })?;
    // v2's "max" is no number; v1's "unlimited" is one near 2^63.
    read(&file)?
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|&limit| limit < 1 << 62)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1024 * 1024;

    #[test]
    fn the_bound_follows_the_memory_limit_unless_set() {
        assert_eq!(bound_for(Some(5), Some(200_000_000)), 5);
        assert_eq!(bound_for(None, None), 32 * MIB);
        assert_eq!(bound_for(None, Some(200_000_000)), 12_500_000);
        assert_eq!(bound_for(None, Some(1024 * 1024 * 1024)), 32 * MIB);
        assert_eq!(bound_for(None, Some(8 * MIB as u64)), MIB);
    }

    #[test]
    fn the_limit_is_read_from_the_process_own_cgroup() {
        let files = |wanted: &'static str, content: &'static str| {
            move |path: &str| (path == wanted).then(|| content.to_owned())
        };
        // cgroup v2, in a container (its own namespace: "/") and nested.
        assert_eq!(
            cgroup_memory_limit("0::/\n", files("/sys/fs/cgroup/memory.max", "209715200\n")),
            Some(209_715_200)
        );
        assert_eq!(
            cgroup_memory_limit(
                "0::/system.slice/analyzer.service\n",
                files(
                    "/sys/fs/cgroup/system.slice/analyzer.service/memory.max",
                    "536870912\n"
                )
            ),
            Some(536_870_912)
        );
        assert_eq!(
            cgroup_memory_limit("0::/\n", files("/sys/fs/cgroup/memory.max", "max\n")),
            None
        );
        // cgroup v1: the memory controller's line, among others.
        let v1 = "12:pids:/\n9:memory:/analyzer-load-7\n1:name=systemd:/\n";
        assert_eq!(
            cgroup_memory_limit(
                v1,
                files(
                    "/sys/fs/cgroup/memory/analyzer-load-7/memory.limit_in_bytes",
                    "199999488\n"
                )
            ),
            Some(199_999_488)
        );
        // v1's "no limit", and a file that cannot be read.
        assert_eq!(
            cgroup_memory_limit(
                "9:memory:/\n",
                files(
                    "/sys/fs/cgroup/memory/memory.limit_in_bytes",
                    "9223372036854771712\n"
                )
            ),
            None
        );
        assert_eq!(cgroup_memory_limit("9:memory:/\n", |_| None), None);
        assert_eq!(cgroup_memory_limit("", |_| Some("1".into())), None);
    }

    #[tokio::test]
    async fn entries_are_per_tenant() {
        let cache = MemoryCache::new(1 << 20);
        let (a, b) = (TenantId::generate(), TenantId::generate());
        cache
            .put(
                &a,
                "k",
                Bytes::from_static(b"a's"),
                Duration::from_secs(60),
                u64::MAX,
            )
            .await
            .expect("put");
        assert_eq!(
            cache.get(&a, "k").await.expect("get"),
            Some(Bytes::from_static(b"a's"))
        );
        assert_eq!(cache.get(&b, "k").await.expect("get"), None);
    }

    #[tokio::test]
    async fn the_memory_cache_keeps_a_copy_of_the_value_not_the_callers_buffer() {
        // A `Bytes` from a `Vec` holds the vector's whole capacity; the
        // cache counts the length, so it must hold only that.
        let tenant = TenantId::generate();
        let cache = MemoryCache::new(1 << 20);
        let mut buffer = Vec::with_capacity(64 * 1024);
        buffer.extend_from_slice(b"a result");
        let value = Bytes::from(buffer);
        cache
            .put(
                &tenant,
                "k",
                value.clone(),
                Duration::from_secs(60),
                u64::MAX,
            )
            .await
            .expect("put");
        let stored = cache.get(&tenant, "k").await.expect("get").expect("hit");
        assert_eq!(stored, value);
        assert_ne!(stored.as_ptr(), value.as_ptr());
    }

    #[tokio::test]
    async fn the_memory_cache_stays_within_its_bound_dropping_the_oldest() {
        let tenant = TenantId::generate();
        let entry = footprint(&full_key(&tenant, "k0"), 100);
        let cache = MemoryCache::new(3 * entry);
        for i in 0..5 {
            cache
                .put(
                    &tenant,
                    &format!("k{i}"),
                    Bytes::from(vec![0u8; 100]),
                    Duration::from_secs(60),
                    u64::MAX,
                )
                .await
                .expect("put");
        }
        assert_eq!(cache.get(&tenant, "k0").await.expect("get"), None);
        assert_eq!(cache.get(&tenant, "k1").await.expect("get"), None);
        assert!(cache.get(&tenant, "k4").await.expect("get").is_some());
        let bytes = cache.inner.lock().expect("lock").bytes;
        assert!(bytes <= 3 * entry, "{bytes}");
    }

    #[tokio::test]
    async fn small_entries_count_what_they_cost_not_only_their_length() {
        // A million bytes hold about 3,000 one-byte entries, not the 20,000
        // their keys and values alone would let in.
        let tenant = TenantId::generate();
        let cache = MemoryCache::new(1_000_000);
        for i in 0..20_000 {
            cache
                .put(
                    &tenant,
                    &format!("k{i}"),
                    Bytes::from_static(b"v"),
                    Duration::from_secs(60),
                    u64::MAX,
                )
                .await
                .expect("put");
        }
        let (bytes, entries) = {
            let inner = cache.inner.lock().expect("lock");
            (inner.bytes, inner.entries.len())
        };
        let per_entry = footprint(&full_key(&tenant, "k19999"), 1);
        assert!(per_entry > ENTRY_OVERHEAD + 50, "{per_entry}");
        assert!(bytes <= 1_000_000, "{bytes}");
        assert!(entries <= 1_000_000 / per_entry + 1, "{entries} entries");
        assert!(
            entries >= 1_000_000 / (per_entry + 16) - 1,
            "{entries} entries"
        );
        assert_eq!(cache.used_bytes(&tenant).await.expect("used"), bytes as u64);
    }

    #[test]
    fn allocations_are_counted_at_the_allocators_size_classes() {
        for (len, size) in [
            (0, 16),
            (1, 16),
            (17, 32),
            (64, 64),
            (65, 80),
            (128, 128),
            (129, 160),
            (2_100, 2_560),
            (4_096, 4_096),
            (4_097, 5_120),
            (100_000, 114_688),
        ] {
            assert_eq!(allocated(len), size, "{len}");
        }
    }

    #[test]
    fn the_tenant_of_a_key_is_its_hash_tag() {
        let tenant = TenantId::generate();
        assert_eq!(
            tenant_of(&full_key(&tenant, "search:x:{y}")),
            tenant.as_str()
        );
        assert_eq!(tenant_of("no tag"), "");
    }

    #[tokio::test(start_paused = true)]
    async fn entries_expire() {
        let cache = MemoryCache::new(1 << 20);
        let tenant = TenantId::generate();
        cache
            .put(
                &tenant,
                "k",
                Bytes::from_static(b"v"),
                Duration::from_secs(5),
                u64::MAX,
            )
            .await
            .expect("put");
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(cache.get(&tenant, "k").await.expect("get"), None);
    }

    #[tokio::test]
    async fn each_tenant_stays_within_its_budget_dropping_its_oldest() {
        let cache = MemoryCache::new(1 << 20);
        let (a, b) = (TenantId::generate(), TenantId::generate());
        let entry = footprint(&full_key(&a, "k0"), 100);
        let budget = 3 * entry as u64;
        let value = || Bytes::from(vec![0u8; 100]);
        cache
            .put(&b, "k0", value(), Duration::from_secs(60), budget)
            .await
            .expect("put");
        for i in 0..5 {
            cache
                .put(
                    &a,
                    &format!("k{i}"),
                    value(),
                    Duration::from_secs(60),
                    budget,
                )
                .await
                .expect("put");
        }
        assert_eq!(cache.used_bytes(&a).await.expect("used"), budget);
        for (key, kept) in [("k0", false), ("k1", false), ("k2", true), ("k4", true)] {
            assert_eq!(
                cache.get(&a, key).await.expect("get").is_some(),
                kept,
                "{key}"
            );
        }
        // The other tenant's entry was not evicted for A's.
        assert!(cache.get(&b, "k0").await.expect("get").is_some());
        assert_eq!(cache.used_bytes(&b).await.expect("used"), entry as u64);
        // Replacing an entry counts it once; one larger than the budget is
        // not stored.
        cache
            .put(&a, "k4", value(), Duration::from_secs(60), budget)
            .await
            .expect("put");
        assert_eq!(cache.used_bytes(&a).await.expect("used"), budget);
        cache
            .put(
                &a,
                "huge",
                Bytes::from(vec![0u8; 4000]),
                Duration::from_secs(60),
                budget,
            )
            .await
            .expect("put");
        assert_eq!(cache.get(&a, "huge").await.expect("get"), None);
        assert_eq!(cache.used_bytes(&a).await.expect("used"), budget);
    }

    #[test]
    fn keys_start_with_the_tenant_hash_tag() {
        let tenant = TenantId::generate();
        assert_eq!(full_key(&tenant, "x"), format!("{{{tenant}}}:x"));
    }
}
