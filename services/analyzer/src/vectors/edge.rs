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
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use qdrant_edge::{
    Condition, DEFAULT_VECTOR_NAME, Distance, EdgeConfigBuilder, EdgeOptimizersConfig, EdgeShard,
    EdgeSparseVectorParams, EdgeVectorParamsBuilder, FieldCondition, Filter, HnswIndexConfig,
    JsonPath, KeywordIndexParams, Match, NamedQuery, PayloadFieldSchema, PayloadSchemaParams,
    PayloadSchemaType, PointId, PointInsertOperations, PointOperations, PointStruct,
    QuantizationConfig, QueryEnum, ScalarQuantizationConfig, ScalarType, ScrollRequest,
    SearchParams, SearchRequest, UpdateOperation, UuidIndexParams, ValueVariants, Vector, Vectors,
    WalOptions, WithPayloadInterface, WithVector,
};
use serde_json::Value;

use super::{
    ChunkHit, ChunkPoint, FilterValue, SPARSE_VECTOR, SearchQuery, VectorError, VectorStore,
    hit_from_payload, keys, payload_of, point_id, revision_point_ids,
};
use crate::embed::{Embedding, VectorSpace};
use crate::tenants::TenantId;

/// The longest a write waits in memory before the shard is flushed.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// A segment past this many KiB of vectors gets its HNSW index (about
/// 2,000 chunks of the built-in 256-dimension embedding). Qdrant's default,
/// 10 MB, left up to 10,000 points in the appendable segment, which every
/// search scores one by one, in float32, through the filter: uncached
/// search kept up with 1,500/s offered only at 2 MB (BENCHMARKS.md).
const INDEXING_THRESHOLD_KB: usize = 2_000;

/// A segment of sparse vectors stops growing at this many KiB of them
/// (Qdrant counts 12 bytes per non-zero: about 11,000 chunks of the
/// built-in embedder's). Every merge into a segment rebuilds its whole
/// inverted index in memory (posting lists grown by doubling, then copied)
/// and rewrites its vectors and payload, so a merge's transient heap grows
/// with this bound. Under the load harness's ingest scenario (BENCHMARKS.md,
/// 2026-12-02): the engine's default (256 MB per indexing thread) peaked at
/// 1.2 GiB RSS; 32 MB at 270 MiB of heap, 16 MB at 201, 12 MB at 175-176,
/// 8 MB at 169-178, with uncached search and analysis as fast within the
/// run-to-run spread (exact either way: every segment's lists are read).
/// Dense vectors keep the default: an HNSW graph gains from large
/// segments.
const SPARSE_MAX_SEGMENT_KB: usize = 12_000;

/// The file a clean stop leaves in the shard's directory.
const CLEAN_STOP: &str = "clean-stop";

/// The size of a segment of Edge's write-ahead log, a file it maps into
/// memory and appends every write to. The open segment's written pages
/// stay resident (a closed segment's are let go): at Edge's default, 32
/// MiB, that was 21 MiB of the server's memory after seeding 100,000
/// chunks (BENCHMARKS.md). A write larger than a segment gets a segment
/// of its size.
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
    wake: Condvar,
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

    async fn read<T, F>(&self, f: F) -> Result<T, VectorError>
    where
        T: Send + 'static,
        F: FnOnce(&EdgeShard) -> Result<T, VectorError> + Send + 'static,
    {
        // Reads (searches) score vectors for milliseconds: they run in the
        // tier's lane, fair between tenants (see `lanes`).
        let shared = Arc::clone(&self.shared);
        crate::lanes::run(move || {
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
    /// chunks (BENCHMARKS.md). Waiting writes wait here, as futures, in
    /// arrival order.
    async fn write(&self, operations: Vec<UpdateOperation>) -> Result<(), VectorError> {
        let _turn = self
            .shared
            .writers
            .acquire()
            .await
            .map_err(|_| VectorError::Unavailable("the vector store is closed".into()))?;
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

    /// Stop the maintenance thread, flush, and mark the stop clean.
    async fn close(&self) -> Result<(), VectorError> {
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

/// Tell the maintenance thread to stop and wait for it: an optimization
/// under way finishes first (Edge cannot stop one).
fn stop_maintenance(
    shared: &Shared,
    maintenance: &Mutex<Option<std::thread::JoinHandle<()>>>,
) -> Result<(), VectorError> {
    shared.state()?.closing = true;
    shared.wake.notify_one();
    let handle = maintenance
        .lock()
        .map_err(|_| VectorError::Internal("maintenance lock poisoned".into()))?
        .take();
    match handle {
        Some(handle) => handle
            .join()
            .map_err(|_| VectorError::Internal("the maintenance thread panicked".into())),
        None => Ok(()),
    }
}

impl Shared {
    fn state(&self) -> Result<MutexGuard<'_, State>, VectorError> {
        self.state
            .lock()
            .map_err(|_| VectorError::Internal("store state lock poisoned".into()))
    }

    /// Flush with the shard to itself: Edge's flush must not meet an update.
    fn flush(&self) -> Result<(), VectorError> {
        self.shard
            .write()
            .map_err(|_| VectorError::Internal("shard lock poisoned".into()))?
            .flush();
        Ok(())
    }

    /// Have the kernel read the segments' inverted indexes without
    /// read-ahead (see [`super::readahead`]): after opening the shard and
    /// after each optimization, which maps the indexes it builds. A failure
    /// costs only speed, so it is logged, not returned.
    fn advise_random_reads(&self) {
        match super::readahead::advise_random_reads(&self.dir) {
            Ok(mappings) => tracing::debug!(
                target: "analyzer::vectors",
                mappings,
                "inverted indexes advised for random reads"
            ),
            Err(e) => tracing::warn!(
                target: "analyzer::vectors",
                error = %e,
                "could not advise the inverted indexes for random reads"
            ),
        }
    }

    /// Run the optimizers on a thread of the lowest priority (and the
    /// index builders it starts, which inherit it): index builds take only
    /// CPU that requests leave. At normal priority a merge rebuilding a
    /// 150k-point segment under the mixed load took both cores and made
    /// requests wait past their database timeouts (503s, measured).
    fn optimize(&self) -> Result<bool, VectorError> {
        std::thread::scope(|scope| {
            std::thread::Builder::new()
                .name("edge-optimizer".into())
                .spawn_scoped(scope, || {
                    crate::lanes::lower_priority();
                    self.shard
                        .read()
                        .map_err(|_| VectorError::Internal("shard lock poisoned".into()))?
                        .optimize()
                        .map_err(internal)
                })
                .map_err(|e| VectorError::Internal(format!("start optimizer thread: {e}")))?
                .join()
                .map_err(|_| VectorError::Internal("the optimizer thread panicked".into()))?
        })
    }
}

/// The maintenance thread: flush what was written, then let the optimizers
/// do what they find to do (a quick no-op when the segments are in shape).
fn maintain(shared: &Shared) {
    loop {
        let (flush, optimize) = {
            let Ok(mut state) = shared.state() else {
                return;
            };
            while !state.closing && !state.unflushed && !state.unoptimized {
                state = match shared.wake.wait(state) {
                    Ok(state) => state,
                    Err(_) => return,
                };
            }
            if state.closing {
                return;
            }
            let work = (state.unflushed, state.unoptimized);
            state.unflushed = false;
            state.unoptimized = false;
            state.working = true;
            work
        };
        if optimize {
            let began = std::time::Instant::now();
            match shared.optimize() {
                Ok(true) => {
                    shared.advise_random_reads();
                    let info = shared.shard.read().map(|shard| shard.info()).ok();
                    tracing::info!(
                        target: "analyzer::vectors",
                        duration_ms = began.elapsed().as_millis() as u64,
                        segments = info.as_ref().map(|i| i.segments_count),
                        points = info.as_ref().map(|i| i.points_count),
                        indexed_vectors = info.as_ref().map(|i| i.indexed_vectors_count),
                        "vector segments optimized"
                    );
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(target: "analyzer::vectors", error = %e, "vector segment optimization failed")
                }
            }
        }
        if (flush || optimize)
            && let Err(e) = shared.flush()
        {
            tracing::error!(target: "analyzer::vectors", error = %e, "vector store flush failed");
        }
        // Writes of the next interval share one flush.
        let Ok(mut state) = shared.state() else {
            return;
        };
        state.working = false;
        let rest = std::time::Instant::now() + FLUSH_INTERVAL;
        while !state.closing {
            let left = rest.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            state = match shared.wake.wait_timeout(state, left) {
                Ok((state, _)) => state,
                Err(_) => return,
            };
        }
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Remove the closed segments of the shard's write-ahead log in `dir` but
/// the newest, before Edge opens it; how many and their bytes.
///
/// Edge appends every write to the log and never truncates it: qdrant-edge
/// 0.7 neither acknowledges what its segments have persisted nor reads the
/// log back on load (the module docs), so its closed segments only grow,
/// with every write ever made (about 150 MiB once the load harness has
/// seeded 100,000 chunks).
/// One must stay: the log numbers its records on from the last closed
/// segment, and Edge versions each point with the number of the write that
/// made it, ignoring a later write numbered lower. Oldest first, so that a
/// crash midway leaves an unbroken run, as the log requires.
fn prune_wal(dir: &Path) -> std::io::Result<(usize, u64)> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((0, 0)),
        Err(e) => return Err(e),
    };
    // The lock Edge holds on the log while a shard is open: one another
    // process has open is left to fail to open here.
    let lock = std::fs::File::open(dir)?;
    if lock.try_lock().is_err() {
        return Ok((0, 0));
    }
    let mut closed = Vec::new();
    for entry in entries {
        let entry = entry?;
        let start = entry
            .file_name()
            .to_str()
            .and_then(|name| name.strip_prefix("closed-"))
            .and_then(|start| start.parse::<u64>().ok());
        if let Some(start) = start {
            closed.push((start, entry.path()));
        }
    }
    closed.sort_unstable();
    closed.pop();
    let mut bytes = 0;
    for (_, segment) in &closed {
        bytes += std::fs::metadata(segment)?.len();
        std::fs::remove_file(segment)?;
    }
    if !closed.is_empty() {
        lock.sync_all()?;
    }
    Ok((closed.len(), bytes))
}

/// The tenant id's index: a UUID index (tenant ids are UUIDs), marked as
/// the tenant partition. Every search checks it on every point the HNSW
/// graph visits; as a keyword index that check (string compares) took a
/// third of an uncached search's time, as a UUID it compares two integers.
/// On disk, as the others (see [`create_payload_indexes`]).
fn tenant_index() -> PayloadFieldSchema {
    PayloadFieldSchema::FieldParams(PayloadSchemaParams::Uuid(UuidIndexParams {
        r#type: Default::default(),
        is_tenant: Some(true),
        on_disk: Some(true),
        enable_hnsw: None,
    }))
}

/// Whether an index is kept in its memory-mapped files rather than loaded.
fn on_disk(info: &qdrant_edge::PayloadIndexInfo) -> bool {
    match &info.params {
        Some(PayloadSchemaParams::Keyword(params)) => params.on_disk == Some(true),
        Some(PayloadSchemaParams::Uuid(params)) => params.on_disk == Some(true),
        _ => false,
    }
}

fn create_index(
    shard: &EdgeShard,
    field: &str,
    schema: PayloadFieldSchema,
) -> Result<(), VectorError> {
    shard
        .update(UpdateOperation::FieldIndexOperation(
            qdrant_edge::FieldIndexOperations::CreateIndex(qdrant_edge::CreateIndex {
                field_name: path(field)?,
                field_schema: Some(schema),
            }),
        ))
        .map_err(internal)
}

fn delete_index(shard: &EdgeShard, field: &str) -> Result<(), VectorError> {
    shard
        .update(UpdateOperation::FieldIndexOperation(
            qdrant_edge::FieldIndexOperations::DeleteIndex(path(field)?),
        ))
        .map_err(internal)
}

/// The payload indexes: of what searches (tenant, collection) and deletes
/// (document) filter on, and nothing else. Only the tenant's builds HNSW
/// links (Qdrant's multitenant layout, with `m: 0` and `payload_m` in the
/// HNSW config: one graph per tenant and none across tenants, which no
/// search could use). All three stay in their memory-mapped files, where
/// the page cache holds what searches read: loaded, an indexed segment's
/// indexes were maps in memory of every point and every value, 20-25 MB of
/// the server's heap at 175,000 chunks (BENCHMARKS.md, memory). A segment
/// still being written keeps its indexes in memory either way.
fn create_payload_indexes(shard: &EdgeShard) -> Result<(), VectorError> {
    let keyword =
        PayloadFieldSchema::FieldParams(PayloadSchemaParams::Keyword(KeywordIndexParams {
            r#type: Default::default(),
            is_tenant: Some(false),
            on_disk: Some(true),
            enable_hnsw: Some(false),
        }));
    create_index(shard, keys::TENANT, tenant_index())?;
    create_index(shard, keys::DOCUMENT, keyword.clone())?;
    create_index(shard, keys::COLLECTION, keyword)
}

/// Shards written before the tenant index became a UUID index (and the
/// others stopped building HNSW links), or before the indexes stayed on
/// disk, get today's indexes; the payload is the same, only the indexes
/// are rebuilt. Shards written before the chunk number's index was dropped
/// (no search or delete filters on it; it held two in-memory maps of every
/// point) lose it.
fn upgrade_payload_indexes(shard: &EdgeShard) -> Result<(), VectorError> {
    let schema = shard.info().payload_schema;
    if schema.contains_key(&path(keys::CHUNK)?) {
        delete_index(shard, keys::CHUNK)?;
        tracing::info!(target: "analyzer::vectors", "payload index of the chunk number dropped");
    }
    let fields = [keys::TENANT, keys::DOCUMENT, keys::COLLECTION];
    let tenant = schema.get(&path(keys::TENANT)?).map(|info| info.data_type);
    let mut current = tenant == Some(PayloadSchemaType::Uuid);
    for field in fields {
        current &= schema.get(&path(field)?).is_some_and(on_disk);
    }
    if current {
        return Ok(());
    }
    for field in fields {
        if schema.contains_key(&path(field)?) {
            delete_index(shard, field)?;
        }
    }
    create_payload_indexes(shard)?;
    tracing::info!(target: "analyzer::vectors", "payload indexes rebuilt (on disk, tenant id as a UUID index)");
    Ok(())
}

fn internal(e: impl std::fmt::Display) -> VectorError {
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

fn path(key: &str) -> Result<JsonPath, VectorError> {
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

fn sparse_vector(sparse: crate::embed::SparseVector) -> Result<Vector, VectorError> {
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

    async fn flush(&self) -> Result<(), VectorError> {
        // Called once, at shutdown: the stop is clean once this returns.
        self.close().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embed::{HashEmbedder, SparseVector};
    use serde_json::json;

    fn point(doc: &str, chunk: u32, vector: Vec<f32>, metadata: Value) -> ChunkPoint {
        ChunkPoint {
            document_id: doc.into(),
            revision: "r1".into(),
            collection: "default".into(),
            chunk,
            text: format!("{doc} chunk {chunk}"),
            metadata: metadata.as_object().cloned().unwrap_or_default(),
            vector: Embedding::Dense(vector),
        }
    }

    /// A chunk of `text` with its built-in sparse vector `vector`.
    fn sparse_point(doc: &str, text: &str, vector: SparseVector, metadata: Value) -> ChunkPoint {
        ChunkPoint {
            text: text.to_owned(),
            vector: Embedding::Sparse(vector),
            ..point(doc, 0, vec![], metadata)
        }
    }

    /// Wait until the maintenance thread has flushed and optimized.
    async fn settle(store: &EdgeStore) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while store.maintenance_pending() != Some(false) {
            assert!(
                std::time::Instant::now() < deadline,
                "maintenance never settled"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    async fn hits(store: &EdgeStore, t: &TenantId) -> usize {
        let query = query(vec![0.0, 1.0], vec![]);
        store.search(t, query).await.expect("search").len()
    }

    fn query(vector: Vec<f32>, filter: Vec<(String, FilterValue)>) -> SearchQuery {
        SearchQuery {
            collection: "default".into(),
            vector: Embedding::Dense(vector),
            top_k: 10,
            filter,
        }
    }

    fn sparse_query(vector: SparseVector, filter: Vec<(String, FilterValue)>) -> SearchQuery {
        SearchQuery {
            collection: "default".into(),
            vector: Embedding::Sparse(vector),
            top_k: 10,
            filter,
        }
    }

    #[tokio::test]
    async fn search_and_delete_never_cross_tenants() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EdgeStore::open(dir.path(), "test-model", VectorSpace::Dense(3)).expect("open");
        let (a, b) = (TenantId::generate(), TenantId::generate());
        store
            .upsert(
                &a,
                vec![point("same-id", 0, vec![1.0, 0.0, 0.0], json!({}))],
            )
            .await
            .expect("upsert a");
        store
            .upsert(
                &b,
                vec![point("same-id", 0, vec![1.0, 0.0, 0.0], json!({}))],
            )
            .await
            .expect("upsert b");

        let hits = store
            .search(&a, query(vec![1.0, 0.0, 0.0], vec![]))
            .await
            .expect("search");
        assert_eq!(hits.len(), 1, "tenant a sees only its own point");

        store
            .delete_document(&b, "same-id")
            .await
            .expect("delete b");
        assert_eq!(
            store
                .search(&a, query(vec![1.0, 0.0, 0.0], vec![]))
                .await
                .expect("a")
                .len(),
            1
        );
        assert!(
            store
                .search(&b, query(vec![1.0, 0.0, 0.0], vec![]))
                .await
                .expect("b")
                .is_empty()
        );
    }

    #[tokio::test]
    async fn metadata_filters_and_chunk_deletes_apply() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EdgeStore::open(dir.path(), "test-model", VectorSpace::Dense(2)).expect("open");
        let t = TenantId::generate();
        store
            .upsert(
                &t,
                vec![
                    point("d1", 0, vec![1.0, 0.0], json!({"lang": "en", "year": 2024})),
                    point("d1", 1, vec![0.9, 0.1], json!({"lang": "en", "year": 2024})),
                    point("d2", 0, vec![1.0, 0.0], json!({"lang": "de", "year": 2023})),
                ],
            )
            .await
            .expect("upsert");
        let en = store
            .search(
                &t,
                query(
                    vec![1.0, 0.0],
                    vec![("lang".into(), FilterValue::String("en".into()))],
                ),
            )
            .await
            .expect("search");
        assert_eq!(en.len(), 2);
        assert!(en.iter().all(|h| h.document_id == "d1"));
        let y = store
            .search(
                &t,
                query(
                    vec![1.0, 0.0],
                    vec![("year".into(), FilterValue::Integer(2023))],
                ),
            )
            .await
            .expect("search");
        assert_eq!(y.len(), 1);

        store
            .delete_revision(&t, "d1", "r1", 2)
            .await
            .expect("delete revision");
        let all = store
            .search(&t, query(vec![1.0, 0.0], vec![]))
            .await
            .expect("search");
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].document_id, "d2");
    }

    #[tokio::test]
    async fn a_clean_stop_is_marked_and_anything_else_asks_for_reconciliation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = TenantId::generate();
        {
            let store = EdgeStore::open(dir.path(), "m", VectorSpace::Dense(2)).expect("open");
            assert_eq!(
                store.reconcile_reason(),
                Some("a new shard"),
                "a new shard is checked against the database"
            );
            store
                .upsert(&t, vec![point("d1", 0, vec![0.0, 1.0], json!({}))])
                .await
                .expect("upsert");
            store.flush().await.expect("clean stop");
            assert!(
                store
                    .upsert(&t, vec![point("d2", 0, vec![0.0, 1.0], json!({}))])
                    .await
                    .is_err(),
                "a closed store takes no writes"
            );
        }
        {
            let store = EdgeStore::open(dir.path(), "m", VectorSpace::Dense(2)).expect("reopen");
            assert_eq!(store.reconcile_reason(), None);
            assert_eq!(hits(&store, &t).await, 1);
            store
                .upsert(&t, vec![point("d2", 0, vec![0.0, 1.0], json!({}))])
                .await
                .expect("upsert");
            // Dropped without a clean stop.
        }
        let store = EdgeStore::open(dir.path(), "m", VectorSpace::Dense(2)).expect("reopen");
        assert_eq!(
            store.reconcile_reason(),
            Some("the shard was not stopped cleanly")
        );
        assert_eq!(hits(&store, &t).await, 2, "the shard flushes as it drops");
        store
            .delete_points(vec![point_id(&t, "d2", "r1", 0)])
            .await
            .expect("delete");
        assert_eq!(hits(&store, &t).await, 1);
        assert_eq!(store.point_ids().await.expect("ids").len(), 1);
    }

    /// The shard's indexed payload fields that pass `filter`, sorted.
    fn indexed_fields(
        store: &EdgeStore,
        filter: impl Fn(&qdrant_edge::PayloadIndexInfo) -> bool,
    ) -> Vec<String> {
        let shard = store.shared.shard.read().expect("lock");
        let mut fields: Vec<String> = shard
            .info()
            .payload_schema
            .iter()
            .filter(|(_, info)| filter(info))
            .map(|(field, _)| field.to_string())
            .collect();
        fields.sort();
        fields
    }

    /// Replace `field`'s index with a plain keyword index, loaded into
    /// memory: the layout of older shards.
    fn in_memory_keyword_index(shard: &EdgeShard, field: &str) {
        delete_index(shard, field).expect("drop index");
        create_index(
            shard,
            field,
            PayloadFieldSchema::FieldType(PayloadSchemaType::Keyword),
        )
        .expect("keyword index");
    }

    #[tokio::test]
    async fn the_indexes_of_an_older_shard_are_rebuilt() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b) = (TenantId::generate(), TenantId::generate());
        let tenant_index = |store: &EdgeStore| {
            let shard = store.shared.shard.read().expect("lock");
            shard
                .info()
                .payload_schema
                .get(&path(keys::TENANT).expect("path"))
                .map(|i| i.data_type)
        };
        {
            let store = EdgeStore::open(dir.path(), "m", VectorSpace::Dense(2)).expect("open");
            assert_eq!(tenant_index(&store), Some(PayloadSchemaType::Uuid));
            for t in [&a, &b] {
                store
                    .upsert(t, vec![point("d", 0, vec![0.0, 1.0], json!({}))])
                    .await
                    .expect("upsert");
            }
            // The layout of shards written before: a keyword index, and
            // an index of the chunk number.
            {
                let shard = store.shared.shard.read().expect("lock");
                in_memory_keyword_index(&shard, keys::TENANT);
                create_index(
                    &shard,
                    keys::CHUNK,
                    PayloadFieldSchema::FieldType(PayloadSchemaType::Integer),
                )
                .expect("chunk index");
            }
            assert_eq!(tenant_index(&store), Some(PayloadSchemaType::Keyword));
            store.flush().await.expect("clean stop");
        }
        let indexed = |store: &EdgeStore| indexed_fields(store, |_| true);
        let store = EdgeStore::open(dir.path(), "m", VectorSpace::Dense(2)).expect("reopen");
        assert_eq!(tenant_index(&store), Some(PayloadSchemaType::Uuid));
        let today = [keys::COLLECTION, keys::DOCUMENT, keys::TENANT].map(str::to_owned);
        assert_eq!(indexed(&store), today);
        drop(store);
        // A shard with today's tenant index, and the chunk number's still.
        {
            let store = EdgeStore::open(dir.path(), "m", VectorSpace::Dense(2)).expect("reopen");
            create_index(
                &store.shared.shard.read().expect("lock"),
                keys::CHUNK,
                PayloadFieldSchema::FieldType(PayloadSchemaType::Integer),
            )
            .expect("chunk index");
            store.flush().await.expect("clean stop");
        }
        let store = EdgeStore::open(dir.path(), "m", VectorSpace::Dense(2)).expect("reopen");
        assert_eq!(indexed(&store), today);
        assert_eq!(
            hits(&store, &a).await,
            1,
            "each tenant sees its own point only"
        );
        assert_eq!(hits(&store, &b).await, 1);
        let on_disk_fields = |store: &EdgeStore| indexed_fields(store, on_disk);
        assert_eq!(on_disk_fields(&store), today);
        // A shard whose indexes were loaded into memory (today's types,
        // before they stayed on disk) gets them on disk.
        in_memory_keyword_index(&store.shared.shard.read().expect("lock"), keys::DOCUMENT);
        assert_eq!(
            on_disk_fields(&store),
            [keys::COLLECTION, keys::TENANT].map(str::to_owned)
        );
        store.flush().await.expect("clean stop");
        drop(store);
        let store = EdgeStore::open(dir.path(), "m", VectorSpace::Dense(2)).expect("reopen");
        assert_eq!(indexed(&store), today);
        assert_eq!(on_disk_fields(&store), today);
        assert_eq!(hits(&store, &a).await, 1);
        assert_eq!(hits(&store, &b).await, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn large_segments_are_indexed_in_the_background() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Index anything above 1 KiB of vectors.
        let store = EdgeStore::open_with(
            dir.path(),
            "m",
            VectorSpace::Dense(16),
            Tuning {
                indexing_threshold_kb: Some(1),
                ..Tuning::default()
            },
        )
        .expect("open");
        let t = TenantId::generate();
        // Pseudo-random directions (xorshift), distinct for every point.
        let vector = |i: u32| -> Vec<f32> {
            let mut x = u64::from(i).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            (0..16)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x % 2001) as f32 / 1000.0 - 1.0
                })
                .collect()
        };
        for batch in 0..4u32 {
            let points = (batch * 250..(batch + 1) * 250)
                .map(|i| point(&format!("d{i}"), 0, vector(i), json!({})))
                .collect();
            store.upsert(&t, points).await.expect("upsert");
        }
        settle(&store).await;
        assert!(
            store.indexed_vectors().await.expect("info") > 0,
            "no segment was indexed"
        );
        let found = store
            .search(&t, query(vector(420), vec![]))
            .await
            .expect("search");
        assert_eq!(found[0].document_id, "d420");
        assert_eq!(store.point_ids().await.expect("ids").len(), 1000);
    }

    /// Text of `n` pseudo-random words out of a vocabulary of 400.
    fn words(seed: u64, n: usize) -> String {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                format!("w{}", x % 400)
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_take_turns_and_all_land() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(
            EdgeStore::open(dir.path(), HashEmbedder::MODEL, VectorSpace::Sparse).expect("open"),
        );
        let t = TenantId::generate();
        // Far more writers than the one turn: upserts, and deletes of half
        // of what they wrote, all at once.
        let writes = (0..300).map(|i| {
            let (store, t) = (Arc::clone(&store), t.clone());
            tokio::spawn(async move {
                let (doc, text) = (format!("d{i}"), words(i, 12));
                let p = sparse_point(&doc, &text, HashEmbedder.embed_one(&text), json!({}));
                store.upsert(&t, vec![p]).await?;
                if i % 2 == 1 {
                    store.delete_revision(&t, &doc, "r1", 1).await?;
                }
                Ok::<_, VectorError>(())
            })
        });
        for write in futures::future::join_all(writes).await {
            write.expect("task").expect("every write lands");
        }
        let ids = store.point_ids().await.expect("ids");
        assert_eq!(ids.len(), 150);
        for i in (0..300).step_by(2) {
            assert!(
                ids.contains(&point_id(&t, &format!("d{i}"), "r1", 0)),
                "d{i}"
            );
        }
    }

    /// A store of the built-in embedder's sparse vectors that indexes
    /// anything above 1 KiB: the optimizers build immutable inverted
    /// indexes, beside the appendable segment's own.
    fn open_indexing_sparse(dir: &Path) -> EdgeStore {
        EdgeStore::open_with(
            dir,
            HashEmbedder::MODEL,
            VectorSpace::Sparse,
            Tuning {
                indexing_threshold_kb: Some(1),
                ..Tuning::default()
            },
        )
        .expect("open")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sparse_vectors_are_searched_exactly_and_only_in_the_tenant() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b) = (TenantId::generate(), TenantId::generate());
        let embedder = HashEmbedder;
        // Tenant a is past the size (5,000 points) below which a filtered
        // search scores the tenant's points one by one instead of reading
        // posting lists; its filtered search and tenant b are below it.
        let texts: Vec<String> = (0..6200).map(|i| words(i, 12)).collect();
        let vectors: Vec<_> = texts.iter().map(|t| embedder.embed_one(t)).collect();
        let chunk = |i: usize| {
            sparse_point(
                &format!("d{i}"),
                &texts[i],
                vectors[i].clone(),
                json!({"half": i % 2}),
            )
        };
        {
            let store = open_indexing_sparse(dir.path());
            for batch in 0..6 {
                let points = (batch * 1000..(batch + 1) * 1000).map(chunk).collect();
                store.upsert(&a, points).await.expect("upsert a");
            }
            let points = (6000..6200).map(chunk).collect();
            store.upsert(&b, points).await.expect("upsert b");
            settle(&store).await;
            store.flush().await.expect("clean stop");
        }
        let store =
            EdgeStore::open(dir.path(), HashEmbedder::MODEL, VectorSpace::Sparse).expect("reopen");
        assert_eq!(store.point_ids().await.expect("ids").len(), 6200);
        for q in 0..20u64 {
            let text = words(10_000 + q, 3);
            let vector = embedder.embed_one(&text);
            for (tenant, range, filter) in [
                (&a, 0..6000, vec![]),
                (&b, 6000..6200, vec![]),
                (
                    &a,
                    0..6000,
                    vec![("half".to_owned(), FilterValue::Integer(1))],
                ),
            ] {
                let mut truth: Vec<f32> = range
                    .filter(|i| filter.is_empty() || i % 2 == 1)
                    .map(|i| vectors[i].dot(&vector))
                    .filter(|score| *score > 0.0)
                    .collect();
                truth.sort_by(|x, y| y.total_cmp(x));
                truth.truncate(10);
                let hits = store
                    .search(tenant, sparse_query(vector.clone(), filter.clone()))
                    .await
                    .expect("search");
                let scores: Vec<f32> = hits.iter().map(|h| h.score).collect();
                assert_eq!(
                    scores.len(),
                    truth.len(),
                    "query {text:?}: {scores:?} vs {truth:?}"
                );
                for (got, want) in scores.iter().zip(&truth) {
                    assert!(
                        (got - want).abs() < 1e-4,
                        "query {text:?}: {scores:?} vs {truth:?}"
                    );
                }
                for hit in &hits {
                    let i: usize = hit.document_id[1..].parse().expect("our id");
                    assert_eq!(hit.text, texts[i]);
                    if tenant == &b {
                        assert!(i >= 6000, "b sees only its own points");
                    } else {
                        assert!(i < 6000, "a sees only its own points");
                    }
                    if !filter.is_empty() {
                        assert_eq!(i % 2, 1, "the filter holds");
                    }
                }
            }
        }
    }

    /// The `VmFlags` of every mapping of a segment's inverted index under
    /// `dir`, from `/proc/self/smaps` (where `VmFlags` ends each mapping).
    #[cfg(target_os = "linux")]
    fn inverted_index_flags(dir: &Path) -> Vec<String> {
        let dir = std::fs::canonicalize(dir).expect("canonical dir");
        let smaps = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
        let mut ours = false;
        let mut flags = Vec::new();
        for line in smaps.lines() {
            if let Some(rest) = line.strip_prefix("VmFlags:") {
                if ours {
                    flags.push(rest.trim().to_owned());
                }
                ours = false;
            } else if crate::vectors::readahead::inverted_index_mapping(line, &dir).is_some() {
                ours = true;
            }
        }
        flags
    }

    #[cfg(target_os = "linux")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn inverted_indexes_are_read_without_read_ahead() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = TenantId::generate();
        let embedder = HashEmbedder;
        let random_reads = |flags: &[String]| {
            !flags.is_empty()
                && flags
                    .iter()
                    .all(|f| f.split_whitespace().any(|flag| flag == "rr"))
        };
        {
            let store = open_indexing_sparse(dir.path());
            for batch in 0..3u64 {
                let points = (batch * 500..(batch + 1) * 500)
                    .map(|i| {
                        let text = words(i, 12);
                        let vector = embedder.embed_one(&text);
                        sparse_point(&format!("d{i}"), &text, vector, json!({}))
                    })
                    .collect();
                store.upsert(&t, points).await.expect("upsert");
            }
            settle(&store).await;
            // The indexes the optimizers built and mapped.
            let flags = inverted_index_flags(dir.path());
            assert!(random_reads(&flags), "after optimizing: {flags:?}");
            store.flush().await.expect("clean stop");
        }
        // And those a reopened shard maps as it loads its segments.
        let store =
            EdgeStore::open(dir.path(), HashEmbedder::MODEL, VectorSpace::Sparse).expect("reopen");
        let flags = inverted_index_flags(dir.path());
        assert!(random_reads(&flags), "after reopening: {flags:?}");
        let hits = store
            .search(&t, sparse_query(embedder.embed_one(&words(7, 12)), vec![]))
            .await
            .expect("search");
        assert_eq!(hits[0].document_id, "d7");
    }

    #[tokio::test]
    async fn a_text_of_stop_words_alone_is_stored_and_matches_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store =
            EdgeStore::open(dir.path(), HashEmbedder::MODEL, VectorSpace::Sparse).expect("open");
        let t = TenantId::generate();
        let chunk = |doc: &str, text: &str| {
            sparse_point(doc, text, HashEmbedder.embed_one(text), json!({}))
        };
        let (empty, words) = (
            chunk("d1", "The. Of it!"),
            chunk("d2", "Lava builds islands."),
        );
        store.upsert(&t, vec![empty, words]).await.expect("upsert");
        assert_eq!(store.point_ids().await.expect("ids").len(), 2);
        let search = |text: &str| sparse_query(HashEmbedder.embed_one(text), vec![]);
        assert!(
            store
                .search(&t, search("the of"))
                .await
                .expect("search")
                .is_empty()
        );
        let found = store.search(&t, search("islands")).await.expect("search");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].document_id, "d2");
    }

    #[tokio::test]
    async fn reopening_prunes_the_write_ahead_log_and_later_writes_still_land() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = TenantId::generate();
        let tuning = Tuning {
            wal_segment_bytes: 64 * 1024,
            ..Tuning::default()
        };
        let wal = dir.path().join("m").join(WAL_DIR);
        let closed_segments = || {
            std::fs::read_dir(&wal)
                .expect("wal dir")
                .filter(|e| {
                    e.as_ref()
                        .expect("entry")
                        .file_name()
                        .to_string_lossy()
                        .starts_with("closed-")
                })
                .count()
        };
        let rewrite = |text: &str| -> Vec<ChunkPoint> {
            (0..20)
                .map(|i| ChunkPoint {
                    text: text.to_owned(),
                    ..point(&format!("d{i}"), 0, vec![0.0, 1.0], json!({}))
                })
                .collect()
        };
        {
            let store =
                EdgeStore::open_with(dir.path(), "m", VectorSpace::Dense(2), tuning).expect("open");
            for round in 0..60 {
                let text = format!("round {round} {}", "words ".repeat(40));
                store.upsert(&t, rewrite(&text)).await.expect("upsert");
            }
            store.flush().await.expect("clean stop");
        }
        assert!(closed_segments() >= 3, "{} closed", closed_segments());
        for reopen in 0..2 {
            let store = EdgeStore::open_with(dir.path(), "m", VectorSpace::Dense(2), tuning)
                .expect("reopen");
            assert_eq!(closed_segments(), 1);
            // The points carry the numbers of the writes before: a rewrite
            // numbered from zero again would be ignored.
            let text = format!("reopened {reopen}");
            store.upsert(&t, rewrite(&text)).await.expect("upsert");
            let hits = store
                .search(&t, query(vec![0.0, 1.0], vec![]))
                .await
                .expect("search");
            assert_eq!(hits.len(), 10);
            assert!(hits.iter().all(|h| h.text == text), "{hits:?}");
            store.flush().await.expect("clean stop");
        }
    }

    #[tokio::test]
    async fn data_survives_reopening_the_shard() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = TenantId::generate();
        {
            let store = EdgeStore::open(dir.path(), "m", VectorSpace::Dense(2)).expect("open");
            store
                .upsert(&t, vec![point("d1", 0, vec![0.0, 1.0], json!({}))])
                .await
                .expect("upsert");
            store.flush().await.expect("clean stop");
        }
        let store = EdgeStore::open(dir.path(), "m", VectorSpace::Dense(2)).expect("reopen");
        let hits = store
            .search(&t, query(vec![0.0, 1.0], vec![]))
            .await
            .expect("search");
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].document_id, "d1");
    }
}
