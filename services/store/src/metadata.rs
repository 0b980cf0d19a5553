//! Replacing a document's metadata, in the row and in its vectors' payload.
//!
//! Searches filter on the copy of the metadata in the vector store, so a
//! new value is written to both. The copy is written while the tenant's
//! row is locked, inside the transaction that changes the row: every
//! metadata write of a tenant then lands in the vector store in the order
//! its transactions commit, and the last one committed is the one searched.
//! A `metadata_syncs` entry, committed before, says that the copy may
//! differ from the row; it is deleted by the same transaction. If that
//! transaction does not commit (a crash, a failed commit after the copy
//! was written), the entry stays, and the sweep writes the row's metadata
//! to the copy again ([`Db::resync_metadata`]).

use std::future::Future;

use sqlx::Row as _;

use crate::generation::bump_generation;
use crate::{Db, StoreError, VectorRevision, now_millis, tenant_column};
use analyzer_domain::tenants::TenantId;

/// What [`Db::replace_metadata`] did.
#[derive(Debug)]
pub enum MetadataWrite<E> {
    /// The row and the vectors' copy hold the new metadata.
    Written,
    /// The tenant has no such document; nothing changed.
    NotFound,
    /// Writing the vectors' copy failed; the row was left as it was.
    CopyFailed(E),
}

/// A document whose vectors' copy of the metadata may differ from its row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueMetadataSync {
    /// The tenant.
    pub tenant: TenantId,
    /// The document.
    pub document_id: String,
}

impl Db {
    /// Replace the metadata of the tenant's document `id` (a JSON object)
    /// and, through `copy`, its vectors' copy: `copy` is given the
    /// document's current revision and the metadata, and runs while the
    /// tenant's writes wait. The data generation moves on, so no cached
    /// search keeps the old values.
    pub async fn replace_metadata<E, F, Fut>(
        &self,
        tenant: &TenantId,
        id: &str,
        metadata: &serde_json::Value,
        copy: F,
    ) -> Result<MetadataWrite<E>, StoreError>
    where
        F: FnOnce(VectorRevision, serde_json::Value) -> Fut,
        Fut: Future<Output = Result<(), E>>,
    {
        self.mark_unsynced(tenant, id).await?;
        self.writing(tenant, async {
            let _quota = self.quota().await;
            self.guarded(async {
                let (_turn, mut tx) = self.begin_write().await?;
                bump_generation(&mut tx, tenant).await?;
                let Some(revision) = current_revision(&mut tx, tenant, id).await? else {
                    forget_unsynced(&mut tx, tenant, id).await?;
                    tx.commit().await?;
                    return Ok(MetadataWrite::NotFound);
                };
                sqlx::query(
                    "UPDATE documents SET metadata = $3, updated_at = $4 \
                     WHERE tenant_id = $1 AND id = $2",
                )
                .bind(tenant.as_str())
                .bind(id)
                .bind(metadata.to_string())
                .bind(now_millis())
                .execute(&mut *tx)
                .await?;
                if let Err(e) = copy(revision, metadata.clone()).await {
                    tx.rollback().await?;
                    return Ok(MetadataWrite::CopyFailed(e));
                }
                forget_unsynced(&mut tx, tenant, id).await?;
                tx.commit().await?;
                Ok(MetadataWrite::Written)
            })
            .await
        })
        .await
    }

    /// Write the row's metadata to the vectors' copy of a document marked
    /// unsynced, through `copy`, as [`Db::replace_metadata`] does; forget
    /// the mark when that worked or the document is gone. `Ok(false)`:
    /// `copy` failed, the mark stays for the next pass.
    pub async fn resync_metadata<E, F, Fut>(
        &self,
        tenant: &TenantId,
        id: &str,
        copy: F,
    ) -> Result<bool, StoreError>
    where
        F: FnOnce(VectorRevision, serde_json::Value) -> Fut,
        Fut: Future<Output = Result<(), E>>,
    {
        self.writing(tenant, async {
            let _quota = self.quota().await;
            self.guarded(async {
                let (_turn, mut tx) = self.begin_write().await?;
                bump_generation(&mut tx, tenant).await?;
                let row = sqlx::query(
                    "SELECT revision, chunk_count, metadata FROM documents \
                     WHERE tenant_id = $1 AND id = $2",
                )
                .bind(tenant.as_str())
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(row) = row {
                    let revision = VectorRevision {
                        document_id: id.to_owned(),
                        revision: row.try_get(0)?,
                        chunk_count: row.try_get(1)?,
                    };
                    let metadata: String = row.try_get(2)?;
                    let metadata = serde_json::from_str(&metadata)
                        .map_err(|e| StoreError::Corrupt(format!("document metadata: {e}")))?;
                    if copy(revision, metadata).await.is_err() {
                        tx.rollback().await?;
                        return Ok(false);
                    }
                }
                forget_unsynced(&mut tx, tenant, id).await?;
                tx.commit().await?;
                Ok(true)
            })
            .await
        })
        .await
    }

    /// Documents marked unsynced before `marked_before` (Unix ms), oldest
    /// first: those whose metadata write did not finish.
    pub async fn due_metadata_syncs(
        &self,
        marked_before: i64,
        limit: u32,
    ) -> Result<Vec<DueMetadataSync>, StoreError> {
        let _quota = self.quota().await;
        self.guarded(async {
            sqlx::query(
                "SELECT tenant_id, document_id FROM metadata_syncs WHERE created_at < $1 \
                 ORDER BY created_at LIMIT $2",
            )
            .bind(marked_before)
            .bind(i64::from(limit))
            .fetch_all(self.pool())
            .await?
            .iter()
            .map(|row| {
                let tenant: String = row.try_get(0)?;
                Ok(DueMetadataSync {
                    tenant: tenant_column("metadata_syncs.tenant_id", &tenant)?,
                    document_id: row.try_get(1)?,
                })
            })
            .collect()
        })
        .await
    }

    /// Mark a document's vectors' copy of its metadata as possibly
    /// different from its row, in a transaction of its own, before the
    /// copy is written.
    async fn mark_unsynced(&self, tenant: &TenantId, id: &str) -> Result<(), StoreError> {
        let _quota = self.quota().await;
        self.guarded(async {
            let (_turn, mut tx) = self.begin_write().await?;
            sqlx::query(
                "INSERT INTO metadata_syncs (tenant_id, document_id, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (tenant_id, document_id) DO UPDATE SET created_at = excluded.created_at",
            )
            .bind(tenant.as_str())
            .bind(id)
            .bind(now_millis())
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }
}

async fn current_revision(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    tenant: &TenantId,
    id: &str,
) -> Result<Option<VectorRevision>, StoreError> {
    let row =
        sqlx::query("SELECT revision, chunk_count FROM documents WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.as_str())
            .bind(id)
            .fetch_optional(&mut **tx)
            .await?;
    row.map(|row| {
        Ok(VectorRevision {
            document_id: id.to_owned(),
            revision: row.try_get(0)?,
            chunk_count: row.try_get(1)?,
        })
    })
    .transpose()
}

async fn forget_unsynced(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    tenant: &TenantId,
    id: &str,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM metadata_syncs WHERE tenant_id = $1 AND document_id = $2")
        .bind(tenant.as_str())
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::tests::{ingest, sqlite_with_tenant, stored};

    use super::*;

    #[tokio::test]
    async fn a_copy_that_fails_leaves_the_row_and_a_mark_the_sweep_resyncs_from() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (db, tenant) = sqlite_with_tenant(dir.path()).await;
        ingest(&db, &tenant, stored("doc", "r1"), u64::MAX)
            .await
            .expect("ingest");

        let failed = db
            .replace_metadata(&tenant, "doc", &json!({"lang": "de"}), |_, _| async {
                Err::<(), _>("vector store down")
            })
            .await
            .expect("replace");
        assert!(matches!(
            failed,
            MetadataWrite::CopyFailed("vector store down")
        ));
        let row = db
            .document(&tenant, "doc")
            .await
            .expect("read")
            .expect("row");
        assert_eq!(row.metadata, json!({}), "the row is left as it was");

        let due = db.due_metadata_syncs(i64::MAX, 10).await.expect("due");
        assert_eq!(
            due,
            [DueMetadataSync {
                tenant: tenant.clone(),
                document_id: "doc".into()
            }]
        );
        let mut copied = None;
        let done = db
            .resync_metadata(&tenant, "doc", |revision, metadata| {
                copied = Some((revision.revision, metadata));
                async { Ok::<(), ()>(()) }
            })
            .await
            .expect("resync");
        assert!(done);
        assert_eq!(
            copied,
            Some(("r1".to_owned(), json!({}))),
            "the row's metadata, on its revision"
        );
        assert!(
            db.due_metadata_syncs(i64::MAX, 10)
                .await
                .expect("due")
                .is_empty()
        );
    }

    #[tokio::test]
    async fn a_written_copy_changes_the_row_and_leaves_no_mark() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (db, tenant) = sqlite_with_tenant(dir.path()).await;
        ingest(&db, &tenant, stored("doc", "r1"), u64::MAX)
            .await
            .expect("ingest");
        let written = db
            .replace_metadata(
                &tenant,
                "doc",
                &json!({"lang": "de"}),
                |revision, metadata| {
                    assert_eq!(
                        (revision.revision.as_str(), revision.chunk_count),
                        ("r1", 1)
                    );
                    assert_eq!(metadata, json!({"lang": "de"}));
                    async { Ok::<(), ()>(()) }
                },
            )
            .await
            .expect("replace");
        assert!(matches!(written, MetadataWrite::Written));
        let row = db
            .document(&tenant, "doc")
            .await
            .expect("read")
            .expect("row");
        assert_eq!(row.metadata, json!({"lang": "de"}));
        assert!(
            db.due_metadata_syncs(i64::MAX, 10)
                .await
                .expect("due")
                .is_empty()
        );

        let missing = db
            .replace_metadata(&tenant, "nope", &json!({}), |_, _| async {
                Ok::<(), ()>(())
            })
            .await
            .expect("replace");
        assert!(matches!(missing, MetadataWrite::NotFound));
        assert!(
            db.due_metadata_syncs(i64::MAX, 10)
                .await
                .expect("due")
                .is_empty()
        );
    }
}
