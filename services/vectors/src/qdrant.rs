//! A Qdrant server over gRPC (qdrant-client), when `QDRANT_URL` is set.
//!
//! One shared collection per embedding model (`analyzer_<model>`), with the
//! tenant id as a keyword payload index marked `is_tenant`, so Qdrant lays
//! out each tenant's points together. The tenant filter is added here on
//! every search and delete, exactly as in the embedded store; the payload
//! layout is the same. The collection and its indexes are created on first
//! start if missing, tolerating another task creating them at the same time;
//! when Qdrant is down at start, they are created by the first call that
//! reaches it.

use async_trait::async_trait;
use qdrant_client::Qdrant;
use qdrant_client::qdrant::{
    Condition, CreateCollectionBuilder, CreateFieldIndexCollectionBuilder, DeletePointsBuilder,
    Distance, FieldType, Filter, KeywordIndexParamsBuilder, PointStruct, SearchParamsBuilder,
    SearchPointsBuilder, SetPayloadPointsBuilder, SparseVectorParamsBuilder,
    SparseVectorsConfigBuilder, UpsertPointsBuilder, Vector, VectorParamsBuilder, Vectors,
};
use serde_json::Value;

use super::{
    ChunkHit, ChunkPoint, FilterValue, SPARSE_MIN_SCORE, SPARSE_VECTOR, SearchQuery, VectorError,
    VectorStore, hit_from_payload, keys, metadata_payload, payload_of, point_id,
    revision_point_ids,
};
use analyzer_domain::embed::{Embedding, VectorSpace};
use analyzer_domain::tenants::TenantId;

/// Qdrant server settings.
#[derive(Debug, Clone)]
pub struct QdrantConfig {
    /// gRPC URL, e.g. `http://qdrant.internal:6334`.
    pub url: String,
    /// `QDRANT_API_KEY`.
    pub api_key: Option<secrecy::SecretString>,
    /// Per-request timeout of the client.
    pub timeout: std::time::Duration,
}

/// The Qdrant server store.
pub struct QdrantStore {
    client: Qdrant,
    collection: String,
    space: VectorSpace,
    /// Set once the collection and its indexes are known to exist.
    ensured: tokio::sync::OnceCell<()>,
    /// The search's `hnsw_ef`; the server's default when `None`.
    search_ef: Option<usize>,
}

impl std::fmt::Debug for QdrantStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QdrantStore")
            .field("collection", &self.collection)
            .finish_non_exhaustive()
    }
}

fn unavailable(e: impl std::fmt::Display) -> VectorError {
    VectorError::Unavailable(e.to_string())
}

impl QdrantStore {
    /// A client for the server, for vectors of `space`; does not contact
    /// it (see [`Self::ensure_collection`]).
    pub fn new(
        config: &QdrantConfig,
        model: &str,
        space: VectorSpace,
    ) -> Result<Self, VectorError> {
        use secrecy::ExposeSecret as _;
        let mut builder = Qdrant::from_url(&config.url)
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .skip_compatibility_check();
        if let Some(key) = &config.api_key {
            builder = builder.api_key(key.expose_secret().to_owned());
        }
        let client = builder.build().map_err(unavailable)?;
        let slug: String = model
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        Ok(Self {
            client,
            collection: format!("analyzer_{slug}"),
            space,
            ensured: tokio::sync::OnceCell::new(),
            search_ef: None,
        })
    }

    /// Search the HNSW graph `ef` wide (`None`: the server's default).
    pub fn with_search_ef(mut self, ef: Option<usize>) -> Self {
        self.search_ef = ef;
        self
    }

    /// The client for a call made in the current span: the W3C trace
    /// context rides along as gRPC metadata (`traceparent`).
    fn traced(&self) -> std::borrow::Cow<'_, Qdrant> {
        let headers = analyzer_telemetry::propagation::current_headers();
        if headers.is_empty() {
            return std::borrow::Cow::Borrowed(&self.client);
        }
        let mut client = self.client.clone();
        for (key, value) in headers {
            client = client.with_header(key, value);
        }
        std::borrow::Cow::Owned(client)
    }

    /// Create the collection and its payload indexes if missing, once per
    /// process: every call runs this first, so a Qdrant that was down at
    /// start gets them from the first call that reaches it.
    pub async fn ensure_collection(&self) -> Result<(), VectorError> {
        self.ensured
            .get_or_try_init(|| self.create_collection(self.space))
            .await
            .map(|_| ())
    }

    /// Safe when several tasks start at once: "already exists" counts as
    /// success, and so does creating an index that exists.
    async fn create_collection(&self, space: VectorSpace) -> Result<(), VectorError> {
        let exists = self
            .client
            .collection_exists(&self.collection)
            .await
            .map_err(unavailable)?;
        if !exists {
            let create = CreateCollectionBuilder::new(&self.collection);
            let create = match space {
                VectorSpace::Dense(dimensions) => create.vectors_config(
                    VectorParamsBuilder::new(dimensions as u64, Distance::Cosine).on_disk(true),
                ),
                // No dense vector at all; the named sparse one, searched
                // through the server's inverted index.
                VectorSpace::Sparse => {
                    let mut sparse = SparseVectorsConfigBuilder::default();
                    sparse.add_named_vector_params(
                        SPARSE_VECTOR,
                        SparseVectorParamsBuilder::default(),
                    );
                    create.sparse_vectors_config(sparse)
                }
            };
            let created = self.client.create_collection(create).await;
            if let Err(e) = created
                && !e.to_string().contains("already exists")
            {
                return Err(unavailable(e));
            }
        }
        for (field, kind, is_tenant) in [
            (keys::TENANT, FieldType::Keyword, true),
            (keys::DOCUMENT, FieldType::Keyword, false),
            (keys::COLLECTION, FieldType::Keyword, false),
        ] {
            let mut request =
                CreateFieldIndexCollectionBuilder::new(&self.collection, field, kind).wait(true);
            if kind == FieldType::Keyword {
                request = request
                    .field_index_params(KeywordIndexParamsBuilder::default().is_tenant(is_tenant));
            }
            // Creating an index that exists is accepted by Qdrant.
            self.client
                .create_field_index(request)
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    fn filter(tenant: &TenantId, mut more: Vec<Condition>) -> Filter {
        more.insert(
            0,
            Condition::matches(keys::TENANT, tenant.as_str().to_owned()),
        );
        Filter::must(more)
    }
}

#[async_trait]
impl VectorStore for QdrantStore {
    async fn upsert(&self, tenant: &TenantId, points: Vec<ChunkPoint>) -> Result<(), VectorError> {
        if points.is_empty() {
            return Ok(());
        }
        self.ensure_collection().await?;
        let points: Vec<PointStruct> = points
            .iter()
            .map(|p| {
                let vectors: Vectors = match &p.vector {
                    Embedding::Dense(values) => values.clone().into(),
                    Embedding::Sparse(sparse) => std::collections::HashMap::from([(
                        SPARSE_VECTOR.to_owned(),
                        Vector::new_sparse(sparse.indices.clone(), sparse.values.clone()),
                    )])
                    .into(),
                };
                PointStruct::new(
                    point_id(tenant, &p.document_id, &p.revision, p.chunk).to_string(),
                    vectors,
                    qdrant_client::Payload::from(payload_of(tenant, p)),
                )
            })
            .collect();
        self.traced()
            .upsert_points(UpsertPointsBuilder::new(&self.collection, points).wait(true))
            .await
            .map_err(unavailable)?;
        Ok(())
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
        self.ensure_collection().await?;
        // By id, under the tenant condition as every delete: the ids are
        // derived from the tenant, and the filter says so on the wire too.
        let ids = revision_point_ids(tenant, document_id, revision, count).map(|id| id.to_string());
        let filter = Self::filter(tenant, vec![Condition::has_id(ids)]);
        self.traced()
            .delete_points(
                DeletePointsBuilder::new(&self.collection)
                    .points(filter)
                    .wait(true),
            )
            .await
            .map_err(unavailable)?;
        Ok(())
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
        self.ensure_collection().await?;
        let ids = revision_point_ids(tenant, document_id, revision, count).map(|id| id.to_string());
        let filter = Self::filter(tenant, vec![Condition::has_id(ids)]);
        self.traced()
            .set_payload(
                SetPayloadPointsBuilder::new(
                    &self.collection,
                    qdrant_client::Payload::from(metadata_payload(metadata)),
                )
                .points_selector(filter)
                .wait(true),
            )
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn delete_document(
        &self,
        tenant: &TenantId,
        document_id: &str,
    ) -> Result<(), VectorError> {
        self.ensure_collection().await?;
        let filter = Self::filter(
            tenant,
            vec![Condition::matches(keys::DOCUMENT, document_id.to_owned())],
        );
        self.traced()
            .delete_points(
                DeletePointsBuilder::new(&self.collection)
                    .points(filter)
                    .wait(true),
            )
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn search(
        &self,
        tenant: &TenantId,
        query: SearchQuery,
    ) -> Result<Vec<ChunkHit>, VectorError> {
        self.ensure_collection().await?;
        let mut conditions = vec![Condition::matches(
            keys::COLLECTION,
            query.collection.clone(),
        )];
        for (field, value) in &query.filter {
            let key = format!("{}.{field}", keys::METADATA);
            conditions.push(match value {
                FilterValue::String(s) => Condition::matches(key, s.clone()),
                FilterValue::Integer(i) => Condition::matches(key, *i),
                FilterValue::Bool(b) => Condition::matches(key, *b),
            });
        }
        let top_k = query.top_k as u64;
        let mut search = match query.vector {
            Embedding::Dense(values) => SearchPointsBuilder::new(&self.collection, values, top_k),
            // As in the embedded store: a hit shares a word with the query.
            Embedding::Sparse(sparse) => {
                SearchPointsBuilder::new(&self.collection, sparse.values, top_k)
                    .sparse_indices(sparse.indices)
                    .vector_name(SPARSE_VECTOR)
                    .score_threshold(SPARSE_MIN_SCORE)
            }
        }
        .filter(Self::filter(tenant, conditions))
        .with_payload(true);
        if let Some(ef) = self.search_ef {
            search = search.params(SearchParamsBuilder::default().hnsw_ef(ef as u64));
        }
        let response = self
            .traced()
            .search_points(search)
            .await
            .map_err(unavailable)?;
        Ok(response
            .result
            .into_iter()
            .filter_map(|point| {
                let payload = match Value::from(qdrant_client::Payload::from(point.payload)) {
                    Value::Object(map) => map,
                    _ => return None,
                };
                // Defence in depth: the filter already holds this.
                if payload.get(keys::TENANT).and_then(Value::as_str) != Some(tenant.as_str()) {
                    return None;
                }
                hit_from_payload(&payload, point.score)
            })
            .collect())
    }

    async fn health(&self) -> Result<(), VectorError> {
        self.client.health_check().await.map_err(unavailable)?;
        Ok(())
    }

    async fn flush(&self) -> Result<(), VectorError> {
        Ok(()) // every write waited for the server's acknowledgement
    }

    fn backend(&self) -> String {
        "qdrant".to_owned()
    }
}
