//! Search: validated queries over one tenant's collection.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::documents::{DEFAULT_COLLECTION, collection_name, field_name};
use crate::embed::Embedder;
use crate::error::ServiceError;
use crate::store::Db;
use crate::tenants::TenantId;
use crate::vectors::{ChunkHit, FilterValue, SearchQuery, VectorStore};

/// Default number of hits.
pub const DEFAULT_TOP_K: usize = 5;
/// Longest accepted query or question, in characters.
pub const MAX_QUERY_CHARS: usize = 4096;

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
    /// Metadata fields that must equal these values (string, integer or boolean).
    #[schema(value_type = Option<Object>)]
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
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
}

impl From<ChunkHit> for Hit {
    fn from(h: ChunkHit) -> Self {
        Self {
            document_id: h.document_id,
            chunk: h.chunk,
            score: h.score,
            text: h.text,
            metadata: h.metadata,
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
        if query.trim().is_empty() {
            return Err(ServiceError::Invalid(format!(
                "`{field}` must not be empty"
            )));
        }
        if query.chars().count() > MAX_QUERY_CHARS {
            return Err(ServiceError::Invalid(format!(
                "`{field}` must be at most {MAX_QUERY_CHARS} characters"
            )));
        }
        let top_k = match top_k {
            None => DEFAULT_TOP_K.min(max_top_k),
            Some(k) if k >= 1 && usize::try_from(k).is_ok_and(|k| k <= max_top_k) => k as usize,
            Some(k) => {
                return Err(ServiceError::Invalid(format!(
                    "`top_k` must be between 1 and {max_top_k}, got {k}"
                )));
            }
        };
        let collection = collection_name(collection)?;
        let mut conditions = Vec::new();
        for (key, value) in filter.unwrap_or_default() {
            field_name(&key)?;
            let value = match value {
                Value::String(s) => FilterValue::String(s),
                Value::Bool(b) => FilterValue::Bool(b),
                Value::Number(n) if n.is_i64() => {
                    FilterValue::Integer(n.as_i64().unwrap_or_default())
                }
                other => {
                    return Err(ServiceError::Invalid(format!(
                        "filter `{key}`: expected a string, integer or boolean, got {other}"
                    )));
                }
            };
            conditions.push((key, value));
        }
        Ok(Self {
            query,
            top_k,
            collection,
            filter: conditions,
        })
    }

    /// Run the retrieval for `tenant`. An unknown collection is a 404; the
    /// default collection always exists (it may be empty).
    pub async fn run(
        &self,
        db: &Db,
        embedder: &dyn Embedder,
        vectors: &dyn VectorStore,
        tenant: &TenantId,
    ) -> Result<Vec<ChunkHit>, ServiceError> {
        if self.collection != DEFAULT_COLLECTION
            && !db.collection_exists(tenant, &self.collection).await?
        {
            return Err(ServiceError::NotFound(format!(
                "collection `{}` not found",
                self.collection
            )));
        }
        let vector = embedder
            .embed(std::slice::from_ref(&self.query))
            .await?
            .pop()
            .ok_or_else(|| {
                crate::embed::EmbedError::Unavailable("embedder returned no vector".into())
            })?;
        let hits = vectors
            .search(
                tenant,
                SearchQuery {
                    collection: self.collection.clone(),
                    vector,
                    top_k: self.top_k,
                    filter: self.filter.clone(),
                },
            )
            .await?;
        Ok(hits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(top_k: Option<i64>, filter: Value) -> Result<Retrieval, ServiceError> {
        Retrieval::parse(
            "query",
            "q".into(),
            top_k,
            None,
            filter.as_object().cloned(),
            100,
        )
    }

    #[test]
    fn top_k_is_bounded() {
        assert_eq!(parse(None, json!(null)).expect("default").top_k, 5);
        assert!(parse(Some(0), json!(null)).is_err());
        assert!(parse(Some(-3), json!(null)).is_err());
        assert!(parse(Some(101), json!(null)).is_err());
        assert_eq!(parse(Some(100), json!(null)).expect("max").top_k, 100);
    }

    #[test]
    fn filters_take_scalars_only() {
        let ok = parse(None, json!({"lang": "en", "year": 2024, "draft": false})).expect("ok");
        assert_eq!(ok.filter.len(), 3);
        assert!(parse(None, json!({"score": 1.5})).is_err());
        assert!(parse(None, json!({"tags": ["a"]})).is_err());
        assert!(parse(None, json!({"bad key": "x"})).is_err());
    }

    #[test]
    fn an_empty_query_is_refused() {
        assert!(Retrieval::parse("query", "  ".into(), None, None, None, 10).is_err());
    }
}
