//! Documents: validated ingest requests, and ingest, read and delete.
//!
//! An ingest is validated whole before anything is written, so a bad
//! document refuses the batch and stores nothing. Its revisions are
//! recorded as pending, the vectors written, then the rows stored in one
//! transaction; a replaced document's new chunks are written beside the old
//! revision, which is removed only after the row points at the new one, so
//! a failure at any step leaves the previous state intact, and the journal
//! (store/cleanups.rs) removes whatever vectors a crash leaves behind.

pub mod collections;
mod export;
pub mod files;
mod listing;
#[cfg(feature = "edge")]
mod reconcile;
mod requests;
pub use export::export;
pub use listing::{
    DEFAULT_PAGE, DocumentPage, ListQuery, Listing, MAX_PAGE, decode_position, encode_position,
    list, page_limit,
};
#[cfg(feature = "edge")]
pub use reconcile::{Payloads, Reconciled, reconcile};
pub use requests::{
    DEFAULT_COLLECTION, DocumentInput, DocumentItem, DocumentView, IngestRequest, IngestResponse,
    MAX_METADATA_BYTES, MAX_METADATA_FIELDS, Metadata, MetadataPatch, ValidIngest, collection_name,
    document_id, field_name, filter_conditions, open_object_of,
};

use serde_json::{Map, Value};
use tracing::Instrument as _;

use crate::error::{ServiceError, Violations};
use crate::usage::UsageRecorder;
use analyzer_domain::chunk::ChunkingConfig;
use analyzer_domain::chunk::chunk_text;
use analyzer_domain::embed::Embedder;
use analyzer_domain::tenants::TenantId;
use analyzer_store::{Db, MetadataWrite, StoreError, StoredDocument, VectorRevision, now_millis};
use analyzer_vectors::{ChunkPoint, VectorStore};

/// What ingestion needs.
pub struct Ingestor<'a> {
    /// The relational store.
    pub db: &'a Db,
    /// The vector store.
    pub vectors: &'a dyn VectorStore,
    /// The embedder.
    pub embedder: &'a dyn Embedder,
    /// Chunking settings.
    pub chunking: ChunkingConfig,
    /// Where embedding tokens are counted.
    pub usage: &'a UsageRecorder,
    /// The tenant's vector storage budget, in bytes.
    pub vector_budget: u64,
}

impl Ingestor<'_> {
    /// Chunk, embed and store a validated batch for `tenant`.
    #[tracing::instrument(skip_all, fields(tenant_id = %tenant, documents = ingest.documents.len()))]
    pub async fn ingest(
        &self,
        tenant: &TenantId,
        ingest: ValidIngest,
    ) -> Result<IngestResponse, ServiceError> {
        let ValidIngest {
            collection,
            documents,
        } = ingest;

        // Chunk everything, then embed in one call (providers batch better).
        let chunked: Vec<Vec<(Option<u32>, String)>> = documents
            .iter()
            .map(|d| chunks_of(d, self.chunking))
            .collect();
        let all_chunks: Vec<String> = chunked
            .iter()
            .flatten()
            .map(|(_, text)| text.clone())
            .collect();
        let embedded = self
            .embedder
            .embed(&all_chunks)
            .instrument(analyzer_telemetry::op_span!(
                "embed",
                model = self.embedder.model(),
                inputs = all_chunks.len()
            ))
            .await?;
        self.usage.add_embedding(
            tenant,
            self.embedder.model(),
            embedded.tokens,
            self.embedder.cost_micro_usd(embedded.tokens),
        );
        let mut vectors = embedded.vectors.into_iter();

        let ids: Vec<String> = documents.iter().map(|d| d.id.clone()).collect();
        let previous = self.db.existing_revisions(tenant, &ids).await?;
        let now = now_millis();

        let mut points = Vec::with_capacity(all_chunks.len());
        let mut rows = Vec::with_capacity(documents.len());
        for (doc, chunks) in documents.into_iter().zip(chunked) {
            let revision = uuid::Uuid::new_v4().simple().to_string();
            let chunk_count = chunks.len();
            let chunk_points = chunk_points(
                Revision {
                    document_id: &doc.id,
                    revision: &revision,
                    collection: &collection,
                    metadata: &doc.metadata,
                },
                chunks,
                &mut vectors,
            )?;
            let vector_bytes: u64 = chunk_points.iter().map(ChunkPoint::stored_bytes).sum();
            points.extend(chunk_points);
            rows.push(StoredDocument {
                id: doc.id,
                collection: collection.clone(),
                revision,
                byte_size: i64::try_from(doc.text.len()).unwrap_or(i64::MAX),
                text: doc.text,
                metadata: Value::Object(doc.metadata),
                chunk_count: i64::try_from(chunk_count).unwrap_or(i64::MAX),
                vector_bytes: i64::try_from(vector_bytes).unwrap_or(i64::MAX),
                created_at: now,
                updated_at: now,
                file: doc.file,
            });
        }
        let total_chunks = points.len();

        // Refuse an ingest over the quota before storing anything; the
        // transaction below checks again, atomically, against concurrent
        // ingests.
        let stored = self.db.storage_totals(tenant).await?.vector_bytes;
        let replaced: i64 = previous.values().map(|(_, _, bytes)| bytes).sum();
        let added: i64 = rows.iter().map(|r| r.vector_bytes).sum();
        let after = stored.saturating_sub(replaced).saturating_add(added);
        if u64::try_from(after).unwrap_or(0) > self.vector_budget {
            return Err(over_quota(tenant, after, self.vector_budget));
        }

        // The new revisions are recorded before any vector is written, so
        // that whatever happens next, their vectors are either committed
        // with the rows or removed (store/cleanups.rs).
        let revisions: Vec<VectorRevision> = rows.iter().map(vectors_of).collect();
        self.db.record_pending(tenant, &revisions).await?;
        let written = self.vectors.upsert(tenant, points).await;
        let committed = match written {
            Err(e) => Err(ServiceError::from(e)),
            Ok(()) => self
                .db
                .upsert_documents(tenant, &rows, self.vector_budget)
                .instrument(analyzer_telemetry::op_span!(
                    "store.write",
                    store = "db",
                    documents = rows.len()
                ))
                .await
                .map_err(|e| match e {
                    StoreError::OverQuota { stored, budget } => over_quota(tenant, stored, budget),
                    e => e.into(),
                }),
        };
        let superseded = match committed {
            Ok(superseded) => superseded,
            Err(e) => {
                // Undo the new revisions; the previous ones were never
                // touched. Claimed first: a commit whose answer was lost
                // keeps its vectors.
                leave_to_sweep(give_up(self.db, self.vectors, tenant, &revisions).await);
                return Err(e);
            }
        };
        let replaced_any = !superseded.is_empty();
        leave_to_sweep(remove_revisions(self.db, self.vectors, tenant, &superseded).await);
        if replaced_any {
            // A search between the commit and the removal above may have
            // cached old and new chunks together: make that entry unreachable.
            self.db.bump_generation(tenant).await?;
        }
        Ok(IngestResponse {
            ids,
            chunks: total_chunks,
        })
    }
}

fn over_quota(tenant: &TenantId, stored: i64, budget: u64) -> ServiceError {
    analyzer_telemetry::metrics::refusal(tenant.as_str(), "vector_storage_bytes");
    ServiceError::OverQuota(format!(
        "the ingest would store {stored} bytes of vectors and payload; the tier's vector_storage_bytes quota is {budget}; nothing was stored"
    ))
}

/// Read one of the tenant's documents.
pub async fn get(db: &Db, tenant: &TenantId, id: &str) -> Result<DocumentView, ServiceError> {
    let id = document_id(id).map_err(|_| not_found())?;
    db.document(tenant, &id)
        .await?
        .map(DocumentView::from)
        .ok_or_else(not_found)
}

/// Replace one of the tenant's documents' metadata, in its row and in its
/// vectors' payload, without re-embedding: searches filter on the new
/// values from the answer on, and no cached search keeps the old ones.
pub async fn replace_metadata(
    db: &Db,
    vectors: &dyn VectorStore,
    tenant: &TenantId,
    id: &str,
    patch: MetadataPatch,
) -> Result<DocumentView, ServiceError> {
    let id = document_id(id).map_err(|_| not_found())?;
    let mut found = Violations::default();
    let metadata = requests::metadata("metadata", Some(patch.metadata), &mut found);
    found.finish()?;
    let written = db
        .replace_metadata(
            tenant,
            &id,
            &Value::Object(metadata),
            |revision, metadata| copy_metadata(vectors, tenant, revision, metadata),
        )
        .instrument(analyzer_telemetry::op_span!(
            "store.write",
            store = "db",
            documents = 1
        ))
        .await?;
    match written {
        MetadataWrite::Written => get(db, tenant, &id).await,
        MetadataWrite::NotFound => Err(not_found()),
        MetadataWrite::CopyFailed(e) => Err(e.into()),
    }
}

/// Write `metadata` to the payload of a revision's vectors.
async fn copy_metadata(
    vectors: &dyn VectorStore,
    tenant: &TenantId,
    revision: VectorRevision,
    metadata: Value,
) -> Result<(), analyzer_vectors::VectorError> {
    let Value::Object(metadata) = metadata else {
        return Err(analyzer_vectors::VectorError::Internal(
            "stored metadata is not an object".into(),
        ));
    };
    let count = u32::try_from(revision.chunk_count).unwrap_or(u32::MAX);
    vectors
        .set_metadata(
            tenant,
            &revision.document_id,
            &revision.revision,
            count,
            metadata,
        )
        .await
}

/// Offboard a tenant: its documents, collections, keys (in one
/// transaction) and its vectors (after it, here or by the sweep if this
/// task dies first) are removed; its record and usage ledger stay. Safe to
/// repeat: a second call finds nothing more to remove.
pub async fn offboard(
    db: &Db,
    vectors: &dyn VectorStore,
    tenant: &TenantId,
) -> Result<usize, ServiceError> {
    let removed = db
        .delete_tenant(tenant)
        .await?
        .ok_or_else(|| ServiceError::NotFound("tenant not found".into()))?;
    leave_to_sweep(remove_revisions(db, vectors, tenant, &removed).await);
    Ok(removed.len())
}

/// Delete one of the tenant's documents and its vectors.
pub async fn delete(
    db: &Db,
    vectors: &dyn VectorStore,
    tenant: &TenantId,
    id: &str,
) -> Result<(), ServiceError> {
    let id = document_id(id).map_err(|_| not_found())?;
    // The row goes first, with its revision recorded for removal in the
    // same transaction: from the commit on, searches drop the document's
    // hits (they show only revisions the database has), and its vectors are
    // removed below or, if this task dies first, by the sweep.
    let removed = db
        .delete_document(tenant, &id)
        .instrument(analyzer_telemetry::op_span!(
            "store.write",
            store = "db",
            documents = 1
        ))
        .await?
        .ok_or_else(not_found)?;
    leave_to_sweep(remove_revisions(db, vectors, tenant, std::slice::from_ref(&removed)).await);
    Ok(())
}

fn vectors_of(row: &StoredDocument) -> VectorRevision {
    VectorRevision {
        document_id: row.id.clone(),
        revision: row.revision.clone(),
        chunk_count: row.chunk_count,
    }
}

/// Remove the vectors of revisions recorded for removal, then forget the
/// records of those removed. A revision whose vectors could not be removed
/// keeps its record, for the sweep to try again.
async fn remove_revisions(
    db: &Db,
    vectors: &dyn VectorStore,
    tenant: &TenantId,
    revisions: &[VectorRevision],
) -> Result<Swept, StoreError> {
    let mut removed = Vec::with_capacity(revisions.len());
    let mut swept = Swept::default();
    for r in revisions {
        let count = u32::try_from(r.chunk_count).unwrap_or(u32::MAX);
        match vectors
            .delete_revision(tenant, &r.document_id, &r.revision, count)
            .await
        {
            Ok(()) => removed.push(r.clone()),
            Err(e) => {
                tracing::warn!(error = %e, tenant_id = %tenant, document_id = %r.document_id, "could not remove a revision's vectors; the sweep will");
                swept.failed += 1;
            }
        }
    }
    db.finish_cleanups(tenant, &removed).await?;
    swept.removed = removed.len();
    Ok(swept)
}

/// Give up on pending revisions: claim those still pending (they can then
/// never be committed) and remove their vectors.
async fn give_up(
    db: &Db,
    vectors: &dyn VectorStore,
    tenant: &TenantId,
    revisions: &[VectorRevision],
) -> Result<Swept, StoreError> {
    let claimed = db.claim_pending(tenant, revisions).await?;
    forget_cached(db, tenant, &claimed).await;
    remove_revisions(db, vectors, tenant, &claimed).await
}

/// In a request: what [`remove_revisions`] or [`give_up`] did not finish is
/// logged and left to the sweep.
fn leave_to_sweep(done: Result<Swept, StoreError>) {
    if let Err(e) = done {
        tracing::warn!(error = %e, "could not finish with the vector journal; the sweep will");
    }
}

/// After giving up on pending revisions, whose chunks a search may have
/// seen and cached while they were in flight: make such entries
/// unreachable (the tenant's data generation moves on).
async fn forget_cached(db: &Db, tenant: &TenantId, claimed: &[VectorRevision]) {
    if claimed.is_empty() {
        return;
    }
    if let Err(e) = db.bump_generation(tenant).await {
        tracing::warn!(error = %e, "could not move the data generation past given-up revisions");
    }
}

/// What one pass of [`sweep`] finished.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    /// Revisions whose vectors were removed.
    pub removed: usize,
    /// Entries left for the next pass (the vector store failed).
    pub failed: usize,
    /// Documents whose vectors were given their row's metadata again (a
    /// metadata replacement did not finish).
    pub resynced: usize,
}

/// Entries finished per pass of the sweep.
const SWEEP_PAGE: u32 = 500;

/// Finish what requests left in the vector journal (store/cleanups.rs):
/// revisions recorded for removal more than `settle` ago (the request that
/// recorded them normally removes them itself), and pending revisions
/// older than `abandon_after`, the longest an ingest may run, whose task
/// died or whose request was cancelled. Costs one indexed read and a few
/// statements per entry; never a scan of the vector store.
pub async fn sweep(
    db: &Db,
    vectors: &dyn VectorStore,
    settle: std::time::Duration,
    abandon_after: std::time::Duration,
) -> Result<Swept, ServiceError> {
    let now = now_millis();
    let millis = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    let due = db
        .due_cleanups(
            now.saturating_sub(millis(settle)),
            now.saturating_sub(millis(abandon_after)),
            SWEEP_PAGE,
        )
        .await?;
    let mut swept = Swept::default();
    let unsynced = db
        .due_metadata_syncs(now.saturating_sub(millis(settle)), SWEEP_PAGE)
        .await?;
    for mark in unsynced {
        let tenant = &mark.tenant;
        let done = db
            .resync_metadata(tenant, &mark.document_id, |revision, metadata| {
                copy_metadata(vectors, tenant, revision, metadata)
            })
            .await?;
        if done {
            swept.resynced += 1;
        } else {
            swept.failed += 1;
        }
    }
    for entry in due {
        let revisions = std::slice::from_ref(&entry.vectors);
        let done = if entry.pending {
            give_up(db, vectors, &entry.tenant, revisions).await?
        } else {
            remove_revisions(db, vectors, &entry.tenant, revisions).await?
        };
        swept.removed += done.removed;
        swept.failed += done.failed;
    }
    Ok(swept)
}

/// The document revision a set of chunks belongs to.
struct Revision<'a> {
    document_id: &'a str,
    revision: &'a str,
    collection: &'a str,
    metadata: &'a Map<String, Value>,
}

/// A document's chunks, each with its page: a file's sections are chunked
/// one by one, so that no chunk crosses a page or a heading.
fn chunks_of(
    document: &requests::ValidDocument,
    config: ChunkingConfig,
) -> Vec<(Option<u32>, String)> {
    match &document.sections {
        Some(sections) => sections
            .iter()
            .flat_map(|s| {
                chunk_text(&s.text, config)
                    .into_iter()
                    .map(move |chunk| (s.page, chunk))
            })
            .collect(),
        None => chunk_text(&document.text, config)
            .into_iter()
            .map(|chunk| (None, chunk))
            .collect(),
    }
}

/// The points of one revision's `chunks`, each with the next of `vectors`
/// (the embeddings of a batch, in chunk order).
fn chunk_points(
    of: Revision<'_>,
    chunks: Vec<(Option<u32>, String)>,
    vectors: &mut impl Iterator<Item = analyzer_domain::embed::Embedding>,
) -> Result<Vec<ChunkPoint>, ServiceError> {
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, (page, text))| {
            let vector = vectors.next().ok_or_else(|| {
                ServiceError::Provider(analyzer_domain::embed::ProviderError::BadGateway(
                    "embedder returned fewer vectors than inputs".into(),
                ))
            })?;
            Ok(ChunkPoint {
                document_id: of.document_id.to_owned(),
                revision: of.revision.to_owned(),
                collection: of.collection.to_owned(),
                chunk: u32::try_from(i).unwrap_or(u32::MAX),
                page,
                text,
                metadata: of.metadata.clone(),
                vector,
            })
        })
        .collect()
}

fn not_found() -> ServiceError {
    ServiceError::NotFound("document not found".into())
}
