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

use sqlx::Row as _;

use super::{Db, StoreError, now_millis};
use crate::tenants::TenantId;

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

const PENDING: &str = "pending";
const REMOVE: &str = "remove";

impl Db {
    /// Record the revisions an ingest is about to write, before it writes
    /// any vector.
    pub async fn record_pending(
        &self,
        tenant: &TenantId,
        revisions: &[VectorRevision],
    ) -> Result<(), StoreError> {
        let _quota = self.quota().await;
        self.guarded(async {
            let (_turn, mut tx) = self.begin_write().await?;
            let now = now_millis();
            for r in revisions {
                record(&mut tx, tenant, r, PENDING, now).await?;
            }
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
        self.each_revision(
            "DELETE FROM vector_cleanups \
             WHERE tenant_id = $1 AND document_id = $2 AND revision = $3 AND state = 'remove'",
            tenant,
            revisions,
        )
        .await?;
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
                    tenant: tenant.parse().map_err(|e: crate::tenants::InvalidValue| {
                        StoreError::Corrupt(format!("vector_cleanups.tenant_id: {e}"))
                    })?,
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
        Ok(())
    } else {
        Err(StoreError::Abandoned)
    }
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
    Ok(Some(old))
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
