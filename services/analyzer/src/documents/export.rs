//! A tenant's documents as NDJSON, one line per document as
//! `GET /v1/documents/{id}` returns it, oldest first, read a page at a time
//! so that memory does not grow with the tenant's size.

use bytes::Bytes;
use futures::Stream;

use super::requests::DocumentView;
use crate::error::ServiceError;
use analyzer_domain::tenants::TenantId;
use analyzer_store::{Db, ListPosition};

/// Documents read per page: a document's text is at most
/// `ANALYZER_MAX_DOCUMENT_BYTES`, so a page holds at most this many of them.
const PAGE: u32 = 16;

/// The tenant's documents, one JSON line each. A failure ends the stream
/// with an error, after the lines already sent.
pub fn export(db: Db, tenant: TenantId) -> impl Stream<Item = Result<Bytes, ServiceError>> {
    async_stream::try_stream! {
        let mut after: Option<ListPosition> = None;
        loop {
            let page = db.documents_oldest_first(&tenant, after.as_ref(), PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some(ListPosition { created_at: last.created_at, id: last.id.clone() });
            let full = page.len() == PAGE as usize;
            for document in page {
                let mut line = serde_json::to_vec(&DocumentView::from(document))
                    .map_err(|e| ServiceError::Invalid(format!("a document could not be written: {e}")))?;
                line.push(b'\n');
                yield Bytes::from(line);
            }
            if !full {
                break;
            }
        }
    }
}
