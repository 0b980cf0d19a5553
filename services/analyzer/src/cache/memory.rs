//! The embedded cache: bounded in bytes, entries expire, oldest go first,
//! each tenant within its budget.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use analyzer_domain::tenants::TenantId;
use async_trait::async_trait;
use bytes::Bytes;
use tokio::time::Instant;

use super::{Cache, CacheError, full_key};

/// The embedded cache: bounded in bytes, entries expire, oldest go first.
///
/// The bound, a tenant's budget and `used_bytes` count what an entry costs
/// the process ([`footprint`]), not only its key and value: a heap profile
/// of the load harness found the cache at 91 MB under a 64 MiB bound that
/// counted keys and values alone (docs/benchmarks/history.md, memory).
#[derive(Debug)]
pub struct MemoryCache {
    max_bytes: usize,
    pub(super) inner: Mutex<MemoryInner>,
}

/// Each key is held once (`Arc<str>`) by the map and both order queues.
#[derive(Debug, Default)]
pub(super) struct MemoryInner {
    pub(super) entries: HashMap<Arc<str>, Entry>,
    // Insertion order, for eviction; may hold keys already replaced or gone.
    pub(super) order: VecDeque<Arc<str>>,
    pub(super) bytes: usize,
    // By tenant id: the tenant of an entry is the start of its key.
    pub(super) tenants: HashMap<String, TenantShare>,
}

#[derive(Debug)]
pub(super) struct Entry {
    pub(super) value: Bytes,
    pub(super) expires: Instant,
}

/// What an entry of the in-process cache holds beyond its key's and
/// value's allocations: its slot in the map (64 bytes, and hashbrown keeps
/// between 8/7 and 16/7 slots an entry), its place in the two order
/// queues (which may hold a replaced key until they are compacted, and
/// grow by doubling), and the header a value gets when it is first shared.
pub(super) const ENTRY_OVERHEAD: usize = 256;

/// The size an allocator hands out for `len` bytes: jemalloc's size
/// classes, like most allocators', are 16 bytes apart up to 64, then four
/// per doubling (a 2,100-byte result takes 2,560).
pub(super) fn allocated(len: usize) -> usize {
    if len <= 64 {
        return len.next_multiple_of(16).max(16);
    }
    let step = 1usize << (usize::BITS - (len - 1).leading_zeros() - 3);
    len.next_multiple_of(step)
}

/// The memory an entry of the in-process cache costs: its key (an
/// `Arc<str>`, 16 bytes of counts before the text), its value, both as
/// allocated, and [`ENTRY_OVERHEAD`].
pub(super) fn footprint(key: &str, value_len: usize) -> usize {
    allocated(16 + key.len()) + allocated(value_len) + ENTRY_OVERHEAD
}

/// The tenant id at the start of a key made by [`full_key`].
pub(super) fn tenant_of(key: &str) -> &str {
    key.strip_prefix('{')
        .and_then(|rest| rest.split_once('}'))
        .map_or("", |(tenant, _)| tenant)
}

/// One tenant's part of the cache, for its budget.
#[derive(Debug, Default)]
pub(super) struct TenantShare {
    // Insertion order; may hold keys already replaced or gone.
    pub(super) order: VecDeque<Arc<str>>,
    pub(super) bytes: usize,
    pub(super) entries: usize,
}

impl MemoryCache {
    /// A cache holding at most `max_bytes` of values and keys.
    pub fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            inner: Mutex::new(MemoryInner::default()),
        }
    }

    pub(super) fn lock(&self) -> Result<std::sync::MutexGuard<'_, MemoryInner>, CacheError> {
        self.inner
            .lock()
            .map_err(|_| CacheError("memory cache lock poisoned".into()))
    }
}

impl MemoryInner {
    pub(super) fn remove(&mut self, key: &str) {
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
    pub(super) fn make_room(&mut self, tenant: &TenantId, size: usize, budget: usize) {
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
        // held ~97 MiB at its 64 MiB bound (docs/benchmarks/history.md, memory).
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

    async fn forget(&self, tenant: &TenantId, prefix: &str) -> Result<u64, CacheError> {
        let prefix = full_key(tenant, prefix);
        let mut inner = self.lock()?;
        let Some(share) = inner.tenants.get(tenant.as_str()) else {
            return Ok(0);
        };
        let doomed: Vec<Arc<str>> = share
            .order
            .iter()
            .filter(|k| k.starts_with(prefix.as_str()))
            .cloned()
            .collect();
        let before = inner.entries.len();
        for key in &doomed {
            inner.remove(key);
        }
        // Their places in the order queues go at the next compaction.
        Ok((before - inner.entries.len()) as u64)
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
