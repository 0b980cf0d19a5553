//! The vector store behind a trait, with tenant isolation inside it.
//!
//! Every method takes the tenant id, and the implementation adds the tenant
//! filter itself: callers cannot search, read or delete across tenants, and
//! point ids are derived from the tenant id, so one tenant cannot overwrite
//! another's points even with the same document id. The embedded default is
//! Qdrant Edge in-process ([`edge::EdgeStore`]); a Qdrant server implements the
//! same trait with the same payload layout.

pub mod breaker;
#[cfg(feature = "edge")]
pub mod edge;
pub mod metered;
pub mod qdrant;
#[cfg(feature = "edge")]
pub mod readahead;

use async_trait::async_trait;
use serde_json::{Map, Value};

use analyzer_domain::embed::Embedding;
pub use analyzer_domain::retrieval::{ChunkHit, FilterValue};
use analyzer_domain::tenants::TenantId;

/// The name of the sparse vector of every point when the embedder's
/// vectors are sparse (dense vectors are the unnamed default).
pub const SPARSE_VECTOR: &str = "lexical";

/// The least score of a sparse hit: above zero, so that a point sharing no
/// dimension with the query is not returned.
pub const SPARSE_MIN_SCORE: f32 = 1e-6;

/// Payload keys, shared by every implementation so the data layout is the same.
pub mod keys {
    /// The owning tenant (a keyword index, the tenant partition).
    pub const TENANT: &str = "tenant_id";
    /// The document id, scoped by tenant.
    pub const DOCUMENT: &str = "document_id";
    /// The collection name.
    pub const COLLECTION: &str = "collection";
    /// The document revision the chunk was written for: searches check it
    /// against the database's (points written before it was stored lack it).
    pub const REVISION: &str = "revision";
    /// The chunk's position in its document.
    pub const CHUNK: &str = "chunk";
    /// The chunk's text.
    pub const TEXT: &str = "text";
    /// The caller's metadata object; filters address `metadata.<field>`.
    pub const METADATA: &str = "metadata";
    /// The page of its file the chunk is on (absent without pages).
    pub const PAGE: &str = "page";
}

/// A failure of the vector store. The text is for logs, not clients.
#[derive(Debug, thiserror::Error)]
pub enum VectorError {
    /// The store could not be reached or refused the call.
    #[error("vector store unavailable: {0}")]
    Unavailable(String),
    /// The store failed internally.
    #[error("vector store: {0}")]
    Internal(String),
    /// The circuit breaker is open: the store is not called until then.
    #[error("vector store circuit open for {retry_after:?}")]
    CircuitOpen {
        /// Time until a call may be tried again.
        retry_after: std::time::Duration,
    },
}

/// One chunk to store.
#[derive(Debug, Clone)]
pub struct ChunkPoint {
    /// The document it belongs to.
    pub document_id: String,
    /// The document revision this chunk was written for.
    pub revision: String,
    /// The collection.
    pub collection: String,
    /// Its position in the document, from 0.
    pub chunk: u32,
    /// The page of its file it is on, for a file with pages.
    pub page: Option<u32>,
    /// The chunk's text.
    pub text: String,
    /// The document's metadata.
    pub metadata: Map<String, Value>,
    /// The embedding.
    pub vector: Embedding,
}

impl ChunkPoint {
    /// Bytes this point takes in the store: the vector plus its payload.
    /// Used for the tenant's storage accounting.
    pub fn stored_bytes(&self) -> u64 {
        let payload = self.document_id.len()
            + self.revision.len()
            + self.collection.len()
            + self.text.len()
            + Value::Object(self.metadata.clone()).to_string().len()
            // tenant id, chunk number and key names
            + 96;
        (self.vector.stored_bytes() + payload) as u64
    }
}

/// A similarity search inside one tenant's collection.
#[derive(Debug, Clone)]
pub struct SearchQuery {
    /// The collection to search.
    pub collection: String,
    /// The query embedding.
    pub vector: Embedding,
    /// How many hits at most.
    pub top_k: usize,
    /// Metadata fields that must equal the given values.
    pub filter: Vec<(String, FilterValue)>,
}

/// A tenant-isolating vector store.
#[async_trait]
pub trait VectorStore: Send + Sync {
    /// Insert or overwrite chunks of the tenant's documents.
    async fn upsert(&self, tenant: &TenantId, points: Vec<ChunkPoint>) -> Result<(), VectorError>;

    /// Remove chunks `0..count` of one revision of a tenant's document (the
    /// superseded revision after a replacement, or a failed ingest's).
    async fn delete_revision(
        &self,
        tenant: &TenantId,
        document_id: &str,
        revision: &str,
        count: u32,
    ) -> Result<(), VectorError>;

    /// Replace the metadata in the payload of chunks `0..count` of one
    /// revision of a tenant's document (searches filter on it and return it).
    async fn set_metadata(
        &self,
        tenant: &TenantId,
        document_id: &str,
        revision: &str,
        count: u32,
        metadata: Map<String, Value>,
    ) -> Result<(), VectorError>;
    /// Remove every chunk of one of the tenant's documents.
    async fn delete_document(
        &self,
        tenant: &TenantId,
        document_id: &str,
    ) -> Result<(), VectorError>;

    /// The tenant's chunks most similar to the query, best first.
    async fn search(
        &self,
        tenant: &TenantId,
        query: SearchQuery,
    ) -> Result<Vec<ChunkHit>, VectorError>;

    /// Whether the store can serve.
    async fn health(&self) -> Result<(), VectorError>;

    /// Persist everything pending; called on shutdown.
    async fn flush(&self) -> Result<(), VectorError>;

    /// Which implementation this is (for `/ready`).
    fn backend(&self) -> String;

    /// Copy the store's files, consistent and flushed, into the new
    /// directory `dest` while it keeps serving (a single host's backup).
    /// Only the embedded store has files of its own to copy; a Qdrant
    /// server is backed up by its own snapshots (docs/operations.md).
    async fn snapshot_to(&self, dest: &std::path::Path) -> Result<(), VectorError> {
        let _ = dest;
        Err(VectorError::Unavailable(format!(
            "{} is backed up by its own snapshots, not by `analyzer backup`",
            self.backend()
        )))
    }

    /// The circuit breaker's state (`closed`, `half_open`, `open`) when the
    /// store is behind one.
    fn breaker_state(&self) -> Option<&'static str> {
        None
    }

    /// For a store that flushes and indexes in the background (the
    /// embedded one): whether that work is pending or under way.
    fn maintenance_pending(&self) -> Option<bool> {
        None
    }
}

/// The point id of a chunk: a UUIDv5 of tenant, document, revision and
/// position, so ids never collide across tenants, and a replacement writes
/// beside the revision it replaces instead of over it.
pub fn point_id(tenant: &TenantId, document_id: &str, revision: &str, chunk: u32) -> uuid::Uuid {
    // A fixed namespace for this service's point ids.
    const NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6b1f_3c1e_9a4e_4f0b_a3c2_5d7e_8f90_1a2b);
    let name = format!(
        "{}\u{1f}{}\u{1f}{}\u{1f}{}",
        tenant.as_str(),
        document_id,
        revision,
        chunk
    );
    uuid::Uuid::new_v5(&NAMESPACE, name.as_bytes())
}

/// The point ids of chunks `0..count` of one revision of a document.
pub fn revision_point_ids(
    tenant: &TenantId,
    document_id: &str,
    revision: &str,
    count: u32,
) -> impl Iterator<Item = uuid::Uuid> {
    (0..count).map(move |chunk| point_id(tenant, document_id, revision, chunk))
}

/// Read a hit back from a stored payload; `None` if the payload is not one
/// of ours (it is then skipped rather than shown).
pub fn hit_from_payload(payload: &Map<String, Value>, score: f32) -> Option<ChunkHit> {
    Some(ChunkHit {
        document_id: payload.get(keys::DOCUMENT)?.as_str()?.to_owned(),
        chunk: u32::try_from(payload.get(keys::CHUNK)?.as_u64()?).ok()?,
        score,
        text: payload.get(keys::TEXT)?.as_str()?.to_owned(),
        metadata: payload
            .get(keys::METADATA)
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default(),
        revision: payload
            .get(keys::REVISION)
            .and_then(Value::as_str)
            .map(str::to_owned),
        page: payload
            .get(keys::PAGE)
            .and_then(Value::as_u64)
            .and_then(|p| u32::try_from(p).ok()),
    })
}

/// The payload that replaces a chunk's metadata: only the top-level
/// metadata key, which both stores replace whole.
pub fn metadata_payload(metadata: Map<String, Value>) -> Map<String, Value> {
    let mut payload = Map::new();
    payload.insert(keys::METADATA.into(), Value::Object(metadata));
    payload
}

/// The payload stored with a chunk.
pub fn payload_of(tenant: &TenantId, point: &ChunkPoint) -> Map<String, Value> {
    let mut payload = Map::new();
    payload.insert(keys::TENANT.into(), Value::from(tenant.as_str()));
    payload.insert(
        keys::DOCUMENT.into(),
        Value::from(point.document_id.as_str()),
    );
    payload.insert(
        keys::COLLECTION.into(),
        Value::from(point.collection.as_str()),
    );
    payload.insert(keys::REVISION.into(), Value::from(point.revision.as_str()));
    payload.insert(keys::CHUNK.into(), Value::from(point.chunk));
    payload.insert(keys::TEXT.into(), Value::from(point.text.as_str()));
    payload.insert(keys::METADATA.into(), Value::Object(point.metadata.clone()));
    if let Some(page) = point.page {
        payload.insert(keys::PAGE.into(), Value::from(page));
    }
    payload
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn point_ids_differ_between_tenants_for_the_same_document() {
        let a = TenantId::generate();
        let b = TenantId::generate();
        assert_ne!(point_id(&a, "doc", "r1", 0), point_id(&b, "doc", "r1", 0));
        assert_eq!(point_id(&a, "doc", "r1", 0), point_id(&a, "doc", "r1", 0));
        assert_ne!(point_id(&a, "doc", "r1", 0), point_id(&a, "doc", "r1", 1));
        assert_ne!(point_id(&a, "doc", "r1", 0), point_id(&a, "doc", "r2", 0));
    }

    #[test]
    fn payload_round_trips_to_a_hit() {
        let tenant = TenantId::generate();
        let point = ChunkPoint {
            document_id: "d1".into(),
            revision: "r1".into(),
            collection: "default".into(),
            chunk: 3,
            page: Some(2),
            text: "hello".into(),
            metadata: serde_json::json!({"lang": "en"})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            vector: Embedding::Dense(vec![0.0; 4]),
        };
        let hit = hit_from_payload(&payload_of(&tenant, &point), 0.5).expect("our payload");
        assert_eq!(hit.document_id, "d1");
        assert_eq!(hit.chunk, 3);
        assert_eq!(hit.metadata["lang"], "en");
        assert_eq!(hit.revision.as_deref(), Some("r1"));
        assert_eq!(hit.page, Some(2));
    }
}
