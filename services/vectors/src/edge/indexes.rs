//! The shard's payload indexes: which fields are indexed, how, and the
//! upgrade of shards written with older indexes.

use qdrant_edge::{
    EdgeShard, KeywordIndexParams, PayloadFieldSchema, PayloadSchemaParams, PayloadSchemaType,
    UpdateOperation, UuidIndexParams,
};

use super::{internal, path};
use crate::{VectorError, keys};

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
pub(super) fn on_disk(info: &qdrant_edge::PayloadIndexInfo) -> bool {
    match &info.params {
        Some(PayloadSchemaParams::Keyword(params)) => params.on_disk == Some(true),
        Some(PayloadSchemaParams::Uuid(params)) => params.on_disk == Some(true),
        _ => false,
    }
}

pub(super) fn create_index(
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

pub(super) fn delete_index(shard: &EdgeShard, field: &str) -> Result<(), VectorError> {
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
/// the server's heap at 175,000 chunks (docs/benchmarks/history.md, memory). A segment
/// still being written keeps its indexes in memory either way.
pub(super) fn create_payload_indexes(shard: &EdgeShard) -> Result<(), VectorError> {
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
pub(super) fn upgrade_payload_indexes(shard: &EdgeShard) -> Result<(), VectorError> {
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
