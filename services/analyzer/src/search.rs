//! Search: validated queries over one tenant's collection.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};
use tracing::Instrument as _;
use utoipa::ToSchema;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{Schema, Type};

use crate::cache::generations::{Generations, Published, tagged, untagged};
use crate::cache::{Cache, CacheStats};
use crate::documents::{
    DEFAULT_COLLECTION, Metadata, collection_name, filter_conditions, open_object_of,
};
use crate::error::{ServiceError, Violations};
use crate::usage::UsageRecorder;
use analyzer_domain::embed::{Embedder, Embedding, VectorSpace};
use analyzer_domain::tenants::TenantId;
use analyzer_store::{Db, SettledMark};
use analyzer_vectors::{ChunkHit, FilterValue, SearchQuery, VectorStore};

/// Default number of hits.
pub const DEFAULT_TOP_K: usize = 5;
/// Longest accepted query or question, in characters.
pub const MAX_QUERY_CHARS: usize = 4096;

/// A metadata filter: an open object of the values fields must equal.
pub struct MetadataFilter;

impl utoipa::PartialSchema for MetadataFilter {
    fn schema() -> RefOr<Schema> {
        open_object_of(
            vec![Type::String, Type::Integer, Type::Boolean],
            "Metadata fields that must equal these values: strings, integers or booleans.",
        )
    }
}

impl ToSchema for MetadataFilter {}

/// `POST /v1/search` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    /// What to look for.
    pub query: String,
    /// How many hits (1 to the configured maximum, default 5).
    pub top_k: Option<i64>,
    /// Collection; `default` if omitted.
    pub collection: Option<String>,
    /// Metadata fields that must equal these values.
    #[schema(value_type = Option<MetadataFilter>)]
    pub filter: Option<Map<String, Value>>,
}

/// One hit.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Hit {
    /// The document id.
    pub document_id: String,
    /// The chunk's position in the document.
    pub chunk: u32,
    /// Cosine similarity, higher is closer.
    pub score: f32,
    /// The chunk's text.
    pub text: String,
    /// The document's metadata.
    #[schema(value_type = Metadata)]
    pub metadata: Map<String, Value>,
    /// The page of the uploaded file the chunk is on, for files with pages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page: Option<u32>,
}

impl From<ChunkHit> for Hit {
    fn from(h: ChunkHit) -> Self {
        Self {
            document_id: h.document_id,
            chunk: h.chunk,
            score: h.score,
            text: h.text,
            metadata: h.metadata,
            page: h.page,
        }
    }
}

/// `POST /v1/search` response.
#[derive(Debug, Serialize, ToSchema)]
pub struct SearchResponse {
    /// Best first.
    pub hits: Vec<Hit>,
    /// Whether the result came from the query cache.
    pub cached: bool,
}

/// A validated retrieval: shared by search and analyze.
#[derive(Debug, Clone)]
pub struct Retrieval {
    /// The query text.
    pub query: String,
    /// Hits wanted.
    pub top_k: usize,
    /// The collection.
    pub collection: String,
    /// Exact-match metadata filter.
    pub filter: Vec<(String, FilterValue)>,
}

impl Retrieval {
    /// Validate the parts of a search or analyze request.
    pub fn parse(
        field: &str,
        query: String,
        top_k: Option<i64>,
        collection: Option<String>,
        filter: Option<Map<String, Value>>,
        max_top_k: usize,
    ) -> Result<Self, ServiceError> {
        let mut found = Violations::default();
        if query.trim().is_empty() {
            found.add(field, "must not be empty");
        } else if query.chars().count() > MAX_QUERY_CHARS {
            found.add(
                field,
                format!("must be at most {MAX_QUERY_CHARS} characters"),
            );
        }
        let top_k = match top_k {
            None => DEFAULT_TOP_K.min(max_top_k),
            Some(k) if k >= 1 && usize::try_from(k).is_ok_and(|k| k <= max_top_k) => k as usize,
            Some(k) => {
                found.add(
                    "top_k",
                    format!("must be between 1 and {max_top_k}, got {k}"),
                );
                0
            }
        };
        let collection = found
            .check("collection", collection_name(collection))
            .unwrap_or_default();
        let conditions = filter_conditions(filter.unwrap_or_default(), &mut found);
        found.finish()?;
        Ok(Self {
            query,
            top_k,
            collection,
            filter: conditions,
        })
    }

    /// The cache key of this retrieval: everything that changes the
    /// result is in it (model, normalized query, top_k, filter); the data
    /// generation is in the entry (see `cache::generations`).
    fn cache_key(&self, model: &str) -> String {
        let mut filter: Vec<String> = self
            .filter
            .iter()
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect();
        filter.sort();
        let normalized = self.query.split_whitespace().collect::<Vec<_>>().join(" ");
        let digest = sha256_hex(&[
            model,
            &normalized,
            &self.top_k.to_string(),
            &filter.join("\u{1f}"),
        ]);
        format!("{}{digest}", collection_key_prefix(&self.collection))
    }
}

/// The start of every cache key of a collection's searches.
fn collection_key_prefix(collection: &str) -> String {
    format!("search:{collection}:")
}

/// SHA-256 of `parts`, each followed by a separator, as lower-case hex.
fn sha256_hex(parts: &[&str]) -> String {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update(part.as_bytes());
        hash.update([0x1e]);
    }
    hex::encode(hash.finalize())
}

/// What a retrieval needs. Cheap to build per request.
pub struct Retriever<'a> {
    /// The relational store (collection check, data generation).
    pub db: &'a Db,
    /// The generations published in Redis, when the cache is Redis: a
    /// cached search then needs no database read.
    pub generations: Option<&'a Arc<Generations>>,
    /// The embedder.
    pub embedder: &'a dyn Embedder,
    /// The vector store.
    pub vectors: &'a dyn VectorStore,
    /// The query cache.
    pub cache: Arc<dyn Cache>,
    /// Cache outcome counters.
    pub stats: Arc<CacheStats>,
    /// Lifetime of cached results.
    pub ttl: Duration,
    /// Where embedding tokens are counted.
    pub usage: &'a UsageRecorder,
    /// The tenant's query cache budget, in bytes.
    pub cache_budget: u64,
}

/// The hits of a retrieval, and whether they came from the cache.
#[derive(Debug, Clone)]
pub struct Retrieved {
    /// Best first.
    pub hits: Vec<ChunkHit>,
    /// Served from the query cache.
    pub cached: bool,
}

impl Retriever<'_> {
    /// Remove a deleted collection's cached searches. They are unreachable
    /// already (the tenant's data generation moved on); this frees their
    /// room now. A cache that cannot be reached keeps them until they expire.
    pub async fn forget_collection(&self, tenant: &TenantId, collection: &str) {
        if let Err(e) = self
            .cache
            .forget(tenant, &collection_key_prefix(collection))
            .await
        {
            tracing::warn!(error = %e, "could not remove a deleted collection's cached searches");
        }
    }

    /// The query's embedding. A remote embedder's (dense) vectors are
    /// cached per tenant (they cost a round trip and tokens); the built-in
    /// one is cheaper to run than to fetch.
    async fn query_vector(
        &self,
        tenant: &TenantId,
        query: &str,
    ) -> Result<Embedding, ServiceError> {
        let cached_dimensions = match self.embedder.space() {
            VectorSpace::Dense(dimensions) if self.embedder.is_remote() => Some(dimensions),
            _ => None,
        };
        let key = if let Some(dimensions) = cached_dimensions {
            let key = format!(
                "embedding:{}:{}",
                self.embedder.model(),
                sha256_hex(&[query.trim()])
            );
            let lookup = self
                .cache
                .get(tenant, &key)
                .instrument(analyzer_telemetry::op_span!(
                    "cache.get",
                    entry = "embedding"
                ))
                .await;
            self.stats.record(&lookup);
            if let Ok(Some(bytes)) = &lookup
                && bytes.len() == 4 * dimensions
            {
                return Ok(Embedding::Dense(
                    bytes
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect(),
                ));
            }
            Some(key)
        } else {
            None
        };
        let mut embedded = self
            .embedder
            .embed(&[query.to_owned()])
            .instrument(analyzer_telemetry::op_span!(
                "embed",
                model = self.embedder.model(),
                inputs = 1
            ))
            .await?;
        self.usage.add_embedding(
            tenant,
            self.embedder.model(),
            embedded.tokens,
            self.embedder.cost_micro_usd(embedded.tokens),
        );
        let vector = embedded.vectors.pop().ok_or_else(|| {
            analyzer_domain::embed::ProviderError::BadGateway("embedder returned no vector".into())
        })?;
        if let (Some(key), Embedding::Dense(values)) = (key, &vector) {
            let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            if self
                .cache
                .put(tenant, &key, bytes.into(), self.ttl, self.cache_budget)
                .instrument(analyzer_telemetry::op_span!(
                    "cache.put",
                    entry = "embedding"
                ))
                .await
                .is_err()
            {
                self.stats.bypassed.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(vector)
    }

    /// The hits whose document the database has, at the revision they
    /// were written for: vectors are written before their rows commit and
    /// removed after a replacement or delete commits, so the store may hold
    /// chunks of an ingest in flight, of one that failed or whose task
    /// died, or of a superseded revision until they are removed. None of
    /// those is shown. (Points written before the revision was stored with
    /// them are checked against the document alone.) The check is a
    /// database read, skipped where the store knows the tenant had nothing
    /// unsettled during the search (`store::cleanups`).
    async fn committed_only(
        &self,
        tenant: &TenantId,
        mut hits: Vec<ChunkHit>,
        before: SettledMark,
    ) -> Result<Vec<ChunkHit>, ServiceError> {
        if self.db.stayed_settled(tenant, before) {
            for hit in &mut hits {
                hit.revision = None;
            }
            return Ok(hits);
        }
        let mut ids: Vec<&str> = hits.iter().map(|h| h.document_id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        let current = self.db.current_revisions(tenant, &ids).await?;
        hits.retain(|h| match (current.get(&h.document_id), &h.revision) {
            (Some(now), Some(written)) => now == written,
            (Some(_), None) => true,
            (None, _) => false,
        });
        for hit in &mut hits {
            hit.revision = None;
        }
        Ok(hits)
    }

    /// The hits of a cached entry, if it was computed at `generation`.
    fn cached_hits(entry: &Bytes, generation: i64) -> Option<Vec<ChunkHit>> {
        let (at, result) = untagged(entry)?;
        if at != generation {
            return None;
        }
        serde_json::from_slice(&result)
            .inspect_err(|e| tracing::warn!(error = %e, "unreadable cache entry; recomputing"))
            .ok()
    }

    /// The cached entry under `key`, and with Redis the generation
    /// published for the tenant, in one round trip. A cache that fails is
    /// counted and bypassed.
    async fn lookup(&self, tenant: &TenantId, key: &str) -> (Published, Option<Bytes>) {
        let span = analyzer_telemetry::op_span!("cache.get", entry = "search");
        let found = match self.generations {
            Some(generations) => generations.lookup(tenant, key).instrument(span).await,
            None => self
                .cache
                .get(tenant, key)
                .instrument(span)
                .await
                .map(|entry| (Published::Unknown, entry)),
        };
        found.unwrap_or_else(|e| {
            self.stats.bypassed.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(error = %e, "cache bypassed");
            (Published::Unknown, None)
        })
    }

    /// Run `retrieval` for `tenant`. An unknown collection is a 404; the
    /// default collection always exists (it may be empty). A cache failure
    /// is counted and the search runs without it.
    ///
    /// With Redis, an entry whose generation is the published one is
    /// answered at once (why that is never stale: `cache::generations`);
    /// otherwise the database says the generation, and publishes it when
    /// nothing is published.
    #[tracing::instrument(name = "retrieve", skip_all, fields(tenant_id = %tenant, top_k = retrieval.top_k))]
    pub async fn retrieve(
        &self,
        tenant: &TenantId,
        retrieval: &Retrieval,
    ) -> Result<Retrieved, ServiceError> {
        let key = retrieval.cache_key(self.embedder.model());
        let (published, entry) = self.lookup(tenant, &key).await;
        if let (Published::At(generation), Some(found)) = (published, &entry)
            && let Some(hits) = Self::cached_hits(found, generation)
        {
            self.stats.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(Retrieved { hits, cached: true });
        }
        let context = match (self.generations, published) {
            (Some(generations), Published::Unknown) => {
                generations
                    .settle(self.db, tenant, &retrieval.collection)
                    .await?
            }
            _ => {
                self.db
                    .search_context(tenant, &retrieval.collection)
                    .await?
            }
        };
        if retrieval.collection != DEFAULT_COLLECTION && !context.collection_exists {
            return Err(ServiceError::NotFound(format!(
                "collection `{}` not found",
                retrieval.collection
            )));
        }
        if let Some(found) = &entry
            && let Some(hits) = Self::cached_hits(found, context.generation)
        {
            self.stats.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(Retrieved { hits, cached: true });
        }
        self.stats.misses.fetch_add(1, Ordering::Relaxed);

        let vector = self.query_vector(tenant, &retrieval.query).await?;
        let mark = self.db.settled_mark(tenant, &context);
        let hits = self
            .vectors
            .search(
                tenant,
                SearchQuery {
                    collection: retrieval.collection.clone(),
                    vector,
                    top_k: retrieval.top_k,
                    filter: retrieval.filter.clone(),
                },
            )
            .await?;
        let hits = self.committed_only(tenant, hits, mark).await?;

        // Stored before answering (bounded by the cache's short timeout), so
        // a result is cached once its response has been sent.
        if let Ok(bytes) = serde_json::to_vec(&hits)
            && let Err(e) = self
                .cache
                .put(
                    tenant,
                    &key,
                    tagged(context.generation, &bytes),
                    self.ttl,
                    self.cache_budget,
                )
                .instrument(analyzer_telemetry::op_span!("cache.put", entry = "search"))
                .await
        {
            self.stats.bypassed.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(error = %e, "cache store skipped");
        }
        Ok(Retrieved {
            hits,
            cached: false,
        })
    }
}
