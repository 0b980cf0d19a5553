//! The embedded vector store: the Qdrant engine in-process (`qdrant-edge`),
//! persisted under the data dir, one shard per embedding model.
//!
//! The database is the source of truth and the shard an index of it: every
//! chunk can be rebuilt from its document's stored text. So a write applies
//! to the shard and returns; a maintenance thread flushes the shard to disk
//! (at most [`FLUSH_INTERVAL`] after a write) and runs Qdrant's optimizers:
//! they build the index of large segments (for dense vectors an HNSW graph
//! and an int8 quantized copy; for the built-in embedder's sparse vectors
//! an immutable inverted index), merge small ones and vacuum deleted
//! points.
//!
//! A clean stop ([`VectorStore::flush`]) flushes and leaves a marker file;
//! a shard opened without one (a crash, a kill, a new or an emptied vector
//! directory) is out of date by up to the last flush interval, and
//! [`EdgeStore::reconcile_reason`] says so: the server then rebuilds what is
//! missing from the database and removes what the database no longer has
//! (`documents::reconcile`) before it serves. (Edge keeps a write-ahead log
//! but never replays it on load, so it cannot be the recovery.)
//!
//! Searches, writes and the optimizers share the shard (Edge serializes
//! updates itself, and optimizes segments through proxies while they are
//! read and written); only a flush takes it alone, and flushes and
//! optimizations run on the one maintenance thread, never at once (Edge's
//! `flush` expects no concurrent update or segment swap).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use qdrant_edge::{
    Condition, DEFAULT_VECTOR_NAME, Distance, EdgeConfigBuilder, EdgeOptimizersConfig, EdgeShard,
    EdgeSparseVectorParams, EdgeVectorParamsBuilder, FieldCondition, Filter, HnswIndexConfig,
    JsonPath, Match, NamedQuery, Payload, PayloadOps, PointId, PointInsertOperations,
    PointOperations, PointStruct, QuantizationConfig, QueryEnum, ScalarQuantizationConfig,
    ScalarType, ScrollRequest, SearchParams, SearchRequest, SetPayloadOp, UpdateOperation,
    ValueVariants, Vector, Vectors, WalOptions, WithPayloadInterface, WithVector,
};
use serde_json::Value;

use super::{
    ChunkHit, ChunkPoint, FilterValue, SPARSE_VECTOR, SearchQuery, VectorError, VectorStore,
    hit_from_payload, keys, metadata_payload, payload_of, point_id, revision_point_ids,
};
use analyzer_domain::embed::{Embedding, VectorSpace};
use analyzer_domain::tenants::TenantId;

mod indexes;
mod maintenance;
mod snapshot;
mod wal;

use indexes::{create_payload_indexes, upgrade_payload_indexes};
use maintenance::{maintain, stop_maintenance, sync_dir};
pub use snapshot::copy_shards;
use wal::prune_wal;

/// The longest a write waits in memory before the shard is flushed.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// A segment past this many KiB of vectors gets its HNSW index (about
/// 2,000 chunks of the built-in 256-dimension embedding), well below
/// Qdrant's default: docs/decisions/sparse-segments.md.
const INDEXING_THRESHOLD_KB: usize = 2_000;

/// A segment of sparse vectors stops growing at this many KiB of them
/// (Qdrant counts 12 bytes per non-zero: about 11,000 chunks of the
/// built-in embedder's): every merge rebuilds a segment's inverted index in
/// memory, so the bound caps a merge's transient heap. Dense vectors keep
/// the default. docs/decisions/sparse-segments.md.
const SPARSE_MAX_SEGMENT_KB: usize = 12_000;

/// The file a clean stop leaves in the shard's directory.
const CLEAN_STOP: &str = "clean-stop";

/// The size of a segment of Edge's write-ahead log, a file it maps into
/// memory and appends every write to; the open segment's written pages
/// stay resident (docs/decisions/edge-wal-segments.md). A write larger
/// than a segment gets a segment of its size.
const WAL_SEGMENT_BYTES: usize = 4 * 1024 * 1024;

/// The directory of Edge's write-ahead log in a shard's directory.
const WAL_DIR: &str = "wal";

/// How a shard is laid out; [`Tuning::default`] is what the server uses.
#[derive(Debug, Clone, Copy)]
pub struct Tuning {
    /// The size (KiB of vectors) above which a segment gets its HNSW index
    /// (or its immutable inverted index, for sparse vectors); Qdrant's
    /// default (10 MB) when `None`.
    pub indexing_threshold_kb: Option<usize>,
    /// The size of a write-ahead log segment.
    pub wal_segment_bytes: usize,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            indexing_threshold_kb: Some(INDEXING_THRESHOLD_KB),
            wal_segment_bytes: WAL_SEGMENT_BYTES,
        }
    }
}

/// Qdrant Edge, in-process.
pub struct EdgeStore {
    shared: Arc<Shared>,
    maintenance: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
    path: PathBuf,
    /// Why the shard must be checked against the database, if it must.
    reconcile: Option<&'static str>,
    /// The search's `hnsw_ef`; the engine's default when `None`.
    search_ef: Option<usize>,
}

/// What the store's callers and its maintenance thread share.
struct Shared {
    shard: RwLock<EdgeShard>,
    /// One write at a time goes to a blocking thread (see
    /// [`EdgeStore::write`]).
    writers: tokio::sync::Semaphore,
    state: Mutex<State>,
    /// Wakes the maintenance thread: there is work, or it should stop.
    wake: Condvar,
    /// Signalled by the maintenance thread when it stops working.
    idle: Condvar,
    /// The shard's directory as the kernel names it (absolute, links
    /// resolved), to find its inverted indexes' mappings.
    dir: PathBuf,
}

#[derive(Debug, Default)]
struct State {
    /// Writes applied since the last flush.
    unflushed: bool,
    /// Writes applied since the optimizers last ran.
    unoptimized: bool,
    /// The maintenance thread is flushing or optimizing.
    working: bool,
    /// The store is stopping: the maintenance thread ends, writes fail.
    closing: bool,
    /// A copy of the files is being taken: the maintenance thread waits.
    paused: bool,
}

impl std::fmt::Debug for EdgeStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeStore")
            .field("path", &self.path)
            .field("reconcile", &self.reconcile)
            .finish()
    }
}

impl EdgeStore {
    /// Open (or create) the shard for `model`'s vectors under `dir` and
    /// start its maintenance thread.
    pub fn open(dir: &Path, model: &str, space: VectorSpace) -> Result<Self, VectorError> {
        Self::open_with(dir, model, space, Tuning::default())
    }

    /// [`EdgeStore::open`] with another layout.
    pub fn open_with(
        dir: &Path,
        model: &str,
        space: VectorSpace,
        tuning: Tuning,
    ) -> Result<Self, VectorError> {
        let path = dir.join(slug(model));
        std::fs::create_dir_all(&path)
            .map_err(|e| VectorError::Internal(format!("create {}: {e}", path.display())))?;
        let wal = path.join(WAL_DIR);
        match prune_wal(&wal) {
            Ok((0, _)) => {}
            Ok((segments, bytes)) => tracing::info!(
                segments,
                mib = bytes / (1024 * 1024),
                "removed the closed segments of the vector store's write-ahead log"
            ),
            Err(e) => {
                return Err(VectorError::Internal(format!(
                    "prune {}: {e}",
                    wal.display()
                )));
            }
        }
        let config = EdgeConfigBuilder::new()
            .on_disk_payload(true)
            .wal_options(WalOptions {
                segment_capacity: tuning.wal_segment_bytes,
                ..WalOptions::default()
            });
        let config = match space {
            VectorSpace::Dense(dimensions) => config.vector(
                DEFAULT_VECTOR_NAME,
                EdgeVectorParamsBuilder::new(dimensions, Distance::Cosine)
                    .on_disk(true)
                    .build(),
            ),
            // An inverted index, searched exactly: a query reads the
            // posting lists of its own words. Kept in memory-mapped files,
            // as the payload is, so the page cache holds what is read.
            VectorSpace::Sparse => config.sparse_vector(
                SPARSE_VECTOR,
                EdgeSparseVectorParams {
                    on_disk: Some(true),
                    ..EdgeSparseVectorParams::default()
                },
            ),
        };
        let config = config
            // For dense vectors: no graph across tenants (every search is a
            // tenant's): links are built per tenant, through the tenant
            // index (Qdrant's multitenancy layout). A tenant too small for
            // a graph of its own (below `full_scan_threshold`) is scored
            // point by point through the payload index.
            .hnsw_config(HnswIndexConfig {
                m: 0,
                payload_m: Some(16),
                ..HnswIndexConfig::default()
            })
            .optimizers(EdgeOptimizersConfig {
                indexing_threshold: tuning.indexing_threshold_kb,
                max_segment_size: (space == VectorSpace::Sparse).then_some(SPARSE_MAX_SEGMENT_KB),
                ..EdgeOptimizersConfig::default()
            })
            // Indexed segments keep an int8 copy of their dense vectors in
            // memory (a quarter of the float32 size) and score with it; the
            // originals stay on disk for rescoring the best candidates.
            .quantization_config(QuantizationConfig::from(ScalarQuantizationConfig {
                r#type: ScalarType::Int8,
                quantile: Some(0.99),
                always_ram: Some(true),
            }))
            .build();
        let marker = path.join(CLEAN_STOP);
        let clean = marker.exists();
        if clean {
            // From here on a crash must be seen as one.
            std::fs::remove_file(&marker)
                .and_then(|()| sync_dir(&path))
                .map_err(|e| VectorError::Internal(format!("remove {}: {e}", marker.display())))?;
        }
        let existing = path.join("edge_config.json").exists();
        let shard = if existing {
            EdgeShard::load(&path, Some(config))
        } else {
            EdgeShard::new(&path, config)
        }
        .map_err(|e| VectorError::Internal(format!("open shard {}: {e}", path.display())))?;
        if existing {
            upgrade_payload_indexes(&shard)?;
        } else {
            create_payload_indexes(&shard)?;
        }
        shard.flush();
        let shared = Arc::new(Shared {
            shard: RwLock::new(shard),
            writers: tokio::sync::Semaphore::new(1),
            state: Mutex::new(State {
                // Segments a crash left unindexed get their index now.
                unoptimized: true,
                ..State::default()
            }),
            wake: Condvar::new(),
            idle: Condvar::new(),
            dir: std::fs::canonicalize(&path)
                .map_err(|e| VectorError::Internal(format!("resolve {}: {e}", path.display())))?,
        });
        shared.advise_random_reads();
        let maintenance = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("edge-maintenance".into())
                .spawn(move || maintain(&shared))
                .map_err(|e| VectorError::Internal(format!("start maintenance thread: {e}")))?
        };
        Ok(Self {
            shared,
            maintenance: Arc::new(Mutex::new(Some(maintenance))),
            path,
            reconcile: match (existing, clean) {
                (_, true) => None,
                (true, false) => Some("the shard was not stopped cleanly"),
                (false, false) => Some("a new shard"),
            },
            search_ef: None,
        })
    }

    /// Search the HNSW graph `ef` wide (`None`: the engine's default).
    pub fn with_search_ef(mut self, ef: Option<usize>) -> Self {
        self.search_ef = ef;
        self
    }

    /// Why the shard may be behind the database, if it may: it is new, or
    /// it was not stopped cleanly, so writes of the last flush interval may
    /// be missing from it, or deletes undone.
    pub fn reconcile_reason(&self) -> Option<&'static str> {
        self.reconcile
    }

    /// The ids of every point in the shard, of every tenant (for the
    /// reconciliation after an unclean stop).
    pub async fn point_ids(&self) -> Result<HashSet<uuid::Uuid>, VectorError> {
        self.read(|shard| {
            let mut ids = HashSet::new();
            let mut offset = None;
            loop {
                let (records, next) = shard
                    .scroll(ScrollRequest {
                        offset,
                        limit: Some(10_000),
                        filter: None,
                        with_payload: Some(WithPayloadInterface::Bool(false)),
                        with_vector: WithVector::Bool(false),
                        order_by: None,
                    })
                    .map_err(internal)?;
                ids.extend(records.into_iter().filter_map(|r| match r.id {
                    PointId::Uuid(id) => Some(id),
                    PointId::NumId(_) => None,
                }));
                match next {
                    Some(next) => offset = Some(next),
                    None => return Ok(ids),
                }
            }
        })
        .await
    }

    /// How many vectors are in HNSW-indexed segments.
    pub async fn indexed_vectors(&self) -> Result<usize, VectorError> {
        self.read(|shard| Ok(shard.info().indexed_vectors_count))
            .await
    }

    /// Remove points by id, whatever tenant they belong to (the
    /// reconciliation's removal of chunks the database no longer has).
    pub async fn delete_points(&self, ids: Vec<uuid::Uuid>) -> Result<(), VectorError> {
        if ids.is_empty() {
            return Ok(());
        }
        let ids = ids.into_iter().map(PointId::Uuid).collect();
        self.write(vec![UpdateOperation::PointOperation(
            PointOperations::DeletePoints { ids },
        )])
        .await
    }

    /// The writers' turn: one write (or copy, or the final flush) at a
    /// time, in arrival order (see [`EdgeStore::write`]).
    async fn turn(&self) -> Result<tokio::sync::SemaphorePermit<'_>, VectorError> {
        self.shared
            .writers
            .acquire()
            .await
            .map_err(|_| VectorError::Unavailable("the vector store is closed".into()))
    }

    async fn read<T, F>(&self, f: F) -> Result<T, VectorError>
    where
        T: Send + 'static,
        F: FnOnce(&EdgeShard) -> Result<T, VectorError> + Send + 'static,
    {
        // Reads (searches) score vectors for milliseconds: they run in the
        // tier's lane, fair between tenants (see `lanes`).
        let shared = Arc::clone(&self.shared);
        analyzer_runtime::lanes::run(move || {
            let guard = shared
                .shard
                .read()
                .map_err(|_| VectorError::Internal("shard lock poisoned".into()))?;
            f(&guard)
        })
        .await
        .map_err(|e| VectorError::Internal(e.to_string()))?
    }

    /// Apply `operations` on a blocking thread, one write at a time: Edge
    /// applies one update at a time anyway (behind its write-ahead log's
    /// lock), and a blocking thread per waiting write (tokio starts up to
    /// 512) each kept an allocator heap of its own: under 1,000 concurrent
    /// ingests, 230 threads and 660 MiB of memory for a few thousand
    /// chunks (docs/benchmarks/history.md). Waiting writes wait here, as futures, in
    /// arrival order.
    async fn write(&self, operations: Vec<UpdateOperation>) -> Result<(), VectorError> {
        let _turn = self.turn().await?;
        let shared = Arc::clone(&self.shared);
        tokio::task::spawn_blocking(move || {
            if shared.state()?.closing {
                return Err(VectorError::Unavailable(
                    "the vector store is closed".into(),
                ));
            }
            let result = {
                let guard = shared
                    .shard
                    .read()
                    .map_err(|_| VectorError::Internal("shard lock poisoned".into()))?;
                operations
                    .into_iter()
                    .try_for_each(|op| guard.update(op).map_err(internal))
            };
            // Even a failed batch may have applied part of itself.
            let mut state = shared.state()?;
            state.unflushed = true;
            state.unoptimized = true;
            drop(state);
            shared.wake.notify_one();
            result
        })
        .await
        .map_err(|e| VectorError::Internal(format!("blocking task: {e}")))?
    }

    /// Stop the maintenance thread, flush, and mark the stop clean, after
    /// the write (or the copy, see `snapshot`) under way.
    async fn close(&self) -> Result<(), VectorError> {
        let _turn = self.turn().await?;
        let (shared, maintenance) = (Arc::clone(&self.shared), Arc::clone(&self.maintenance));
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            stop_maintenance(&shared, &maintenance)?;
            shared.flush()?;
            let marker = path.join(CLEAN_STOP);
            std::fs::File::create(&marker)
                .and_then(|f| f.sync_all())
                .and_then(|()| sync_dir(&path))
                .map_err(|e| VectorError::Internal(format!("write {}: {e}", marker.display())))
        })
        .await
        .map_err(|e| VectorError::Internal(format!("blocking task: {e}")))?
    }
}

impl Drop for EdgeStore {
    /// Without [`VectorStore::flush`] (a test, a failed start): the thread
    /// stops and the shard flushes as it drops, but the stop is not marked
    /// clean, so the next open reconciles.
    fn drop(&mut self) {
        if let Err(e) = stop_maintenance(&self.shared, &self.maintenance) {
            tracing::error!(target: "analyzer::vectors", error = %e, "stopping the vector store");
        }
    }
}

pub(super) fn internal(e: impl std::fmt::Display) -> VectorError {
    VectorError::Internal(e.to_string())
}

fn slug(model: &str) -> String {
    model
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

pub(super) fn path(key: &str) -> Result<JsonPath, VectorError> {
    JsonPath::try_from(key)
        .map_err(|_| VectorError::Internal(format!("invalid payload path `{key}`")))
}

fn matches(key: &str, value: ValueVariants) -> Result<Condition, VectorError> {
    Ok(Condition::Field(FieldCondition::new_match(
        path(key)?,
        Match::new_value(value),
    )))
}

/// A point's vectors: the unnamed dense one, or the named sparse one.
fn vectors_of(vector: &Embedding) -> Result<Vectors, VectorError> {
    Ok(match vector {
        Embedding::Dense(values) => Vectors::from(values.clone()),
        Embedding::Sparse(sparse) => {
            Vectors::from(vec![(SPARSE_VECTOR, sparse_vector(sparse.clone())?)])
        }
    })
}

fn sparse_vector(sparse: analyzer_domain::embed::SparseVector) -> Result<Vector, VectorError> {
    Vector::new_sparse(sparse.indices, sparse.values)
        .map_err(|e| VectorError::Internal(format!("sparse vector: {e}")))
}

/// The filter every call of a tenant starts from.
fn tenant_filter(tenant: &TenantId, mut more: Vec<Condition>) -> Result<Filter, VectorError> {
    more.insert(
        0,
        matches(keys::TENANT, ValueVariants::String(tenant.as_str().into()))?,
    );
    Ok(Filter {
        should: None,
        min_should: None,
        must: Some(more),
        must_not: None,
    })
}

#[async_trait]
impl VectorStore for EdgeStore {
    async fn upsert(&self, tenant: &TenantId, points: Vec<ChunkPoint>) -> Result<(), VectorError> {
        if points.is_empty() {
            return Ok(());
        }
        let points = points
            .iter()
            .map(|p| {
                Ok(PointStruct::new(
                    PointId::Uuid(point_id(tenant, &p.document_id, &p.revision, p.chunk)),
                    vectors_of(&p.vector)?,
                    Value::Object(payload_of(tenant, p)),
                )
                .into())
            })
            .collect::<Result<_, VectorError>>()?;
        self.write(vec![UpdateOperation::PointOperation(
            PointOperations::UpsertPoints(PointInsertOperations::PointsList(points)),
        )])
        .await
    }

    async fn delete_revision(
        &self,
        tenant: &TenantId,
        document_id: &str,
        revision: &str,
        count: u32,
    ) -> Result<(), VectorError> {
        if count == 0 {
            return Ok(());
        }
        let ids = revision_point_ids(tenant, document_id, revision, count)
            .map(PointId::Uuid)
            .collect();
        self.write(vec![UpdateOperation::PointOperation(
            PointOperations::DeletePoints { ids },
        )])
        .await
    }

    async fn set_metadata(
        &self,
        tenant: &TenantId,
        document_id: &str,
        revision: &str,
        count: u32,
        metadata: serde_json::Map<String, Value>,
    ) -> Result<(), VectorError> {
        if count == 0 {
            return Ok(());
        }
        let ids = revision_point_ids(tenant, document_id, revision, count)
            .map(PointId::Uuid)
            .collect();
        self.write(vec![UpdateOperation::PayloadOperation(
            PayloadOps::SetPayload(SetPayloadOp {
                payload: Payload(metadata_payload(metadata)),
                points: Some(ids),
                filter: None,
                key: None,
            }),
        )])
        .await
    }

    async fn delete_document(
        &self,
        tenant: &TenantId,
        document_id: &str,
    ) -> Result<(), VectorError> {
        let filter = tenant_filter(
            tenant,
            vec![matches(
                keys::DOCUMENT,
                ValueVariants::String(document_id.into()),
            )?],
        )?;
        self.write(vec![UpdateOperation::PointOperation(
            PointOperations::DeletePointsByFilter(filter),
        )])
        .await
    }

    async fn search(
        &self,
        tenant: &TenantId,
        query: SearchQuery,
    ) -> Result<Vec<ChunkHit>, VectorError> {
        let mut conditions = vec![matches(
            keys::COLLECTION,
            ValueVariants::String(query.collection.clone()),
        )?];
        for (field, value) in &query.filter {
            let key = format!("{}.{field}", keys::METADATA);
            let value = match value {
                FilterValue::String(s) => ValueVariants::String(s.clone()),
                FilterValue::Integer(i) => ValueVariants::Integer(*i),
                FilterValue::Bool(b) => ValueVariants::Bool(*b),
            };
            conditions.push(matches(&key, value)?);
        }
        let sparse = matches!(query.vector, Embedding::Sparse(_));
        let request = SearchRequest {
            query: QueryEnum::Nearest(match query.vector {
                Embedding::Dense(values) => NamedQuery::default_dense(values),
                Embedding::Sparse(sparse) => NamedQuery {
                    query: sparse_vector(sparse)?.0,
                    using: Some(SPARSE_VECTOR.into()),
                },
            }),
            filter: Some(tenant_filter(tenant, conditions)?),
            params: self.search_ef.map(|ef| SearchParams {
                hnsw_ef: Some(ef),
                ..SearchParams::default()
            }),
            limit: query.top_k,
            offset: 0,
            // Each segment returns its own best `limit`; only the overall
            // best are read back with their payload, below.
            with_payload: Some(WithPayloadInterface::Bool(false)),
            with_vector: None,
            // A sparse hit shares a word with the query or is no hit: the
            // same whether the search read posting lists or scored a small
            // tenant's points one by one.
            score_threshold: sparse.then_some(super::SPARSE_MIN_SCORE),
        };
        let tenant = tenant.clone();
        self.read(move |shard| {
            let points = shard.search(request).map_err(internal)?;
            let ids: Vec<PointId> = points.iter().map(|p| p.id).collect();
            let mut payloads: std::collections::HashMap<PointId, _> = shard
                .retrieve(&ids, Some(WithPayloadInterface::Bool(true)), None)
                .map_err(internal)?
                .into_iter()
                .filter_map(|record| Some((record.id, record.payload?.0)))
                .collect();
            Ok(points
                .into_iter()
                .filter_map(|p| {
                    // A point deleted since the search is no longer a hit.
                    let payload = payloads.remove(&p.id)?;
                    // Defence in depth: the filter already holds this.
                    if payload.get(keys::TENANT).and_then(Value::as_str) != Some(tenant.as_str()) {
                        return None;
                    }
                    hit_from_payload(&payload, p.score)
                })
                .collect())
        })
        .await
    }

    async fn health(&self) -> Result<(), VectorError> {
        self.read(|_| Ok(())).await
    }

    fn backend(&self) -> String {
        "qdrant-edge".to_owned()
    }

    fn maintenance_pending(&self) -> Option<bool> {
        let state = self.shared.state().ok()?;
        Some(state.unflushed || state.unoptimized || state.working)
    }

    async fn snapshot_to(&self, dest: &Path) -> Result<(), VectorError> {
        self.snapshot(dest).await
    }

    async fn flush(&self) -> Result<(), VectorError> {
        // Called once, at shutdown: the stop is clean once this returns.
        self.close().await
    }
}

#[cfg(test)]
mod tests;
