//! The embedded vector store: the Qdrant engine in-process (`qdrant-edge`),
//! persisted under the data dir, one shard per embedding model.
//!
//! The shard's calls are blocking, so they run on the blocking pool. Reads
//! share a lock; a write holds it alone and flushes before returning, so an
//! acknowledged ingest survives a crash (Edge does not replay its WAL on
//! load, and its `flush` must not race an update).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use qdrant_edge::{
    Condition, DEFAULT_VECTOR_NAME, Distance, EdgeConfigBuilder, EdgeShard,
    EdgeVectorParamsBuilder, FieldCondition, Filter, JsonPath, KeywordIndexParams, Match,
    NamedQuery, PayloadFieldSchema, PayloadSchemaParams, PayloadSchemaType, PointId,
    PointInsertOperations, PointOperations, PointStruct, QueryEnum, SearchRequest, UpdateOperation,
    ValueVariants, WithPayloadInterface,
};
use serde_json::Value;

use super::{
    ChunkHit, ChunkPoint, FilterValue, SearchQuery, VectorError, VectorStore, hit_from_payload,
    keys, payload_of, point_id, revision_point_ids,
};
use crate::tenants::TenantId;

/// Qdrant Edge, in-process.
#[derive(Clone)]
pub struct EdgeStore {
    shard: Arc<RwLock<EdgeShard>>,
    path: PathBuf,
}

impl std::fmt::Debug for EdgeStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeStore")
            .field("path", &self.path)
            .finish()
    }
}

impl EdgeStore {
    /// Open (or create) the shard for `model` under `dir`.
    pub fn open(dir: &Path, model: &str, dimensions: usize) -> Result<Self, VectorError> {
        let path = dir.join(slug(model));
        std::fs::create_dir_all(&path)
            .map_err(|e| VectorError::Internal(format!("create {}: {e}", path.display())))?;
        let config = EdgeConfigBuilder::new()
            .on_disk_payload(true)
            .vector(
                DEFAULT_VECTOR_NAME,
                EdgeVectorParamsBuilder::new(dimensions, Distance::Cosine)
                    .on_disk(true)
                    .build(),
            )
            .build();
        let existing = path.join("edge_config.json").exists();
        let shard = if existing {
            EdgeShard::load(&path, Some(config))
        } else {
            EdgeShard::new(&path, config)
        }
        .map_err(|e| VectorError::Internal(format!("open shard {}: {e}", path.display())))?;
        if !existing {
            create_payload_indexes(&shard)?;
            shard.flush();
        }
        Ok(Self {
            shard: Arc::new(RwLock::new(shard)),
            path,
        })
    }

    async fn read<T, F>(&self, f: F) -> Result<T, VectorError>
    where
        T: Send + 'static,
        F: FnOnce(&EdgeShard) -> Result<T, VectorError> + Send + 'static,
    {
        // Reads (searches) scan vectors for milliseconds: they run in the
        // tier's lane, fair between tenants (see `lanes`).
        let shard = Arc::clone(&self.shard);
        crate::lanes::run(move || {
            let guard = shard
                .read()
                .map_err(|_| VectorError::Internal("shard lock poisoned".into()))?;
            f(&guard)
        })
        .await
        .map_err(|e| VectorError::Internal(e.to_string()))?
    }

    async fn write(&self, operations: Vec<UpdateOperation>) -> Result<(), VectorError> {
        let shard = Arc::clone(&self.shard);
        tokio::task::spawn_blocking(move || {
            let guard = shard
                .write()
                .map_err(|_| VectorError::Internal("shard lock poisoned".into()))?;
            for op in operations {
                guard.update(op).map_err(internal)?;
            }
            guard.flush();
            Ok(())
        })
        .await
        .map_err(|e| VectorError::Internal(format!("blocking task: {e}")))?
    }
}

fn create_payload_indexes(shard: &EdgeShard) -> Result<(), VectorError> {
    let keyword = |is_tenant: bool| {
        PayloadFieldSchema::FieldParams(PayloadSchemaParams::Keyword(KeywordIndexParams {
            r#type: Default::default(),
            is_tenant: Some(is_tenant),
            on_disk: None,
            enable_hnsw: None,
        }))
    };
    for (field, schema) in [
        (keys::TENANT, keyword(true)),
        (keys::DOCUMENT, keyword(false)),
        (keys::COLLECTION, keyword(false)),
        (
            keys::CHUNK,
            PayloadFieldSchema::FieldType(PayloadSchemaType::Integer),
        ),
    ] {
        shard
            .update(UpdateOperation::FieldIndexOperation(
                qdrant_edge::FieldIndexOperations::CreateIndex(qdrant_edge::CreateIndex {
                    field_name: path(field)?,
                    field_schema: Some(schema),
                }),
            ))
            .map_err(internal)?;
    }
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
                PointStruct::new(
                    PointId::Uuid(point_id(tenant, &p.document_id, &p.revision, p.chunk)),
                    p.vector.clone(),
                    Value::Object(payload_of(tenant, p)),
                )
                .into()
            })
            .collect();
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
        let request = SearchRequest {
            query: QueryEnum::Nearest(NamedQuery::default_dense(query.vector)),
            filter: Some(tenant_filter(tenant, conditions)?),
            params: None,
            limit: query.top_k,
            offset: 0,
            with_payload: Some(WithPayloadInterface::Bool(true)),
            with_vector: None,
            score_threshold: None,
        };
        let tenant = tenant.clone();
        self.read(move |shard| {
            let points = shard.search(request).map_err(internal)?;
            Ok(points
                .into_iter()
                .filter_map(|p| {
                    let payload = p.payload?.0;
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

    async fn flush(&self) -> Result<(), VectorError> {
        let shard = Arc::clone(&self.shard);
        tokio::task::spawn_blocking(move || {
            let guard = shard
                .write()
                .map_err(|_| VectorError::Internal("shard lock poisoned".into()))?;
            guard.flush();
            Ok(())
        })
        .await
        .map_err(|e| VectorError::Internal(format!("blocking task: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn point(doc: &str, chunk: u32, vector: Vec<f32>, metadata: Value) -> ChunkPoint {
        ChunkPoint {
            document_id: doc.into(),
            revision: "r1".into(),
            collection: "default".into(),
            chunk,
            text: format!("{doc} chunk {chunk}"),
            metadata: metadata.as_object().cloned().unwrap_or_default(),
            vector,
        }
    }

    fn query(vector: Vec<f32>, filter: Vec<(String, FilterValue)>) -> SearchQuery {
        SearchQuery {
            collection: "default".into(),
            vector,
            top_k: 10,
            filter,
        }
    }

    #[tokio::test]
    async fn search_and_delete_never_cross_tenants() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EdgeStore::open(dir.path(), "test-model", 3).expect("open");
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
        let store = EdgeStore::open(dir.path(), "test-model", 2).expect("open");
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
    async fn data_survives_reopening_the_shard() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = TenantId::generate();
        {
            let store = EdgeStore::open(dir.path(), "m", 2).expect("open");
            store
                .upsert(&t, vec![point("d1", 0, vec![0.0, 1.0], json!({}))])
                .await
                .expect("upsert");
        }
        let store = EdgeStore::open(dir.path(), "m", 2).expect("reopen");
        let hits = store
            .search(&t, query(vec![0.0, 1.0], vec![]))
            .await
            .expect("search");
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].document_id, "d1");
    }
}
