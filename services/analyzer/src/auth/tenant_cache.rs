//! Resolved tenant records, trusted briefly, with one store read per
//! tenant at a time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use analyzer_domain::tenants::{Tenant, TenantId};
use analyzer_store::{Db, StoreError};

use super::AuthError;
use futures::FutureExt as _;
use futures::future::{BoxFuture, Shared};

/// Resolved tenant records, trusted for a short time to keep the store off
/// the hot path.
pub(super) struct TenantCache {
    pub(super) ttl: Duration,
    pub(super) entries: Mutex<HashMap<TenantId, (Tenant, Instant)>>,
    /// The store reads under way, at most one per tenant: the requests
    /// that find a record missing or stale while it is read wait for that
    /// read, and share its answer (or its error), instead of each making
    /// one. Under 1,000 concurrent requests of a few tenants, every expiry
    /// queued up to 1,000 reads on the pool, and one waited past the
    /// pool's 5 s (docs/benchmarks/history.md).
    pub(super) reading: Mutex<HashMap<TenantId, Read>>,
}

/// A store read of one tenant record, awaited by every request that needs
/// it.
pub(super) type Read = Shared<BoxFuture<'static, Result<Option<Tenant>, Arc<StoreError>>>>;

impl TenantCache {
    pub(super) fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
            reading: Mutex::new(HashMap::new()),
        }
    }

    pub(super) async fn resolve(&self, db: &Db, id: &TenantId) -> Result<Tenant, AuthError> {
        let db = db.clone();
        self.resolve_with(id, |id| async move { db.tenant(&id).await }.boxed())
            .await
    }

    /// [`TenantCache::resolve`] with `load` as the store read.
    pub(super) async fn resolve_with(
        &self,
        id: &TenantId,
        load: impl FnOnce(TenantId) -> BoxFuture<'static, Result<Option<Tenant>, StoreError>>,
    ) -> Result<Tenant, AuthError> {
        if let Ok(entries) = self.entries.lock()
            && let Some((tenant, at)) = entries.get(id)
            && at.elapsed() < self.ttl
        {
            return Ok(tenant.clone());
        }
        let start = || {
            load(id.clone())
                .map(|result| result.map_err(Arc::new))
                .boxed()
                .shared()
        };
        let read = match self.reading.lock() {
            Ok(mut reading) => reading.entry(id.clone()).or_insert_with(start).clone(),
            Err(_) => start(),
        };
        let result = read.clone().await;
        // The first to have the answer ends the read; the next miss reads
        // again.
        if let Ok(mut reading) = self.reading.lock()
            && reading.get(id).is_some_and(|r| r.ptr_eq(&read))
        {
            reading.remove(id);
            if let Ok(Some(tenant)) = &result
                && let Ok(mut entries) = self.entries.lock()
            {
                // Bound the map: drop expired entries when it grows.
                if entries.len() > 10_000 {
                    let ttl = self.ttl;
                    entries.retain(|_, (_, at)| at.elapsed() < ttl);
                }
                entries.insert(id.clone(), (tenant.clone(), Instant::now()));
            }
        }
        match result {
            Ok(tenant) => tenant.ok_or(AuthError::UnknownTenant),
            // While the database is unreachable, the record last read
            // stands in for a while (store::OUTAGE_FALLBACK_LIMIT): no
            // change can be made through this task meanwhile, and one made
            // through another is not missed for longer.
            Err(e) if e.is_outage() => self.last_known(id).ok_or(AuthError::Store(e)),
            Err(e) => Err(AuthError::Store(e)),
        }
    }

    pub(super) fn last_known(&self, id: &TenantId) -> Option<Tenant> {
        let entries = self.entries.lock().ok()?;
        let (tenant, at) = entries.get(id)?;
        (at.elapsed() <= analyzer_store::OUTAGE_FALLBACK_LIMIT).then(|| tenant.clone())
    }

    pub(super) fn clear(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
        }
        if let Ok(mut reading) = self.reading.lock() {
            reading.clear();
        }
    }

    pub(super) fn invalidate(&self, id: &TenantId) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(id);
        }
        // A read begun before the change may hold the record before it.
        if let Ok(mut reading) = self.reading.lock() {
            reading.remove(id);
        }
    }
}
