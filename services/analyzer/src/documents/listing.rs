//! Listing a tenant's documents, newest first, a page at a time.
//!
//! The cursor is the position of the page's last document, `(created_at,
//! id)`, neither of which changes while the document exists: a listing
//! followed to its end never returns a document twice and never skips one
//! that existed when it began (documents stored meanwhile sort before the
//! position, so they are not seen).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::requests::{DocumentItem, collection_name, document_id, filter_conditions};
use crate::error::{ServiceError, Violations};
use analyzer_domain::tenants::TenantId;
use analyzer_store::{Db, DocumentFilter, ListPosition};

/// Documents per page when the request says nothing.
pub const DEFAULT_PAGE: u32 = 100;
/// Most documents per page.
pub const MAX_PAGE: u32 = 1000;

/// `GET /v1/documents` query parameters.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only this collection's documents.
    pub collection: Option<String>,
    /// Documents per page, 1 to 1000 (default 100).
    pub limit: Option<String>,
    /// Where to continue: the `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Only documents whose metadata has these values: a JSON object, as
    /// the `filter` of `POST /v1/search` (e.g. `{"lang":"en"}`, URL-encoded).
    pub filter: Option<String>,
}

/// A page of `GET /v1/documents`.
#[derive(Debug, Serialize, ToSchema)]
pub struct DocumentPage {
    /// Newest first.
    pub documents: Vec<DocumentItem>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// A checked listing request.
#[derive(Debug)]
pub struct Listing {
    filter: DocumentFilter,
    after: Option<ListPosition>,
    limit: u32,
}

impl Listing {
    /// Check every parameter; each invalid one is named.
    pub fn parse(query: ListQuery) -> Result<Self, ServiceError> {
        let mut found = Violations::default();
        let collection = query
            .collection
            .and_then(|c| found.check("collection", collection_name(Some(c))));
        let limit = page_limit(query.limit.as_deref(), &mut found);
        let after = query
            .cursor
            .and_then(|c| found.check("cursor", decode_cursor(&c)));
        let metadata = match query.filter.as_deref().map(serde_json::from_str::<Value>) {
            None => Vec::new(),
            Some(Ok(Value::Object(map))) => filter_conditions(map, &mut found),
            Some(_) => {
                found.add("filter", "must be a JSON object of field values");
                Vec::new()
            }
        };
        found.finish()?;
        Ok(Self {
            filter: DocumentFilter {
                collection,
                metadata,
            },
            after,
            limit,
        })
    }
}

/// One page of the tenant's documents.
pub async fn list(
    db: &Db,
    tenant: &TenantId,
    listing: Listing,
) -> Result<DocumentPage, ServiceError> {
    // One more than the page, to know whether another follows.
    let mut rows = db
        .list_documents(
            tenant,
            &listing.filter,
            listing.after.as_ref(),
            listing.limit + 1,
        )
        .await?;
    let more = rows.len() > listing.limit as usize;
    rows.truncate(listing.limit as usize);
    let next_cursor = more
        .then(|| rows.last())
        .flatten()
        .map(|last| encode_cursor(last.created_at, &last.id));
    Ok(DocumentPage {
        documents: rows.into_iter().map(DocumentItem::from).collect(),
        next_cursor,
    })
}

/// The `limit` of a paged listing: 1 to [`MAX_PAGE`], [`DEFAULT_PAGE`] when
/// absent; what is wrong with it is recorded.
pub fn page_limit(raw: Option<&str>, found: &mut Violations) -> u32 {
    match raw.map(str::parse::<u32>) {
        None => DEFAULT_PAGE,
        Some(Ok(n)) if (1..=MAX_PAGE).contains(&n) => n,
        Some(_) => {
            found.add("limit", format!("must be an integer from 1 to {MAX_PAGE}"));
            DEFAULT_PAGE
        }
    }
}

/// A listing's position as an opaque cursor. `kind` names the listing and
/// the version of its format, so that one listing's cursors, or an older
/// format's, are refused by another.
pub fn encode_position(kind: &str, at: i64, id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{kind}\u{1f}{at}\u{1f}{id}"))
}

/// The position a cursor of `kind` was made from.
pub fn decode_position(kind: &str, cursor: &str) -> Result<ListPosition, String> {
    let invalid = || "is not a cursor this API returned".to_owned();
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let mut parts = text.split('\u{1f}');
    let (Some(found), Some(at), Some(id), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid());
    };
    if found != kind {
        return Err(invalid());
    }
    Ok(ListPosition {
        created_at: at.parse().map_err(|_| invalid())?,
        id: id.to_owned(),
    })
}

/// The kind and version of the documents listing's cursors.
const DOCUMENTS: &str = "d1";

fn encode_cursor(created_at: i64, id: &str) -> String {
    encode_position(DOCUMENTS, created_at, id)
}

fn decode_cursor(cursor: &str) -> Result<ListPosition, String> {
    let position = decode_position(DOCUMENTS, cursor)?;
    document_id(&position.id).map_err(|_| "is not a cursor this API returned".to_owned())?;
    Ok(position)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> ListQuery {
        let mut q = ListQuery::default();
        for (k, v) in pairs {
            let v = Some((*v).to_owned());
            match *k {
                "collection" => q.collection = v,
                "limit" => q.limit = v,
                "cursor" => q.cursor = v,
                "filter" => q.filter = v,
                _ => panic!("no parameter {k}"),
            }
        }
        q
    }

    fn invalid_fields(q: ListQuery) -> Vec<String> {
        match Listing::parse(q) {
            Err(ServiceError::InvalidFields(e)) => e.into_iter().map(|e| e.field).collect(),
            other => panic!("expected invalid fields, got {other:?}"),
        }
    }

    #[test]
    fn a_cursor_returns_the_position_it_was_made_from() {
        let cursor = encode_cursor(1_765_000_000_123, "doc:7");
        assert_eq!(
            decode_cursor(&cursor),
            Ok(ListPosition {
                created_at: 1_765_000_000_123,
                id: "doc:7".into()
            })
        );
    }

    #[test]
    fn a_listing_without_parameters_is_the_first_page_of_100() {
        let listing = Listing::parse(ListQuery::default()).expect("valid");
        assert_eq!(listing.limit, DEFAULT_PAGE);
        assert!(listing.after.is_none());
        assert!(listing.filter.collection.is_none());
    }

    #[test]
    fn every_bad_parameter_is_named() {
        let fields = invalid_fields(query(&[
            ("collection", "a b"),
            ("limit", "0"),
            ("cursor", "not-a-cursor"),
            ("filter", r#"{"lang": 1.5}"#),
        ]));
        assert_eq!(fields, ["collection", "limit", "cursor", "filter.lang"]);
        assert_eq!(invalid_fields(query(&[("limit", "1001")])), ["limit"]);
        assert_eq!(invalid_fields(query(&[("filter", "[1]")])), ["filter"]);
        let forged = URL_SAFE_NO_PAD.encode("d1\u{1f}12\u{1f}bad id");
        assert_eq!(invalid_fields(query(&[("cursor", &forged)])), ["cursor"]);
    }
}
