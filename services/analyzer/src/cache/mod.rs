//! The query cache: search results (and remote query embeddings) by tenant.
//!
//! Two implementations of one trait: Redis (fred) when `REDIS_URL` is set,
//! else a bounded in-process cache. Keys are always built here as
//! `{tenant}:…`, so a tenant's keys share a Redis cluster hash slot and no
//! caller can read another tenant's entry. Search results carry the
//! tenant's data generation they were computed at, and are served only at
//! that generation (`generations`), so a change to a tenant's data makes
//! its old entries unreachable at once.
//!
//! The cache is an accelerator: every failure is reported to the caller,
//! which carries on without it, and counted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use secrecy::SecretString;

use analyzer_domain::tenants::TenantId;

mod bound;
pub mod generations;
mod memory;
mod redis;

pub use bound::in_process_bound;
pub use memory::MemoryCache;
pub use redis::{RedisCache, Script};

/// The query cache.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// `redis://…` or `rediss://…`; `None` means the in-process cache.
    pub redis_url: Option<SecretString>,
    /// How long a cached search result lives.
    pub ttl: Duration,
    /// Bound of the in-process cache, in bytes; `None`: from the memory
    /// the process is given (`cache::in_process_bound`).
    pub memory_max_bytes: Option<usize>,
    /// Connect and command timeout for Redis.
    pub redis_timeout: Duration,
}

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
    /// Remove the tenant's entries whose keys start with `prefix` (what a
    /// deleted collection leaves), returning how many there were.
    async fn forget(&self, tenant: &TenantId, prefix: &str) -> Result<u64, CacheError>;
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

#[cfg(test)]
mod tests;
