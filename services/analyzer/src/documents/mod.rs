//! Documents: validated ingest requests, and ingest, read and delete.
//!
//! An ingest is validated whole before anything is written, so a bad
//! document refuses the batch and stores nothing. Its revisions are
//! recorded as pending, the vectors written, then the rows stored in one
//! transaction; a replaced document's new chunks are written beside the old
//! revision, which is removed only after the row points at the new one, so
//! a failure at any step leaves the previous state intact, and the journal
//! (store/cleanups.rs) removes whatever vectors a crash leaves behind.

use std::collections::HashSet;

#[cfg(feature = "edge")]
mod reconcile;
#[cfg(feature = "edge")]
pub use reconcile::{Reconciled, reconcile};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tracing::Instrument as _;
use utoipa::ToSchema;

use crate::config::RequestLimits;
use crate::error::ServiceError;
use crate::usage::UsageRecorder;
use analyzer_domain::chunk::ChunkingConfig;
use analyzer_domain::chunk::chunk_text;
use analyzer_domain::embed::Embedder;
use analyzer_domain::tenants::TenantId;
use analyzer_store::{Db, StoreError, StoredDocument, VectorRevision, now_millis, rfc3339};
use analyzer_vectors::{ChunkPoint, VectorStore};

/// The collection used when a request names none.
pub const DEFAULT_COLLECTION: &str = "default";
/// Largest metadata object, serialized.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;
/// Most fields in a metadata object.
pub const MAX_METADATA_FIELDS: usize = 64;

/// `POST /v1/documents` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IngestRequest {
    /// Collection to store into; `default` if omitted.
    pub collection: Option<String>,
    /// The documents (at least one).
    pub documents: Vec<DocumentInput>,
}

/// One document to ingest.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DocumentInput {
    /// Your id for it (letters, digits, `.`, `_`, `:`, `-`; at most 128);
    /// generated if omitted. Ingesting an existing id replaces that document.
    pub id: Option<String>,
    /// The text (UTF-8, not empty).
    pub text: String,
    /// A JSON object of fields to filter on and to return with hits.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
}

/// `POST /v1/documents` response.
#[derive(Debug, Serialize, ToSchema)]
pub struct IngestResponse {
    /// The document ids, in request order.
    pub ids: Vec<String>,
    /// Chunks stored across all documents.
    pub chunks: usize,
}

/// A stored document, as returned by `GET /v1/documents/{id}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct DocumentView {
    /// The document id.
    pub id: String,
    /// Its collection.
    pub collection: String,
    /// The full text.
    pub text: String,
    /// Its metadata.
    #[schema(value_type = Object)]
    pub metadata: Value,
    /// Number of chunks embedded.
    pub chunks: i64,
    /// Size of the text in bytes.
    pub bytes: i64,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Last replacement time (RFC 3339).
    pub updated_at: String,
}

impl From<StoredDocument> for DocumentView {
    fn from(d: StoredDocument) -> Self {
        Self {
            id: d.id,
            collection: d.collection,
            text: d.text,
            metadata: d.metadata,
            chunks: d.chunk_count,
            bytes: d.byte_size,
            created_at: rfc3339(d.created_at),
            updated_at: rfc3339(d.updated_at),
        }
    }
}

/// A validated ingest: every document checked.
#[derive(Debug)]
pub struct ValidIngest {
    collection: String,
    documents: Vec<ValidDocument>,
}

#[derive(Debug)]
struct ValidDocument {
    id: String,
    text: String,
    metadata: Map<String, Value>,
}

/// Whether `s` is 1 to 64 ASCII letters, digits, `_` or `-`: the rule for
/// collection and metadata field names, which end up in payload paths.
fn is_simple_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Validate a collection name: 1 to 64 letters, digits, `_` or `-`.
pub fn collection_name(raw: Option<String>) -> Result<String, ServiceError> {
    let name = raw.unwrap_or_else(|| DEFAULT_COLLECTION.to_owned());
    if !is_simple_name(&name) {
        return Err(ServiceError::Invalid(format!(
            "`collection` must be 1 to 64 letters, digits, `_` or `-`, got `{}`",
            truncate(&name, 80)
        )));
    }
    Ok(name)
}

/// Validate a document id: 1 to 128 of letters, digits, `.`, `_`, `:`, `-`.
pub fn document_id(raw: &str) -> Result<String, ServiceError> {
    if raw.is_empty()
        || raw.len() > 128
        || !raw
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'))
    {
        return Err(ServiceError::Invalid(format!(
            "document id must be 1 to 128 letters, digits, `.`, `_`, `:` or `-`, got `{}`",
            truncate(raw, 80)
        )));
    }
    Ok(raw.to_owned())
}

/// Validate a metadata field name (it is addressable by search filters).
pub fn field_name(raw: &str) -> Result<(), ServiceError> {
    if !is_simple_name(raw) {
        return Err(ServiceError::Invalid(format!(
            "metadata field names must be 1 to 64 letters, digits, `_` or `-`, got `{}`",
            truncate(raw, 80)
        )));
    }
    Ok(())
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        format!("{}…", s.chars().take(max).collect::<String>())
    }
}

impl ValidIngest {
    /// Check a whole request against the limits.
    pub fn parse(request: IngestRequest, limits: &RequestLimits) -> Result<Self, ServiceError> {
        let collection = collection_name(request.collection)?;
        if request.documents.is_empty() {
            return Err(ServiceError::Invalid(
                "`documents` must not be empty".into(),
            ));
        }
        if request.documents.len() > limits.max_batch_documents {
            return Err(ServiceError::TooLarge(format!(
                "at most {} documents per request, got {}",
                limits.max_batch_documents,
                request.documents.len()
            )));
        }
        let mut seen = HashSet::new();
        let mut documents = Vec::with_capacity(request.documents.len());
        for (i, doc) in request.documents.into_iter().enumerate() {
            let at = |msg: String| format!("documents[{i}]: {msg}");
            let id = match doc.id {
                Some(id) => {
                    document_id(&id).map_err(|e| ServiceError::Invalid(at(e.to_string())))?
                }
                None => uuid::Uuid::new_v4().to_string(),
            };
            if !seen.insert(id.clone()) {
                return Err(ServiceError::Invalid(at(format!(
                    "duplicate document id `{id}` in this batch"
                ))));
            }
            if doc.text.trim().is_empty() {
                return Err(ServiceError::Invalid(at("`text` must not be empty".into())));
            }
            if doc.text.len() > limits.max_document_bytes {
                return Err(ServiceError::TooLarge(at(format!(
                    "`text` is {} bytes; the limit is {}",
                    doc.text.len(),
                    limits.max_document_bytes
                ))));
            }
            if doc.text.contains('\0') {
                return Err(ServiceError::Invalid(at(
                    "`text` must not contain NUL".into()
                )));
            }
            let metadata = match doc.metadata {
                None | Some(Value::Null) => Map::new(),
                Some(Value::Object(map)) => map,
                Some(_) => {
                    return Err(ServiceError::Invalid(at(
                        "`metadata` must be a JSON object".into(),
                    )));
                }
            };
            if metadata.len() > MAX_METADATA_FIELDS {
                return Err(ServiceError::Invalid(at(format!(
                    "`metadata` has more than {MAX_METADATA_FIELDS} fields"
                ))));
            }
            for key in metadata.keys() {
                field_name(key).map_err(|e| ServiceError::Invalid(at(e.to_string())))?;
            }
            if Value::Object(metadata.clone()).to_string().len() > MAX_METADATA_BYTES {
                return Err(ServiceError::Invalid(at(format!(
                    "`metadata` is larger than {MAX_METADATA_BYTES} bytes"
                ))));
            }
            documents.push(ValidDocument {
                id,
                text: doc.text,
                metadata,
            });
        }
        Ok(Self {
            collection,
            documents,
        })
    }
}

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
        let chunked: Vec<Vec<String>> = documents
            .iter()
            .map(|d| chunk_text(&d.text, self.chunking))
            .collect();
        let all_chunks: Vec<String> = chunked.iter().flatten().cloned().collect();
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

/// The points of one revision's `chunks`, each with the next of `vectors`
/// (the embeddings of a batch, in chunk order).
fn chunk_points(
    of: Revision<'_>,
    chunks: Vec<String>,
    vectors: &mut impl Iterator<Item = analyzer_domain::embed::Embedding>,
) -> Result<Vec<ChunkPoint>, ServiceError> {
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, text)| {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn limits() -> RequestLimits {
        RequestLimits {
            max_body_bytes: 1 << 20,
            max_batch_documents: 2,
            max_document_bytes: 100,
            max_top_k: 10,
            request_timeout: std::time::Duration::from_secs(5),
        }
    }

    fn parse(v: Value) -> Result<ValidIngest, ServiceError> {
        let request: IngestRequest =
            serde_json::from_value(v).map_err(|e| ServiceError::Invalid(e.to_string()))?;
        ValidIngest::parse(request, &limits())
    }

    #[test]
    fn a_valid_batch_gets_ids_and_the_default_collection() {
        let ok = parse(json!({"documents": [{"text": "hello"}, {"id": "a-1", "text": "x", "metadata": {"k": 1}}]}))
            .expect("valid");
        assert_eq!(ok.collection, DEFAULT_COLLECTION);
        assert_eq!(ok.documents[1].id, "a-1");
        assert_eq!(ok.documents.len(), 2);
    }

    #[test]
    fn bad_batches_are_refused_whole() {
        let invalid = |v: Value| matches!(parse(v), Err(ServiceError::Invalid(_)));
        let too_large = |v: Value| matches!(parse(v), Err(ServiceError::TooLarge(_)));
        assert!(invalid(json!({"documents": []})));
        assert!(invalid(json!({"documents": [{"text": "  "}]})));
        assert!(invalid(
            json!({"documents": [{"text": "a", "id": "bad id"}]})
        ));
        assert!(invalid(
            json!({"documents": [{"text": "a", "id": "x"}, {"text": "b", "id": "x"}]})
        ));
        assert!(invalid(
            json!({"documents": [{"text": "a", "metadata": [1]}]})
        ));
        assert!(invalid(
            json!({"documents": [{"text": "a", "metadata": {"bad key": 1}}]})
        ));
        assert!(invalid(
            json!({"collection": "no/slash", "documents": [{"text": "a"}]})
        ));
        assert!(invalid(json!({"documents": [{"text": "a", "extra": 1}]})));
        assert!(too_large(
            json!({"documents": [{"text": "a"}, {"text": "b"}, {"text": "c"}]})
        ));
        assert!(too_large(json!({"documents": [{"text": "x".repeat(101)}]})));
    }
}
