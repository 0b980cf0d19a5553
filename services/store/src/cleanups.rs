//! The journal of vector writes made outside the documents transaction.
//!
//! The vector store and the database cannot share a transaction, so each
//! vector write is recorded here first, and the record decides what a
//! crash, a cancelled request or a lost answer leaves behind:
//!
//! - An ingest records its new revisions as `pending` (committed before
//!   any vector is written), writes the vectors, then stores the rows in a
//!   transaction that also deletes the `pending` entries; that transaction
//!   does not commit when an entry is no longer `pending`.
//! - Giving up on a pending revision (a failed ingest, or the sweep of one
//!   older than the longest an ingest may run) first *claims* it: `pending`
//!   becomes `remove` in one statement. A revision is therefore either
//!   committed (its entry deleted with the rows) or claimed (its rows can
//!   never commit), never both: removing a claimed revision's vectors
//!   cannot take a stored document's chunks, whatever the timing.
//! - A replacement and a delete record the revision they supersede as
//!   `remove` inside their transaction, so the old vectors are removed
//!   after the commit, by the request or, if it dies first, by the sweep.
//!
//! An entry is deleted only after its vectors are. Removing vectors is
//! idempotent, so two tasks sweeping one entry do no harm.
//!
//! A search shows only committed revisions, which costs a database read
//! per search, so it is made only where something may be unsettled:
//! - on the SQLite server, the database's only writer, the journal's
//!   entries are counted in memory ([`Unsettled`]): a search of a tenant
//!   that had none before it searched, and began none while it searched,
//!   saw only committed, current revisions;
//! - on PostgreSQL, written by every task, the search context says whether
//!   the tenant had entries when it was read (`tenants.vector_journal`,
//!   their count, kept in the transactions that add and remove them, read
//!   with the data generation). One that
//!   begins during a search is an ingest in flight, whose chunks the search
//!   may show as it would once the ingest commits; if the ingest fails
//!   instead, giving it up bumps the tenant's data generation, so no
//!   cached result keeps them.

use std::collections::HashMap;
use std::sync::Mutex;

use sqlx::Row as _;

use super::{Db, SearchContext, StoreError, now_millis, tenant_column};
use analyzer_domain::tenants::TenantId;

/// One revision of a document's vectors: chunks `0..chunk_count`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VectorRevision {
    /// The document.
    pub document_id: String,
    /// Its revision.
    pub revision: String,
    /// How many chunks it has.
    pub chunk_count: i64,
}

/// A journal entry the sweep is to finish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueCleanup {
    /// The tenant.
    pub tenant: TenantId,
    /// The vectors.
    pub vectors: VectorRevision,
    /// Whether it is a pending ingest's (to be claimed before removal).
    pub pending: bool,
}

/// On the SQLite server: each tenant's journal entries, counted as this
/// process (its only writer) makes them, raised before an entry can exist
/// and lowered after it is gone; and a sequence raised with every rise.
#[derive(Debug, Default)]
pub(super) struct Unsettled {
    tenants: Mutex<HashMap<TenantId, (u64, u64)>>,
}

impl Unsettled {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TenantId, (u64, u64)>> {
        analyzer_runtime::locked(&self.tenants)
    }

    pub(super) fn rise(&self, tenant: &TenantId, n: u64) {
        if n == 0 {
            return;
        }
        let mut tenants = self.lock();
        let (count, seq) = tenants.entry(tenant.clone()).or_default();
        *count += n;
        *seq += 1;
    }

    pub(super) fn fall(&self, tenant: &TenantId, n: u64) {
        let mut tenants = self.lock();
        if let Some((count, _)) = tenants.get_mut(tenant) {
            *count = count.saturating_sub(n);
        }
    }

    /// The tenant's sequence if it has no entry now.
    fn settled(&self, tenant: &TenantId) -> Option<u64> {
        match self.lock().get(tenant) {
            None => Some(0),
            Some((0, seq)) => Some(*seq),
            Some(_) => None,
        }
    }
}

/// What a search notes before it runs, to tell afterwards whether it can
/// have seen anything but committed, current revisions.
#[derive(Debug, Clone, Copy)]
pub enum SettledMark {
    /// SQLite: the tenant's sequence when it had no entry, else nothing.
    Counted(Option<u64>),
    /// PostgreSQL: whether the context found the tenant without entries.
    Read(bool),
}

const PENDING: &str = "pending";
const REMOVE: &str = "remove";

impl Db {
    /// Before a search, with the context it read: whether the tenant had
    /// no journal entry.
    pub fn settled_mark(&self, tenant: &TenantId, context: &SearchContext) -> SettledMark {
        match &self.unsettled {
            Some(unsettled) => SettledMark::Counted(unsettled.settled(tenant)),
            None => SettledMark::Read(!context.unsettled),
        }
    }

    /// After a search: whether its hits need no check against the
    /// database (see the module's documentation).
    pub fn stayed_settled(&self, tenant: &TenantId, mark: SettledMark) -> bool {
        match (&self.unsettled, mark) {
            (Some(unsettled), SettledMark::Counted(Some(before))) => {
                unsettled.settled(tenant) == Some(before)
            }
            (None, SettledMark::Read(settled)) => settled,
            _ => false,
        }
    }

    /// On the SQLite server: count the journal's entries left by the last
    /// run (a crash), before serving.
    pub async fn load_unsettled(&self) -> Result<(), StoreError> {
        let Some(unsettled) = &self.unsettled else {
            return Ok(());
        };
        let rows = sqlx::query(
            "SELECT tenant_id, CAST(COUNT(*) AS BIGINT) FROM vector_cleanups GROUP BY tenant_id",
        )
        .fetch_all(&self.pool)
        .await?;
        for row in rows {
            let tenant: String = row.try_get(0)?;
            let count: i64 = row.try_get(1)?;
            let tenant = tenant_column("vector_cleanups.tenant_id", &tenant)?;
            unsettled.rise(&tenant, u64::try_from(count).unwrap_or(0));
        }
        Ok(())
    }

    /// Raise the tenant's count of entries (before they can exist).
    pub(super) fn unsettle(&self, tenant: &TenantId, n: usize) {
        if let Some(unsettled) = &self.unsettled {
            unsettled.rise(tenant, n as u64);
        }
    }

    /// Lower it (after they are gone).
    pub(super) fn settle(&self, tenant: &TenantId, n: usize) {
        if let Some(unsettled) = &self.unsettled {
            unsettled.fall(tenant, n as u64);
        }
    }

    /// Record the revisions an ingest is about to write, before it writes
    /// any vector.
    pub async fn record_pending(
        &self,
        tenant: &TenantId,
        revisions: &[VectorRevision],
    ) -> Result<(), StoreError> {
        let _quota = self.quota().await;
        self.unsettle(tenant, revisions.len());
        let recorded = self.record_pending_tx(tenant, revisions).await;
        if recorded.is_err() {
            self.settle(tenant, revisions.len());
        }
        recorded
    }

    async fn record_pending_tx(
        &self,
        tenant: &TenantId,
        revisions: &[VectorRevision],
    ) -> Result<(), StoreError> {
        self.guarded(async {
            let (_turn, mut tx) = self.begin_write().await?;
            let now = now_millis();
            for r in revisions {
                record(&mut tx, tenant, r, PENDING, now).await?;
            }
            count_entries(&mut tx, tenant, revisions.len() as i64).await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// Claim pending revisions for removal: those of `revisions` still
    /// pending, which can then never be committed. Revisions already
    /// committed (or claimed) are left out of the answer.
    pub async fn claim_pending(
        &self,
        tenant: &TenantId,
        revisions: &[VectorRevision],
    ) -> Result<Vec<VectorRevision>, StoreError> {
        let changed = self
            .each_revision(
                "UPDATE vector_cleanups SET state = 'remove' \
                 WHERE tenant_id = $1 AND document_id = $2 AND revision = $3 AND state = 'pending'",
                tenant,
                revisions,
            )
            .await?;
        Ok(revisions
            .iter()
            .zip(changed)
            .filter(|(_, claimed)| *claimed)
            .map(|(r, _)| r.clone())
            .collect())
    }

    /// Forget entries whose vectors have been removed.
    pub async fn finish_cleanups(
        &self,
        tenant: &TenantId,
        revisions: &[VectorRevision],
    ) -> Result<(), StoreError> {
        if revisions.is_empty() {
            return Ok(());
        }
        let _quota = self.quota().await;
        let deleted = self
            .guarded(async {
                let (_turn, mut tx) = self.begin_write().await?;
                let mut deleted = 0;
                for r in revisions {
                    let result = sqlx::query(
                        "DELETE FROM vector_cleanups WHERE tenant_id = $1 AND document_id = $2 \
                         AND revision = $3 AND state = 'remove'",
                    )
                    .bind(tenant.as_str())
                    .bind(&r.document_id)
                    .bind(&r.revision)
                    .execute(&mut *tx)
                    .await?;
                    deleted += result.rows_affected() as usize;
                }
                count_entries(&mut tx, tenant, -(deleted as i64)).await?;
                tx.commit().await?;
                Ok(deleted)
            })
            .await?;
        self.settle(tenant, deleted);
        Ok(())
    }

    /// Run `sql` (bound to tenant, document and revision) for each of
    /// `revisions`; whether each changed a row.
    async fn each_revision(
        &self,
        sql: &'static str,
        tenant: &TenantId,
        revisions: &[VectorRevision],
    ) -> Result<Vec<bool>, StoreError> {
        let _quota = self.quota().await;
        self.guarded(async {
            let mut changed = Vec::with_capacity(revisions.len());
            for r in revisions {
                let result = sqlx::query(sql)
                    .bind(tenant.as_str())
                    .bind(&r.document_id)
                    .bind(&r.revision)
                    .execute(self.pool())
                    .await?;
                changed.push(result.rows_affected() == 1);
            }
            Ok(changed)
        })
        .await
    }

    /// Up to `limit` entries to finish, oldest first: `remove` entries
    /// recorded before `remove_before`, and `pending` ones recorded before
    /// `pending_before` (Unix milliseconds).
    pub async fn due_cleanups(
        &self,
        remove_before: i64,
        pending_before: i64,
        limit: u32,
    ) -> Result<Vec<DueCleanup>, StoreError> {
        let rows = self
            .guarded(async {
                Ok(sqlx::query(
                    "SELECT tenant_id, document_id, revision, chunk_count, state FROM vector_cleanups \
                     WHERE (state = 'remove' AND created_at < $1) OR (state = 'pending' AND created_at < $2) \
                     ORDER BY created_at LIMIT $3",
                )
                .bind(remove_before)
                .bind(pending_before)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?)
            })
            .await?;
        rows.iter()
            .map(|row| {
                let tenant: String = row.try_get(0)?;
                let state: String = row.try_get(4)?;
                Ok(DueCleanup {
                    tenant: tenant_column("vector_cleanups.tenant_id", &tenant)?,
                    vectors: VectorRevision {
                        document_id: row.try_get(1)?,
                        revision: row.try_get(2)?,
                        chunk_count: row.try_get(3)?,
                    },
                    pending: state == PENDING,
                })
            })
            .collect()
    }
}

/// Inside a documents transaction: the revision being stored is committed
/// by deleting its pending entry. [`StoreError::Abandoned`] when it is not
/// pending any more (claimed for removal: the transaction must not commit).
pub(super) async fn commit_pending(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    tenant: &TenantId,
    document_id: &str,
    revision: &str,
) -> Result<(), StoreError> {
    let deleted = sqlx::query(
        "DELETE FROM vector_cleanups \
         WHERE tenant_id = $1 AND document_id = $2 AND revision = $3 AND state = 'pending'",
    )
    .bind(tenant.as_str())
    .bind(document_id)
    .bind(revision)
    .execute(&mut **tx)
    .await?;
    if deleted.rows_affected() == 1 {
        count_entries(tx, tenant, -1).await
    } else {
        Err(StoreError::Abandoned)
    }
}

/// Inside a documents transaction: `revisions`, whose documents it
/// deletes, recorded for removal.
pub(super) async fn supersede_all(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    tenant: &TenantId,
    revisions: &[VectorRevision],
) -> Result<(), StoreError> {
    if revisions.is_empty() {
        return Ok(());
    }
    let now = now_millis();
    for r in revisions {
        record(tx, tenant, r, REMOVE, now).await?;
    }
    count_entries(
        tx,
        tenant,
        i64::try_from(revisions.len()).unwrap_or(i64::MAX),
    )
    .await
}

/// Inside a documents transaction: the current revision of a document, if
/// any, recorded for removal because the transaction supersedes it.
pub(super) async fn supersede(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    tenant: &TenantId,
    document_id: &str,
) -> Result<Option<VectorRevision>, StoreError> {
    let row =
        sqlx::query("SELECT revision, chunk_count FROM documents WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.as_str())
            .bind(document_id)
            .fetch_optional(&mut **tx)
            .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let old = VectorRevision {
        document_id: document_id.to_owned(),
        revision: row.try_get(0)?,
        chunk_count: row.try_get(1)?,
    };
    record(tx, tenant, &old, REMOVE, now_millis()).await?;
    count_entries(tx, tenant, 1).await?;
    Ok(Some(old))
}

/// Inside the transaction that adds or removes entries: keep the tenant's
/// count of them (`tenants.vector_journal`) in step.
async fn count_entries(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    tenant: &TenantId,
    delta: i64,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE tenants SET vector_journal = vector_journal + $2 WHERE id = $1")
        .bind(tenant.as_str())
        .bind(delta)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

async fn record(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    tenant: &TenantId,
    r: &VectorRevision,
    state: &str,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO vector_cleanups (tenant_id, document_id, revision, chunk_count, state, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(tenant.as_str())
    .bind(&r.document_id)
    .bind(&r.revision)
    .bind(r.chunk_count)
    .bind(state)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
