//! Documents' rows: read, page, store and replace in one transaction,
//! delete, and what a tenant stores in all.

use std::collections::HashMap;

use analyzer_domain::retrieval::FilterValue;
use analyzer_domain::tenants::TenantId;
use analyzer_domain::usage;
use sqlx::Row as _;
use sqlx::any::AnyRow;

use crate::cleanups;
use crate::collections::ensure_collection;
use crate::generation::bump_generation;
use crate::usage::add_usage;
use crate::{Backend, Db, StoreError, VectorRevision, tenant_column};

/// A document as stored: what `GET /v1/documents/{id}` returns.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredDocument {
    /// The tenant-scoped document id.
    pub id: String,
    /// The collection it belongs to.
    pub collection: String,
    /// Changes on every replacement; its vectors are stored under it.
    pub revision: String,
    /// The full text.
    pub text: String,
    /// The caller's metadata (a JSON object).
    pub metadata: serde_json::Value,
    /// How many chunks were embedded.
    pub chunk_count: i64,
    /// Size of the text in bytes.
    pub byte_size: i64,
    /// Bytes the document's vectors and payload take in the vector store.
    pub vector_bytes: i64,
    /// Creation time, Unix milliseconds.
    pub created_at: i64,
    /// Last replacement time, Unix milliseconds.
    pub updated_at: i64,
    /// The file it was extracted from, if it was uploaded as one.
    pub file: Option<StoredFile>,
}

/// The file a document was extracted from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFile {
    /// Its name, as uploaded.
    pub name: String,
    /// Its media type, from its content.
    pub media_type: String,
    /// Its size in bytes.
    pub bytes: i64,
    /// Its pages, where the format has them.
    pub pages: Option<i64>,
}

/// A document in a listing: what is stored but its text.
#[derive(Debug, Clone, PartialEq)]
pub struct DocumentSummary {
    /// The tenant-scoped document id.
    pub id: String,
    /// The collection it belongs to.
    pub collection: String,
    /// The caller's metadata (a JSON object).
    pub metadata: serde_json::Value,
    /// How many chunks were embedded.
    pub chunk_count: i64,
    /// Size of the text in bytes.
    pub byte_size: i64,
    /// Creation time, Unix milliseconds.
    pub created_at: i64,
    /// Last replacement time, Unix milliseconds.
    pub updated_at: i64,
    /// The file it was extracted from, if it was uploaded as one.
    pub file: Option<StoredFile>,
}

/// A listing's position: the `(created_at, id)` of the last document
/// returned. Both never change while the document exists, so a listing
/// continued from it neither repeats a document nor skips one that
/// existed when it began.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListPosition {
    /// The last document's creation time, Unix milliseconds.
    pub created_at: i64,
    /// The last document's id.
    pub id: String,
}

/// Which of a tenant's documents a listing returns.
#[derive(Debug, Clone, Default)]
pub struct DocumentFilter {
    /// Only this collection's.
    pub collection: Option<String>,
    /// Only those whose metadata field equals the value, for each.
    pub metadata: Vec<(String, FilterValue)>,
}

/// What a tenant has stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StorageTotals {
    /// Number of documents.
    pub documents: i64,
    /// Number of chunks.
    pub chunks: i64,
    /// Bytes of document text.
    pub text_bytes: i64,
    /// Bytes of vectors and payload.
    pub vector_bytes: i64,
}

/// The columns [`document_from_row`] reads, for every query that reads a
/// whole document.
macro_rules! document_columns {
    () => {
        "id, collection, revision, text, metadata, chunk_count, byte_size, vector_bytes, \
         created_at, updated_at, file_name, media_type, file_bytes, pages"
    };
}

impl Db {
    // ---- documents -----------------------------------------------------

    /// One document of a tenant.
    pub async fn document(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> Result<Option<StoredDocument>, StoreError> {
        let _quota = self.quota().await;
        self.guarded(async {
            sqlx::query(concat!(
                "SELECT ",
                document_columns!(),
                " FROM documents WHERE tenant_id = $1 AND id = $2"
            ))
            .bind(tenant.as_str())
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .map(|row| document_from_row(&row))
            .transpose()
        })
        .await
    }

    /// Up to `limit` of the tenant's documents that pass `filter`, newest
    /// first (by creation time, then id), after `after`.
    pub async fn list_documents(
        &self,
        tenant: &TenantId,
        filter: &DocumentFilter,
        after: Option<&ListPosition>,
        limit: u32,
    ) -> Result<Vec<DocumentSummary>, StoreError> {
        let _quota = self.quota().await;
        let backend = self.backend;
        self.guarded(async {
            let mut sql = String::from(
                "SELECT id, collection, metadata, chunk_count, byte_size, created_at, updated_at, \
                 file_name, media_type, file_bytes, pages FROM documents WHERE tenant_id = $1",
            );
            let mut binds: Vec<Bind> = vec![Bind::Text(tenant.as_str().to_owned())];
            if let Some(collection) = &filter.collection {
                let p = push(&mut binds, Bind::Text(collection.clone()));
                sql.push_str(&format!(" AND collection = {p}"));
            }
            if let Some(after) = after {
                let t = push(&mut binds, Bind::Int(after.created_at));
                let i = push(&mut binds, Bind::Text(after.id.clone()));
                sql.push_str(&format!(
                    " AND (created_at < {t} OR (created_at = {t} AND id < {i}))"
                ));
            }
            for (field, value) in &filter.metadata {
                sql.push_str(" AND ");
                sql.push_str(&metadata_condition(backend, field, value, &mut |b| {
                    push(&mut binds, b)
                }));
            }
            let l = push(&mut binds, Bind::Int(i64::from(limit)));
            sql.push_str(&format!(" ORDER BY created_at DESC, id DESC LIMIT {l}"));
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for bind in binds {
                query = match bind {
                    Bind::Text(s) => query.bind(s),
                    Bind::Int(i) => query.bind(i),
                };
            }
            query
                .fetch_all(self.pool())
                .await?
                .iter()
                .map(summary_from_row)
                .collect()
        })
        .await
    }

    /// Up to `limit` of the tenant's documents, text included, oldest
    /// first (by creation time, then id), after `after`: the pages of an
    /// export.
    pub async fn documents_oldest_first(
        &self,
        tenant: &TenantId,
        after: Option<&ListPosition>,
        limit: u32,
    ) -> Result<Vec<StoredDocument>, StoreError> {
        let _quota = self.quota().await;
        self.guarded(async {
            let (created_at, id) = after.map_or((i64::MIN, ""), |p| (p.created_at, p.id.as_str()));
            sqlx::query(concat!(
                "SELECT ",
                document_columns!(),
                " FROM documents WHERE tenant_id = $1 \
                 AND (created_at > $2 OR (created_at = $2 AND id > $3)) \
                 ORDER BY created_at, id LIMIT $4"
            ))
            .bind(tenant.as_str())
            .bind(created_at)
            .bind(id)
            .bind(i64::from(limit))
            .fetch_all(self.pool())
            .await?
            .iter()
            .map(document_from_row)
            .collect()
        })
        .await
    }

    /// Up to `limit` documents of every tenant, ordered by tenant and id,
    /// after the `(tenant, id)` given: the pages the vector store's
    /// reconciliation walks.
    pub async fn documents_after(
        &self,
        after: Option<&(TenantId, String)>,
        limit: u32,
    ) -> Result<Vec<(TenantId, StoredDocument)>, StoreError> {
        let _quota = self.quota().await;
        self.guarded(async {
            let (tenant, id) = after.map_or(("", ""), |(t, i)| (t.as_str(), i.as_str()));
            sqlx::query(concat!(
                "SELECT tenant_id, ",
                document_columns!(),
                " FROM documents \
                 WHERE tenant_id > $1 OR (tenant_id = $1 AND id > $2) \
                 ORDER BY tenant_id, id LIMIT $3"
            ))
            .bind(tenant)
            .bind(id)
            .bind(i64::from(limit))
            .fetch_all(self.pool())
            .await?
            .iter()
            .map(|row| {
                let tenant: String = row.try_get("tenant_id")?;
                Ok((
                    tenant_column("documents.tenant_id", &tenant)?,
                    document_from_row(row)?,
                ))
            })
            .collect()
        })
        .await
    }

    /// The current `(revision, chunk_count, vector_bytes)` of those of
    /// `ids` the tenant already has.
    pub async fn existing_revisions(
        &self,
        tenant: &TenantId,
        ids: &[String],
    ) -> Result<HashMap<String, (String, i64, i64)>, StoreError> {
        let _quota = self.quota().await;
        self.guarded(async {
            let mut found = HashMap::new();
            // One query per id keeps the SQL portable (no array binds in SQLite);
            // batches are bounded by ANALYZER_MAX_BATCH_DOCUMENTS.
            for id in ids {
                let row = sqlx::query(
                    "SELECT revision, chunk_count, vector_bytes FROM documents \
                     WHERE tenant_id = $1 AND id = $2",
                )
                .bind(tenant.as_str())
                .bind(id)
                .fetch_optional(self.pool())
                .await?;
                if let Some(row) = row {
                    found.insert(
                        id.clone(),
                        (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?),
                    );
                }
            }
            Ok(found)
        })
        .await
    }

    /// Insert or replace a batch of documents, all or nothing, and count the
    /// ingest in the tenant's usage. Each document's revision must have been
    /// recorded as pending ([`Db::record_pending`]); the revisions it
    /// replaces are recorded for removal in the same transaction and
    /// returned. When the tenant would then store more than `vector_budget`
    /// bytes of vectors and payload, nothing is written
    /// ([`StoreError::OverQuota`]); the check holds across tasks, as the
    /// tenant's row is locked first.
    pub async fn upsert_documents(
        &self,
        tenant: &TenantId,
        documents: &[StoredDocument],
        vector_budget: u64,
    ) -> Result<Vec<VectorRevision>, StoreError> {
        let written = self
            .writing(
                tenant,
                self.upsert_documents_tx(tenant, documents, vector_budget),
            )
            .await;
        if let Ok(superseded) = &written {
            // The superseded revisions are counted before the pending ones
            // are let go, so that the count never drops to zero between.
            self.unsettle(tenant, superseded.len());
            self.settle(tenant, documents.len());
        }
        written
    }

    async fn upsert_documents_tx(
        &self,
        tenant: &TenantId,
        documents: &[StoredDocument],
        vector_budget: u64,
    ) -> Result<Vec<VectorRevision>, StoreError> {
        let _quota = self.quota().await;
        self.guarded(async {
            let (_turn, mut tx) = self.begin_write().await?;
            // Lock the tenant's row before reading its total (a row lock on
            // PostgreSQL, the write lock on SQLite): concurrent ingests of one
            // tenant on any task then see each other's bytes, and each reads
            // the revision it replaces after the other has committed.
            bump_generation(&mut tx, tenant).await?;
            let mut collections: Vec<&str> = documents.iter().map(|d| d.collection.as_str()).collect();
            collections.sort_unstable();
            collections.dedup();
            for name in collections {
                ensure_collection(&mut tx, tenant, name).await?;
            }
            let mut chunks = 0;
            let mut superseded = Vec::new();
            for doc in documents {
                cleanups::commit_pending(&mut tx, tenant, &doc.id, &doc.revision).await?;
                superseded.extend(cleanups::supersede(&mut tx, tenant, &doc.id).await?);
                sqlx::query(
                    "INSERT INTO documents (tenant_id, id, collection, revision, text, metadata, \
                     chunk_count, byte_size, vector_bytes, created_at, updated_at, \
                     file_name, media_type, file_bytes, pages) \
                     VALUES ($1, $2, $3, $10, $4, $5, $6, $7, $8, $9, $9, $11, $12, $13, $14) \
                     ON CONFLICT (tenant_id, id) DO UPDATE SET collection = excluded.collection, \
                     revision = excluded.revision, text = excluded.text, metadata = excluded.metadata, \
                     chunk_count = excluded.chunk_count, byte_size = excluded.byte_size, \
                     vector_bytes = excluded.vector_bytes, updated_at = excluded.updated_at, \
                     file_name = excluded.file_name, media_type = excluded.media_type, \
                     file_bytes = excluded.file_bytes, pages = excluded.pages",
                )
                .bind(tenant.as_str())
                .bind(&doc.id)
                .bind(&doc.collection)
                .bind(&doc.text)
                .bind(doc.metadata.to_string())
                .bind(doc.chunk_count)
                .bind(doc.byte_size)
                .bind(doc.vector_bytes)
                .bind(doc.updated_at)
                .bind(&doc.revision)
                .bind(doc.file.as_ref().map(|f| f.name.as_str()))
                .bind(doc.file.as_ref().map(|f| f.media_type.as_str()))
                .bind(doc.file.as_ref().map(|f| f.bytes))
                .bind(doc.file.as_ref().and_then(|f| f.pages))
                .execute(&mut *tx)
                .await?;
                chunks += doc.chunk_count;
            }
            let stored = storage_totals(&mut tx, tenant).await?.vector_bytes;
            if u64::try_from(stored).unwrap_or(0) > vector_budget {
                tx.rollback().await?;
                return Err(StoreError::OverQuota {
                    stored,
                    budget: vector_budget,
                });
            }
            let ingested = i64::try_from(documents.len()).unwrap_or(i64::MAX);
            let hour = usage::current_hour();
            for (metric, value) in [
                (usage::metrics::DOCUMENTS_INGESTED, ingested),
                (usage::metrics::CHUNKS_INGESTED, chunks),
            ] {
                add_usage(&mut tx, tenant, metric, hour, value).await?;
            }
            tx.commit().await?;
            Ok(superseded)
        })
        .await
    }

    /// Delete one document, recording its revision's vectors for removal
    /// in the same transaction; `None` if the tenant has no such document.
    pub async fn delete_document(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> Result<Option<VectorRevision>, StoreError> {
        // Counted before the transaction can make the revision's vectors
        // stale, let go if it did not.
        self.unsettle(tenant, 1);
        let deleted = self.delete_document_tx(tenant, id).await;
        if !matches!(deleted, Ok(Some(_))) {
            self.settle(tenant, 1);
        }
        deleted
    }

    async fn delete_document_tx(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> Result<Option<VectorRevision>, StoreError> {
        self.writing(tenant, async {
            let _quota = self.quota().await;
            self.guarded(async {
                let (_turn, mut tx) = self.begin_write().await?;
                // The tenant's row first, as every write of its documents locks it.
                bump_generation(&mut tx, tenant).await?;
                let Some(old) = cleanups::supersede(&mut tx, tenant, id).await? else {
                    tx.rollback().await?;
                    return Ok(None);
                };
                sqlx::query("DELETE FROM documents WHERE tenant_id = $1 AND id = $2")
                    .bind(tenant.as_str())
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(Some(old))
            })
            .await
        })
        .await
    }

    /// Of the documents `ids`, the revision each has in the database now
    /// (a document without a row is absent): what a search checks its
    /// hits against, so that it shows only committed revisions.
    pub async fn current_revisions(
        &self,
        tenant: &TenantId,
        ids: &[&str],
    ) -> Result<HashMap<String, String>, StoreError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let _quota = self.quota().await;
        self.guarded(async {
            let placeholders: Vec<String> = (2..ids.len() + 2).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT id, revision FROM documents WHERE tenant_id = $1 AND id IN ({})",
                placeholders.join(", ")
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(tenant.as_str());
            for id in ids {
                query = query.bind(*id);
            }
            query
                .fetch_all(self.pool())
                .await?
                .iter()
                .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
                .collect()
        })
        .await
    }

    /// Mark the tenant's data as changed (after a change made outside a
    /// transaction of this store, such as removing replaced vectors).
    pub async fn bump_generation(&self, tenant: &TenantId) -> Result<(), StoreError> {
        self.writing(tenant, async {
            let _quota = self.quota().await;
            self.guarded(async {
                let (_turn, mut tx) = self.begin_write().await?;
                bump_generation(&mut tx, tenant).await?;
                tx.commit().await?;
                Ok(())
            })
            .await
        })
        .await
    }

    /// What a tenant has stored.
    pub async fn storage_totals(&self, tenant: &TenantId) -> Result<StorageTotals, StoreError> {
        let _quota = self.quota().await;
        self.guarded(async { storage_totals(&mut *self.pool().acquire().await?, tenant).await })
            .await
    }
}

/// What a tenant stores, summed over its documents. Every column it reads
/// is in the `documents_storage` index, so the sum never reads a
/// document's text (a test holds SQLite's plan to that).
pub(crate) const STORAGE_TOTALS: &str = "SELECT CAST(COUNT(*) AS BIGINT), \
     CAST(COALESCE(SUM(chunk_count), 0) AS BIGINT), \
     CAST(COALESCE(SUM(byte_size), 0) AS BIGINT), \
     CAST(COALESCE(SUM(vector_bytes), 0) AS BIGINT) \
     FROM documents WHERE tenant_id = $1";

/// What the tenant stores, read on `conn` (a pooled connection, or a
/// transaction that sees its own writes).
pub(crate) async fn storage_totals(
    conn: &mut sqlx::AnyConnection,
    tenant: &TenantId,
) -> Result<StorageTotals, StoreError> {
    let row = sqlx::query(STORAGE_TOTALS)
        .bind(tenant.as_str())
        .fetch_one(&mut *conn)
        .await?;
    Ok(StorageTotals {
        documents: row.try_get(0)?,
        chunks: row.try_get(1)?,
        text_bytes: row.try_get(2)?,
        vector_bytes: row.try_get(3)?,
    })
}

/// A value bound to a listing's query.
enum Bind {
    Text(String),
    Int(i64),
}

/// Add a parameter; its placeholder.
fn push(binds: &mut Vec<Bind>, bind: Bind) -> String {
    binds.push(bind);
    format!("${}", binds.len())
}

/// The SQL condition that a document's metadata `field` equals `value`, in
/// the backend's JSON functions; the field and value are bound, never
/// spliced (`bind` adds a parameter and names its placeholder).
fn metadata_condition(
    backend: Backend,
    field: &str,
    value: &FilterValue,
    bind: &mut dyn FnMut(Bind) -> String,
) -> String {
    match backend {
        // jsonb equality compares type and value: "1" does not equal 1.
        Backend::Postgres => {
            let json = match value {
                FilterValue::String(s) => serde_json::Value::from(s.as_str()),
                FilterValue::Integer(i) => serde_json::Value::from(*i),
                FilterValue::Bool(b) => serde_json::Value::from(*b),
            };
            let f = bind(Bind::Text(field.to_owned()));
            let v = bind(Bind::Text(json.to_string()));
            format!("(CAST(metadata AS jsonb) -> CAST({f} AS text)) = CAST({v} AS jsonb)")
        }
        // json_type tells a string from a number, and true from 1.
        Backend::Sqlite => {
            let path = bind(Bind::Text(format!("$.\"{field}\"")));
            match value {
                FilterValue::String(s) => {
                    let v = bind(Bind::Text(s.clone()));
                    format!(
                        "(json_type(metadata, {path}) = 'text' AND json_extract(metadata, {path}) = {v})"
                    )
                }
                FilterValue::Integer(i) => {
                    let v = bind(Bind::Int(*i));
                    format!(
                        "(json_type(metadata, {path}) = 'integer' AND json_extract(metadata, {path}) = {v})"
                    )
                }
                FilterValue::Bool(b) => {
                    format!("json_type(metadata, {path}) = '{b}'")
                }
            }
        }
    }
}

fn summary_from_row(row: &AnyRow) -> Result<DocumentSummary, StoreError> {
    let metadata: String = row.try_get("metadata")?;
    Ok(DocumentSummary {
        id: row.try_get("id")?,
        collection: row.try_get("collection")?,
        metadata: serde_json::from_str(&metadata)
            .map_err(|e| StoreError::Corrupt(format!("document metadata: {e}")))?,
        chunk_count: row.try_get("chunk_count")?,
        byte_size: row.try_get("byte_size")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        file: file_from_row(row)?,
    })
}

/// The file columns of a row, if the document was uploaded as a file.
fn file_from_row(row: &AnyRow) -> Result<Option<StoredFile>, StoreError> {
    let name: Option<String> = row.try_get("file_name")?;
    let Some(name) = name else {
        return Ok(None);
    };
    Ok(Some(StoredFile {
        name,
        media_type: row
            .try_get::<Option<String>, _>("media_type")?
            .unwrap_or_default(),
        bytes: row.try_get::<Option<i64>, _>("file_bytes")?.unwrap_or(0),
        pages: row.try_get("pages")?,
    }))
}

pub(crate) fn document_from_row(row: &AnyRow) -> Result<StoredDocument, StoreError> {
    let metadata: String = row.try_get("metadata")?;
    Ok(StoredDocument {
        id: row.try_get("id")?,
        collection: row.try_get("collection")?,
        revision: row.try_get("revision")?,
        text: row.try_get("text")?,
        metadata: serde_json::from_str(&metadata)
            .map_err(|e| StoreError::Corrupt(format!("document metadata: {e}")))?,
        chunk_count: row.try_get("chunk_count")?,
        byte_size: row.try_get("byte_size")?,
        vector_bytes: row.try_get("vector_bytes")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        file: file_from_row(row)?,
    })
}
