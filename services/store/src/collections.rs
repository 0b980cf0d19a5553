//! A tenant's collections: created explicitly or by the first ingest into
//! them; deleted with their documents in one transaction.

use std::future::Future;

use sqlx::Row as _;

use crate::cleanups;
use crate::generation::bump_generation;
use crate::{Db, StoreError, VectorRevision, now_millis};
use analyzer_domain::tenants::TenantId;

/// The collection every tenant has, which cannot be deleted.
pub const DEFAULT_COLLECTION: &str = "default";

/// A collection and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectionStats {
    /// Its name.
    pub name: String,
    /// Creation time, Unix milliseconds.
    pub created_at: i64,
    /// Documents in it.
    pub documents: i64,
    /// Their chunks.
    pub chunks: i64,
    /// Bytes of their text.
    pub text_bytes: i64,
    /// Bytes of their vectors and payload.
    pub vector_bytes: i64,
}

impl Db {
    /// The tenant's collections, by name, with what each holds.
    pub async fn collections(&self, tenant: &TenantId) -> Result<Vec<CollectionStats>, StoreError> {
        let _quota = self.quota().await;
        self.guarded(async {
            sqlx::query(
                "SELECT c.name, c.created_at, CAST(COUNT(d.id) AS BIGINT), \
                 CAST(COALESCE(SUM(d.chunk_count), 0) AS BIGINT), \
                 CAST(COALESCE(SUM(d.byte_size), 0) AS BIGINT), \
                 CAST(COALESCE(SUM(d.vector_bytes), 0) AS BIGINT) \
                 FROM collections c LEFT JOIN documents d \
                 ON d.tenant_id = c.tenant_id AND d.collection = c.name \
                 WHERE c.tenant_id = $1 GROUP BY c.name, c.created_at ORDER BY c.name",
            )
            .bind(tenant.as_str())
            .fetch_all(self.pool())
            .await?
            .iter()
            .map(|row| {
                Ok(CollectionStats {
                    name: row.try_get(0)?,
                    created_at: row.try_get(1)?,
                    documents: row.try_get(2)?,
                    chunks: row.try_get(3)?,
                    text_bytes: row.try_get(4)?,
                    vector_bytes: row.try_get(5)?,
                })
            })
            .collect()
        })
        .await
    }

    /// Create an empty collection; `false` if the tenant has it already.
    pub async fn create_collection(
        &self,
        tenant: &TenantId,
        name: &str,
    ) -> Result<bool, StoreError> {
        self.writing(tenant, async {
            let _quota = self.quota().await;
            self.guarded(async {
                let (_turn, mut tx) = self.begin_write().await?;
                bump_generation(&mut tx, tenant).await?;
                let created = ensure_collection(&mut tx, tenant, name).await?;
                tx.commit().await?;
                Ok(created)
            })
            .await
        })
        .await
    }

    /// Delete a collection and its documents in one transaction, their
    /// revisions recorded for removal in it (the caller removes their
    /// vectors, or the sweep does); `None` if the tenant has no such
    /// collection. From the commit on, no read, listing or search shows
    /// any of its documents.
    pub async fn delete_collection(
        &self,
        tenant: &TenantId,
        name: &str,
    ) -> Result<Option<Vec<VectorRevision>>, StoreError> {
        self.removing_revisions(tenant, self.delete_collection_tx(tenant, name))
            .await
    }

    async fn delete_collection_tx(
        &self,
        tenant: &TenantId,
        name: &str,
    ) -> Result<Option<Vec<VectorRevision>>, StoreError> {
        self.writing(tenant, async {
            let _quota = self.quota().await;
            self.guarded(async {
                let (_turn, mut tx) = self.begin_write().await?;
                bump_generation(&mut tx, tenant).await?;
                let removed =
                    sqlx::query("DELETE FROM collections WHERE tenant_id = $1 AND name = $2")
                        .bind(tenant.as_str())
                        .bind(name)
                        .execute(&mut *tx)
                        .await?;
                if removed.rows_affected() == 0 {
                    tx.rollback().await?;
                    return Ok(None);
                }
                let revisions = remove_documents(&mut tx, tenant, Some(name)).await?;
                tx.commit().await?;
                Ok(Some(revisions))
            })
            .await
        })
        .await
    }
}

impl Db {
    /// Offboard a tenant in one transaction: its documents (their
    /// revisions recorded for removal, as a deletion's are), collections,
    /// API keys and pending metadata copies are deleted and the tenant is
    /// marked deleted; its row and usage ledger stay. `None` if there is no
    /// such tenant; deleting again finds nothing more to remove.
    pub async fn delete_tenant(
        &self,
        tenant: &TenantId,
    ) -> Result<Option<Vec<VectorRevision>>, StoreError> {
        self.removing_revisions(tenant, self.delete_tenant_tx(tenant))
            .await
    }

    /// Run `removal`, a transaction that records any number of the
    /// tenant's revisions for removal and answers them. The journal's count
    /// is raised before it can make any revision stale (how many is known
    /// only inside it), then set to what it recorded.
    async fn removing_revisions(
        &self,
        tenant: &TenantId,
        removal: impl Future<Output = Result<Option<Vec<VectorRevision>>, StoreError>>,
    ) -> Result<Option<Vec<VectorRevision>>, StoreError> {
        self.unsettle(tenant, 1);
        let removed = removal.await;
        if let Ok(Some(revisions)) = &removed {
            self.unsettle(tenant, revisions.len());
        }
        self.settle(tenant, 1);
        removed
    }

    async fn delete_tenant_tx(
        &self,
        tenant: &TenantId,
    ) -> Result<Option<Vec<VectorRevision>>, StoreError> {
        self.writing(tenant, async {
            let _quota = self.quota().await;
            self.guarded(async {
                let (_turn, mut tx) = self.begin_write().await?;
                let marked = sqlx::query(
                    "UPDATE tenants SET deleted_at = COALESCE(deleted_at, $2), \
                     data_generation = data_generation + 1 WHERE id = $1",
                )
                .bind(tenant.as_str())
                .bind(now_millis())
                .execute(&mut *tx)
                .await?;
                if marked.rows_affected() == 0 {
                    tx.rollback().await?;
                    return Ok(None);
                }
                let revisions = remove_documents(&mut tx, tenant, None).await?;
                for table in ["collections", "api_keys", "metadata_syncs"] {
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DELETE FROM {table} WHERE tenant_id = $1"
                    )))
                    .bind(tenant.as_str())
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(Some(revisions))
            })
            .await
        })
        .await
    }
}

/// Inside a transaction: delete the tenant's documents (of `collection`,
/// or all), their revisions recorded for removal in the same transaction;
/// answers those revisions.
async fn remove_documents(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    tenant: &TenantId,
    collection: Option<&str>,
) -> Result<Vec<VectorRevision>, StoreError> {
    let which = match collection {
        Some(_) => "tenant_id = $1 AND collection = $2",
        None => "tenant_id = $1",
    };
    let bound = |sql: String| {
        let query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(tenant.as_str());
        match collection {
            Some(name) => query.bind(name.to_owned()),
            None => query,
        }
    };
    let revisions = bound(format!(
        "SELECT id, revision, chunk_count FROM documents WHERE {which}"
    ))
    .fetch_all(&mut **tx)
    .await?
    .iter()
    .map(|row| {
        Ok(VectorRevision {
            document_id: row.try_get(0)?,
            revision: row.try_get(1)?,
            chunk_count: row.try_get(2)?,
        })
    })
    .collect::<Result<Vec<_>, StoreError>>()?;
    cleanups::supersede_all(tx, tenant, &revisions).await?;
    bound(format!("DELETE FROM documents WHERE {which}"))
        .execute(&mut **tx)
        .await?;
    Ok(revisions)
}

/// Inside a transaction: make sure the tenant has the collection; whether
/// it was created now.
pub(crate) async fn ensure_collection(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    tenant: &TenantId,
    name: &str,
) -> Result<bool, StoreError> {
    let inserted = sqlx::query(
        "INSERT INTO collections (tenant_id, name, created_at) VALUES ($1, $2, $3) \
         ON CONFLICT (tenant_id, name) DO NOTHING",
    )
    .bind(tenant.as_str())
    .bind(name)
    .bind(now_millis())
    .execute(&mut **tx)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

#[cfg(test)]
mod tests {
    use crate::tests::{ingest, sqlite_with_tenant, stored};

    use super::*;

    #[tokio::test]
    async fn a_deleted_collection_leaves_its_revisions_in_the_journal_and_nothing_else() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (db, tenant) = sqlite_with_tenant(dir.path()).await;
        for (id, collection) in [("a", "manuals"), ("b", "manuals"), ("c", "default")] {
            let mut doc = stored(id, &format!("r-{id}"));
            doc.collection = collection.into();
            ingest(&db, &tenant, doc, u64::MAX).await.expect("ingest");
        }
        let names = |list: Vec<CollectionStats>| -> Vec<(String, i64)> {
            list.into_iter().map(|c| (c.name, c.documents)).collect()
        };
        assert_eq!(
            names(db.collections(&tenant).await.expect("list")),
            [("default".to_owned(), 1), ("manuals".to_owned(), 2)]
        );

        let mut removed = db
            .delete_collection(&tenant, "manuals")
            .await
            .expect("delete")
            .expect("it existed");
        removed.sort_by(|x, y| x.document_id.cmp(&y.document_id));
        let ids: Vec<&str> = removed.iter().map(|r| r.revision.as_str()).collect();
        assert_eq!(ids, ["r-a", "r-b"]);
        // Until their vectors are removed, the journal holds them: a crash
        // now leaves them to the sweep at the next start.
        let due = db.due_cleanups(i64::MAX, i64::MAX, 10).await.expect("due");
        let mut journalled: Vec<&str> = due.iter().map(|d| d.vectors.revision.as_str()).collect();
        journalled.sort_unstable();
        assert_eq!(journalled, ["r-a", "r-b"]);
        assert!(due.iter().all(|d| !d.pending));

        assert_eq!(
            names(db.collections(&tenant).await.expect("list")),
            [("default".to_owned(), 1)]
        );
        assert!(db.document(&tenant, "a").await.expect("read").is_none());
        assert!(db.document(&tenant, "c").await.expect("read").is_some());
        assert!(
            db.delete_collection(&tenant, "manuals")
                .await
                .expect("again")
                .is_none()
        );
        assert!(
            db.create_collection(&tenant, "manuals")
                .await
                .expect("create")
        );
        assert!(
            !db.create_collection(&tenant, "manuals")
                .await
                .expect("exists")
        );
    }
}

#[cfg(test)]
mod offboarding {
    use analyzer_domain::tenants::TenantStatus;

    use crate::tests::{ingest, sqlite_with_tenant, stored};

    use super::*;

    #[tokio::test]
    async fn a_deleted_tenant_keeps_its_record_journals_its_vectors_and_takes_no_write() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (db, tenant) = sqlite_with_tenant(dir.path()).await;
        for id in ["a", "b"] {
            ingest(&db, &tenant, stored(id, &format!("r-{id}")), u64::MAX)
                .await
                .expect("ingest");
        }
        let mut removed = db
            .delete_tenant(&tenant)
            .await
            .expect("delete")
            .expect("it existed");
        removed.sort_by(|x, y| x.revision.cmp(&y.revision));
        let revisions: Vec<&str> = removed.iter().map(|r| r.revision.as_str()).collect();
        assert_eq!(revisions, ["r-a", "r-b"]);
        let due = db.due_cleanups(i64::MAX, i64::MAX, 10).await.expect("due");
        assert_eq!(due.len(), 2, "its vectors are left to the journal: {due:?}");

        let record = db.tenant(&tenant).await.expect("read").expect("kept");
        assert_eq!(record.status, TenantStatus::Deleted);
        assert!(db.document(&tenant, "a").await.expect("read").is_none());
        assert!(db.collections(&tenant).await.expect("list").is_empty());
        // Nothing is written for it again, by any path that writes data.
        assert!(matches!(
            ingest(&db, &tenant, stored("c", "r-c"), u64::MAX).await,
            Err(StoreError::TenantDeleted)
        ));
        assert!(matches!(
            db.create_collection(&tenant, "x").await,
            Err(StoreError::TenantDeleted)
        ));
        // Again: nothing more to remove.
        assert_eq!(
            db.delete_tenant(&tenant).await.expect("again"),
            Some(vec![])
        );
        assert_eq!(
            db.delete_tenant(&TenantId::generate())
                .await
                .expect("unknown"),
            None
        );
    }
}
