//! A tenant's collections: list with what each holds, create, and delete
//! with everything in it.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::requests::collection_name;
use super::{leave_to_sweep, remove_revisions};
use crate::error::{ServiceError, Violations};
use analyzer_domain::tenants::TenantId;
use analyzer_store::{CollectionStats, DEFAULT_COLLECTION, Db, rfc3339};
use analyzer_vectors::VectorStore;

/// A collection, as `GET /v1/collections` lists it.
#[derive(Debug, Serialize, ToSchema)]
pub struct CollectionView {
    /// Its name.
    pub name: String,
    /// Documents in it.
    pub documents: i64,
    /// Their chunks.
    pub chunks: i64,
    /// Bytes of their text.
    pub bytes: i64,
    /// Bytes of their vectors and payload (counted in the tier's vector storage).
    pub vector_bytes: i64,
    /// Creation time (RFC 3339).
    pub created_at: String,
}

impl From<CollectionStats> for CollectionView {
    fn from(c: CollectionStats) -> Self {
        Self {
            name: c.name,
            documents: c.documents,
            chunks: c.chunks,
            bytes: c.text_bytes,
            vector_bytes: c.vector_bytes,
            created_at: rfc3339(c.created_at),
        }
    }
}

/// `GET /v1/collections` response.
#[derive(Debug, Serialize, ToSchema)]
pub struct CollectionList {
    /// By name; `default` always among them.
    pub collections: Vec<CollectionView>,
}

/// `POST /v1/collections` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCollection {
    /// 1 to 64 letters, digits, `_` or `-`.
    pub name: String,
}

/// The tenant's collections.
pub async fn list(db: &Db, tenant: &TenantId) -> Result<CollectionList, ServiceError> {
    let collections = db.collections(tenant).await?;
    Ok(CollectionList {
        collections: collections.into_iter().map(CollectionView::from).collect(),
    })
}

/// Create an empty collection; 409 if the tenant has it.
pub async fn create(
    db: &Db,
    tenant: &TenantId,
    request: CreateCollection,
) -> Result<CollectionView, ServiceError> {
    let mut found = Violations::default();
    let name = found.check("name", collection_name(Some(request.name)));
    found.finish()?;
    let name = name.unwrap_or_default();
    if !db.create_collection(tenant, &name).await? {
        return Err(ServiceError::Conflict {
            code: "collection_exists",
            message: format!("the collection `{name}` exists"),
        });
    }
    db.collections(tenant)
        .await?
        .into_iter()
        .find(|c| c.name == name)
        .map(CollectionView::from)
        .ok_or_else(|| not_found(&name))
}

/// Delete a collection with its documents and their vectors. Its documents
/// disappear at once, in one transaction; their vectors are removed after
/// it (here, or by the sweep if this task dies first).
pub async fn delete(
    db: &Db,
    vectors: &dyn VectorStore,
    tenant: &TenantId,
    name: &str,
) -> Result<(), ServiceError> {
    let name = collection_name(Some(name.to_owned()))
        .map_err(|_| ServiceError::NotFound("no such collection".into()))?;
    if name == DEFAULT_COLLECTION {
        return Err(ServiceError::Conflict {
            code: "collection_protected",
            message: "the `default` collection always exists; delete its documents instead".into(),
        });
    }
    let removed = db
        .delete_collection(tenant, &name)
        .await?
        .ok_or_else(|| not_found(&name))?;
    tracing::info!(tenant_id = %tenant, collection = %name, documents = removed.len(), "collection deleted");
    leave_to_sweep(remove_revisions(db, vectors, tenant, &removed).await);
    Ok(())
}

fn not_found(name: &str) -> ServiceError {
    ServiceError::NotFound(format!("no collection `{name}`"))
}
