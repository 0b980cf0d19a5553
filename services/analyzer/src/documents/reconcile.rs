//! Bringing the embedded vector store back in line with the database
//! after an unclean stop (the `edge` feature only).

use analyzer_domain::chunk::{ChunkingConfig, chunk_text};
use analyzer_domain::embed::Embedder;
use analyzer_store::Db;
use analyzer_vectors::edge::EdgeStore;
use analyzer_vectors::{VectorStore as _, revision_point_ids};

use super::{Revision, chunk_points};
use crate::error::ServiceError;

/// What a reconciliation of the embedded vector store found and mended.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reconciled {
    /// Documents in the database.
    pub documents: usize,
    /// Documents whose chunks were missing, rebuilt from their text.
    pub rebuilt: usize,
    /// Chunks written for them.
    pub chunks: usize,
    /// Points the database has no document revision for, removed.
    pub removed: usize,
    /// Documents whose chunks' metadata was written again from the
    /// database ([`Payloads::FromDatabase`]).
    pub rewritten: usize,
}

/// What the shard's payloads are taken to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payloads {
    /// Up to date wherever the chunks are: after an unclean stop, a
    /// metadata change the shard may have lost is redone by the sweep
    /// (its mark is committed before the change).
    Current,
    /// Possibly newer or older than the database: a restored backup's
    /// shard was copied a moment apart from its database, so every
    /// document's metadata is written again from the database.
    FromDatabase,
}

/// Documents embedded per call while rebuilding.
const RECONCILE_PAGE: u32 = 100;

/// Bring the embedded vector store back in line with the database after an
/// unclean stop (see `vectors::edge`): every stored revision's chunks are
/// rebuilt from the document's text if any is missing, and every point no
/// stored revision owns (a delete or replacement the shard had not
/// flushed) is removed. The point ids are derived from tenant, document,
/// revision and position, so the check needs no payload.
pub async fn reconcile(
    db: &Db,
    store: &EdgeStore,
    embedder: &dyn Embedder,
    chunking: ChunkingConfig,
    payloads: Payloads,
) -> Result<Reconciled, ServiceError> {
    let mut orphans = store.point_ids().await?;
    let mut report = Reconciled::default();
    let mut after = None;
    loop {
        let page = db.documents_after(after.as_ref(), RECONCILE_PAGE).await?;
        let Some((tenant, doc)) = page.last() else {
            break;
        };
        after = Some((tenant.clone(), doc.id.clone()));
        let mut missing = Vec::new();
        for (tenant, doc) in page {
            report.documents += 1;
            let count = u32::try_from(doc.chunk_count).unwrap_or(0);
            let mut complete = true;
            for id in revision_point_ids(&tenant, &doc.id, &doc.revision, count) {
                complete &= orphans.remove(&id);
            }
            if !complete {
                missing.push((tenant, doc));
            } else if payloads == Payloads::FromDatabase {
                let metadata = doc.metadata.as_object().cloned().unwrap_or_default();
                store
                    .set_metadata(&tenant, &doc.id, &doc.revision, count, metadata)
                    .await?;
                report.rewritten += 1;
            }
        }
        if missing.is_empty() {
            continue;
        }
        let chunked: Vec<Vec<String>> = missing
            .iter()
            .map(|(_, doc)| chunk_text(&doc.text, chunking))
            .collect();
        let texts: Vec<String> = chunked.iter().flatten().cloned().collect();
        let mut vectors = embedder.embed(&texts).await?.vectors.into_iter();
        for ((tenant, doc), chunks) in missing.into_iter().zip(chunked) {
            if i64::try_from(chunks.len()).ok() != Some(doc.chunk_count) {
                tracing::warn!(
                    tenant_id = %tenant, document_id = %doc.id,
                    stored = doc.chunk_count, now = chunks.len(),
                    "the chunking settings changed since this document was stored; ingest it again to re-chunk it"
                );
            }
            let metadata = doc.metadata.as_object().cloned().unwrap_or_default();
            let points = chunk_points(
                Revision {
                    document_id: &doc.id,
                    revision: &doc.revision,
                    collection: &doc.collection,
                    metadata: &metadata,
                },
                // A file's pages are not kept apart in its stored text:
                // rebuilt chunks have none (docs/architecture.md).
                chunks.into_iter().map(|chunk| (None, chunk)).collect(),
                &mut vectors,
            )?;
            report.rebuilt += 1;
            report.chunks += points.len();
            store.upsert(&tenant, points).await?;
        }
    }
    report.removed = orphans.len();
    store.delete_points(orphans.into_iter().collect()).await?;
    Ok(report)
}
