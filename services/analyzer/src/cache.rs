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
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
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
    /// Store an entry for `ttl`.
    async fn put(
        &self,
        tenant: &TenantId,
        key: &str,
        value: Bytes,
        ttl: Duration,
    ) -> Result<(), CacheError>;
    /// Whether the cache answers now.
    async fn health(&self) -> Result<(), CacheError>;
}

/// The key as stored: tenant first, in braces (a Redis Cluster hash tag).
pub fn full_key(tenant: &TenantId, key: &str) -> String {
    format!("{{{}}}:{key}", tenant.as_str())
}

// ---- in-process ----------------------------------------------------------

/// The embedded cache: bounded in bytes, entries expire, oldest go first.
#[derive(Debug)]
pub struct MemoryCache {
    max_bytes: usize,
    inner: Mutex<MemoryInner>,
}

#[derive(Debug, Default)]
struct MemoryInner {
    entries: HashMap<String, (Bytes, Instant)>,
    // Insertion order, for eviction; may hold keys already replaced or gone.
    order: VecDeque<String>,
    bytes: usize,
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
        if let Some((value, _)) = self.entries.remove(key) {
            self.bytes -= value.len() + key.len();
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
        match inner.entries.get(&key) {
            Some((value, expires)) if *expires > Instant::now() => Ok(Some(value.clone())),
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
    ) -> Result<(), CacheError> {
        let key = full_key(tenant, key);
        let size = value.len() + key.len();
        if size > self.max_bytes {
            return Ok(()); // never fits; not an error
        }
        let mut inner = self.lock()?;
        inner.remove(&key);
        while inner.bytes + size > self.max_bytes {
            let Some(oldest) = inner.order.pop_front() else {
                break;
            };
            inner.remove(&oldest);
        }
        inner.bytes += size;
        inner.order.push_back(key.clone());
        inner.entries.insert(key, (value, Instant::now() + ttl));
        // Keep the order queue from growing without bound through replaced keys.
        if inner.order.len() > 2 * inner.entries.len() + 64 {
            let MemoryInner { entries, order, .. } = &mut *inner;
            order.retain(|k| entries.contains_key(k));
        }
        Ok(())
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

    fn options(&self) -> fred::types::config::Options {
        fred::types::config::Options {
            // Fail at once when disconnected rather than wait for a reconnect.
            fail_fast: true,
            ..Default::default()
        }
    }

    /// Fail at once while disconnected (fred would otherwise wait).
    fn connected(&self) -> Result<(), CacheError> {
        if self.client.is_connected() {
            Ok(())
        } else {
            Err(CacheError("not connected".into()))
        }
    }

    /// The underlying client, for shared state beyond the cache (limits).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Close the connection.
    pub async fn quit(&self) {
        let _ = self.client.quit().await;
    }
}

fn redis_error(e: fred::error::Error) -> CacheError {
    CacheError(e.to_string())
}

#[async_trait]
impl Cache for RedisCache {
    fn backend(&self) -> &'static str {
        "redis"
    }

    async fn get(&self, tenant: &TenantId, key: &str) -> Result<Option<Bytes>, CacheError> {
        self.connected()?;
        self.client
            .with_options(&self.options())
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
    ) -> Result<(), CacheError> {
        self.connected()?;
        let seconds = i64::try_from(ttl.as_secs().max(1)).unwrap_or(i64::MAX);
        self.client
            .with_options(&self.options())
            .set::<(), _, _>(
                full_key(tenant, key),
                value,
                Some(Expiration::EX(seconds)),
                None,
                false,
            )
            .await
            .map_err(redis_error)
    }

    async fn health(&self) -> Result<(), CacheError> {
        self.connected()?;
        self.client
            .with_options(&self.options())
            .ping::<()>(None)
            .await
            .map_err(redis_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn entries_are_per_tenant() {
        let cache = MemoryCache::new(1 << 20);
        let (a, b) = (TenantId::generate(), TenantId::generate());
        cache
            .put(&a, "k", Bytes::from_static(b"a's"), Duration::from_secs(60))
            .await
            .expect("put");
        assert_eq!(
            cache.get(&a, "k").await.expect("get"),
            Some(Bytes::from_static(b"a's"))
        );
        assert_eq!(cache.get(&b, "k").await.expect("get"), None);
    }

    #[tokio::test]
    async fn the_memory_cache_stays_within_its_bound_dropping_the_oldest() {
        let tenant = TenantId::generate();
        let key_len = full_key(&tenant, "k0").len();
        let cache = MemoryCache::new(3 * (100 + key_len));
        for i in 0..5 {
            cache
                .put(
                    &tenant,
                    &format!("k{i}"),
                    Bytes::from(vec![0u8; 100]),
                    Duration::from_secs(60),
                )
                .await
                .expect("put");
        }
        assert_eq!(cache.get(&tenant, "k0").await.expect("get"), None);
        assert_eq!(cache.get(&tenant, "k1").await.expect("get"), None);
        assert!(cache.get(&tenant, "k4").await.expect("get").is_some());
        let bytes = cache.inner.lock().expect("lock").bytes;
        assert!(bytes <= 3 * (100 + key_len), "{bytes}");
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
            )
            .await
            .expect("put");
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(cache.get(&tenant, "k").await.expect("get"), None);
    }

    #[test]
    fn keys_start_with_the_tenant_hash_tag() {
        let tenant = TenantId::generate();
        assert_eq!(full_key(&tenant, "x"), format!("{{{tenant}}}:x"));
    }
}
