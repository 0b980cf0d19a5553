//! What a search reads before it runs (the tenant's data generation and
//! whether the collection exists), kept in memory where this process is the
//! database's only writer.

use std::collections::HashMap;
use std::sync::Mutex;

use analyzer_domain::tenants::TenantId;
use sqlx::Row as _;

use crate::{Db, StoreError, guard};

/// Search contexts of a database this process alone writes (the server's
/// SQLite file): a cached search then needs no database round trip.
///
/// Every write of a tenant's documents or generation invalidates the
/// tenant's entries after its transaction and advances the tenant's epoch;
/// a read stores what it read only if the epoch did not move while it
/// read, so a context read before a write can never be stored after it.
/// Only contexts of existing collections are kept (the names a tenant has
/// stored documents under: bounded), at most [`Contexts::MAX`] in all.
#[derive(Debug, Default)]
pub(crate) struct Contexts {
    tenants: Mutex<HashMap<TenantId, TenantContexts>>,
}

#[derive(Debug, Default)]
pub(crate) struct TenantContexts {
    epoch: u64,
    by_collection: HashMap<String, SearchContext>,
}

impl Contexts {
    const MAX: usize = 100_000;

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TenantId, TenantContexts>> {
        analyzer_runtime::locked(&self.tenants)
    }

    /// The stored context, or the epoch to read under.
    pub(crate) fn get(&self, tenant: &TenantId, collection: &str) -> Result<SearchContext, u64> {
        let tenants = self.lock();
        match tenants.get(tenant) {
            Some(t) => t.by_collection.get(collection).copied().ok_or(t.epoch),
            None => Err(0),
        }
    }

    pub(crate) fn store(
        &self,
        tenant: &TenantId,
        collection: &str,
        epoch: u64,
        context: SearchContext,
    ) {
        if !context.collection_exists {
            return;
        }
        let mut tenants = self.lock();
        if tenants
            .values()
            .map(|t| t.by_collection.len())
            .sum::<usize>()
            >= Self::MAX
        {
            tenants.values_mut().for_each(|t| t.by_collection.clear());
        }
        let entry = tenants.entry(tenant.clone()).or_default();
        if entry.epoch == epoch {
            entry.by_collection.insert(collection.to_owned(), context);
        }
    }

    pub(crate) fn invalidate(&self, tenant: &TenantId) {
        let mut tenants = self.lock();
        let entry = tenants.entry(tenant.clone()).or_default();
        entry.epoch += 1;
        entry.by_collection.clear();
    }
}

/// What a search reads from the store before it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchContext {
    /// Bumped by every change to the tenant's documents.
    pub generation: i64,
    /// Whether the tenant has the collection.
    pub collection_exists: bool,
    /// Whether the vector journal had entries of the tenant's when this
    /// was read (see `cleanups`): then a search checks its hits.
    pub unsettled: bool,
}

impl Db {
    /// What a search needs from the store, in one round trip: the tenant's
    /// data generation and whether it has any document in `collection`.
    pub async fn search_context(
        &self,
        tenant: &TenantId,
        collection: &str,
    ) -> Result<SearchContext, StoreError> {
        let epoch = match self.contexts.as_ref().map(|c| c.get(tenant, collection)) {
            Some(Ok(known)) => return Ok(known),
            Some(Err(epoch)) => epoch,
            None => 0,
        };
        let read = match self.read_search_context(tenant, collection).await {
            Ok(read) => read,
            // While the database is unreachable, the context this task
            // read last stands in if it is recent enough (`guard`): cached
            // results stay reachable, and nothing is written meanwhile.
            Err(e) if guard::is_outage(&e) => {
                return self.fallback_context(tenant, collection).ok_or(e);
            }
            Err(e) => return Err(e),
        };
        if let Some(contexts) = &self.contexts {
            contexts.store(tenant, collection, epoch, read);
        }
        self.remember_context(tenant, collection, read);
        Ok(read)
    }

    pub(crate) async fn read_search_context(
        &self,
        tenant: &TenantId,
        collection: &str,
    ) -> Result<SearchContext, StoreError> {
        let _quota = self.quota().await;
        self.guarded(async {
            let row = sqlx::query(
                "SELECT data_generation, CAST(CASE WHEN EXISTS (SELECT 1 FROM collections \
                 WHERE tenant_id = $1 AND name = $2) THEN 1 ELSE 0 END AS BIGINT), \
                 vector_journal FROM tenants WHERE id = $1",
            )
            .bind(tenant.as_str())
            .bind(collection)
            .fetch_optional(self.pool())
            .await?;
            Ok(match row {
                Some(row) => SearchContext {
                    generation: row.try_get(0)?,
                    collection_exists: row.try_get::<i64, _>(1)? == 1,
                    unsettled: row.try_get::<i64, _>(2)? > 0,
                },
                None => SearchContext {
                    generation: 0,
                    collection_exists: false,
                    unsettled: false,
                },
            })
        })
        .await
    }
}
