//! What the documents API reads and answers, and the rules its input is
//! checked against: every invalid field of a request is named in one answer,
//! and nothing is stored unless all of it is valid.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::{RefOr, schema::AdditionalProperties};

use crate::config::RequestLimits;
use crate::error::{ServiceError, Violations};
use analyzer_domain::retrieval::FilterValue;
use analyzer_store::{DocumentSummary, StoredDocument, StoredFile, rfc3339};

/// The collection used when a request names none.
pub const DEFAULT_COLLECTION: &str = "default";
/// Largest metadata object, serialized.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;
/// Most fields in a metadata object.
pub const MAX_METADATA_FIELDS: usize = 64;

/// A document's metadata: an open object whose values are scalars.
pub struct Metadata;

impl utoipa::PartialSchema for Metadata {
    fn schema() -> RefOr<Schema> {
        open_object_of(
            vec![Type::String, Type::Number, Type::Boolean, Type::Null],
            "Fields to filter on and to return with hits: names of 1 to 64 letters, digits, \
             `_` or `-`; values are strings, numbers, booleans or null.",
        )
    }
}

/// The schema of a JSON object with any field names whose values are of
/// `types`.
pub fn open_object_of(types: Vec<Type>, description: &str) -> RefOr<Schema> {
    let value = ObjectBuilder::new().schema_type(SchemaType::Array(types));
    ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::Object))
        .description(Some(description))
        .additional_properties(Some(AdditionalProperties::RefOr(RefOr::T(Schema::Object(
            value.build(),
        )))))
        .into()
}

impl ToSchema for Metadata {}

/// `POST /v1/documents` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IngestRequest {
    /// Collection to store into; `default` if omitted.
    pub collection: Option<String>,
    /// The documents (at least one).
    pub documents: Vec<DocumentInput>,
}

/// One document to ingest.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DocumentInput {
    /// Your id for it (letters, digits, `.`, `_`, `:`, `-`; at most 128);
    /// generated if omitted. Ingesting an existing id replaces that document.
    pub id: Option<String>,
    /// The text (UTF-8, not empty).
    pub text: String,
    /// Fields to filter on and to return with hits.
    #[schema(value_type = Option<Metadata>)]
    pub metadata: Option<Value>,
}

/// `POST /v1/documents` response.
#[derive(Debug, Serialize, ToSchema)]
pub struct IngestResponse {
    /// The document ids, in request order.
    pub ids: Vec<String>,
    /// Chunks stored across all documents.
    pub chunks: usize,
}

/// `PATCH /v1/documents/{id}` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MetadataPatch {
    /// The document's new metadata, replacing the old whole.
    #[schema(value_type = Metadata)]
    pub metadata: Value,
}

/// The file a document was uploaded as.
#[derive(Debug, Serialize, ToSchema)]
pub struct FileView {
    /// Its name, as uploaded.
    pub name: String,
    /// Its media type, from its content.
    pub media_type: String,
    /// Its size in bytes.
    pub bytes: i64,
    /// Its pages, where the format has them (PDF; DOCX when Word recorded them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pages: Option<i64>,
}

impl From<StoredFile> for FileView {
    fn from(f: StoredFile) -> Self {
        Self {
            name: f.name,
            media_type: f.media_type,
            bytes: f.bytes,
            pages: f.pages,
        }
    }
}

/// A stored document, as returned by `GET /v1/documents/{id}`: what a
/// listing shows of it, and its text.
#[derive(Debug, Serialize, ToSchema)]
pub struct DocumentView {
    /// The document without its text.
    #[serde(flatten)]
    pub document: DocumentItem,
    /// The full text (for a file, the text extracted from it).
    pub text: String,
}

impl From<StoredDocument> for DocumentView {
    fn from(d: StoredDocument) -> Self {
        Self {
            document: DocumentItem::from(DocumentSummary {
                id: d.id,
                collection: d.collection,
                metadata: d.metadata,
                chunk_count: d.chunk_count,
                byte_size: d.byte_size,
                created_at: d.created_at,
                updated_at: d.updated_at,
                file: d.file,
            }),
            text: d.text,
        }
    }
}

/// A document in a listing: what `GET /v1/documents/{id}` returns, without
/// the text.
#[derive(Debug, Serialize, ToSchema)]
pub struct DocumentItem {
    /// The document id.
    pub id: String,
    /// Its collection.
    pub collection: String,
    /// Its metadata.
    #[schema(value_type = Metadata)]
    pub metadata: Value,
    /// Number of chunks embedded.
    pub chunks: i64,
    /// Size of the text in bytes.
    pub bytes: i64,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Last replacement time (RFC 3339).
    pub updated_at: String,
    /// The file it was extracted from, for a document uploaded as one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<FileView>,
}

impl From<DocumentSummary> for DocumentItem {
    fn from(d: DocumentSummary) -> Self {
        Self {
            id: d.id,
            collection: d.collection,
            metadata: d.metadata,
            chunks: d.chunk_count,
            bytes: d.byte_size,
            created_at: rfc3339(d.created_at),
            updated_at: rfc3339(d.updated_at),
            file: d.file.map(FileView::from),
        }
    }
}

/// A validated ingest: every document checked.
#[derive(Debug)]
pub struct ValidIngest {
    pub(super) collection: String,
    pub(super) documents: Vec<ValidDocument>,
}

#[derive(Debug)]
pub(super) struct ValidDocument {
    pub(super) id: String,
    pub(super) text: String,
    pub(super) metadata: Map<String, Value>,
    /// For a file: its text in stretches chunks do not cross, with their
    /// pages; `None`: the text is one stretch.
    pub(super) sections: Option<Vec<analyzer_extract::Section>>,
    /// For a file: what it was.
    pub(super) file: Option<StoredFile>,
}

/// Whether `s` is 1 to 64 ASCII letters, digits, `_` or `-`: the rule for
/// collection and metadata field names, which end up in payload paths.
fn is_simple_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Validate a collection name (`default` when absent): 1 to 64 letters,
/// digits, `_` or `-`. The error says what is wrong, not where.
pub fn collection_name(raw: Option<String>) -> Result<String, String> {
    let name = raw.unwrap_or_else(|| DEFAULT_COLLECTION.to_owned());
    if !is_simple_name(&name) {
        return Err(format!(
            "must be 1 to 64 letters, digits, `_` or `-`, got `{}`",
            truncate(&name, 80)
        ));
    }
    Ok(name)
}

/// Validate a document id: 1 to 128 of letters, digits, `.`, `_`, `:`, `-`.
pub fn document_id(raw: &str) -> Result<String, String> {
    if raw.is_empty()
        || raw.len() > 128
        || !raw
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'))
    {
        return Err(format!(
            "must be 1 to 128 letters, digits, `.`, `_`, `:` or `-`, got `{}`",
            truncate(raw, 80)
        ));
    }
    Ok(raw.to_owned())
}

/// Validate a metadata field name (it is addressable by search filters).
pub fn field_name(raw: &str) -> Result<(), String> {
    if !is_simple_name(raw) {
        return Err(format!(
            "field names must be 1 to 64 letters, digits, `_` or `-`, got `{}`",
            truncate(raw, 80)
        ));
    }
    Ok(())
}

/// The ids of a request's documents: each given one valid and not given
/// twice, each absent one generated.
#[derive(Debug, Default)]
pub(super) struct RequestIds(HashSet<String>);

impl RequestIds {
    /// The id of `documents[i]`; what is wrong with it is recorded.
    pub(super) fn take(&mut self, i: usize, raw: Option<String>, found: &mut Violations) -> String {
        let field = format!("documents[{i}].id");
        let id = match raw {
            Some(id) => found.check(&field, document_id(&id)).unwrap_or_default(),
            None => uuid::Uuid::new_v4().to_string(),
        };
        if !id.is_empty() && !self.0.insert(id.clone()) {
            found.add(field, format!("`{id}` appears twice in this request"));
        }
        id
    }
}

/// Check a metadata value (absent or null: no metadata) and record what is
/// wrong with it against `at`.
pub fn metadata(at: &str, raw: Option<Value>, found: &mut Violations) -> Map<String, Value> {
    let map = match raw {
        None | Some(Value::Null) => return Map::new(),
        Some(Value::Object(map)) => map,
        Some(_) => {
            found.add(at, "must be a JSON object");
            return Map::new();
        }
    };
    if map.len() > MAX_METADATA_FIELDS {
        found.add(at, format!("has more than {MAX_METADATA_FIELDS} fields"));
    }
    for (key, value) in &map {
        let field = format!("{at}.{}", truncate(key, 80));
        if let Err(e) = field_name(key) {
            found.add(&field, e);
        } else if value.is_array() || value.is_object() {
            found.add(
                &field,
                "must be a string, number, boolean or null (no arrays or objects)",
            );
        }
    }
    if Value::Object(map.clone()).to_string().len() > MAX_METADATA_BYTES {
        found.add(at, format!("is larger than {MAX_METADATA_BYTES} bytes"));
    }
    map
}

/// The conditions of a metadata filter (`filter.<field>`: a string,
/// integer or boolean each), with what is wrong recorded in `found`.
pub fn filter_conditions(
    filter: Map<String, Value>,
    found: &mut Violations,
) -> Vec<(String, FilterValue)> {
    let mut conditions = Vec::new();
    for (key, value) in filter {
        let at = format!("filter.{key}");
        if found.check(&at, field_name(&key)).is_none() {
            continue;
        }
        let value = match value {
            Value::String(s) => FilterValue::String(s),
            Value::Bool(b) => FilterValue::Bool(b),
            Value::Number(n) if n.is_i64() => FilterValue::Integer(n.as_i64().unwrap_or_default()),
            other => {
                found.add(
                    at,
                    format!("expected a string, integer or boolean, got {other}"),
                );
                continue;
            }
        };
        conditions.push((key, value));
    }
    conditions
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        format!("{}…", s.chars().take(max).collect::<String>())
    }
}

impl ValidIngest {
    /// Check a whole request against the limits. A size over a limit is
    /// answered first (413); otherwise every invalid field is named (400).
    pub fn parse(request: IngestRequest, limits: &RequestLimits) -> Result<Self, ServiceError> {
        if request.documents.len() > limits.max_batch_documents {
            return Err(ServiceError::TooLarge(format!(
                "at most {} documents per request, got {}",
                limits.max_batch_documents,
                request.documents.len()
            )));
        }
        for (i, doc) in request.documents.iter().enumerate() {
            if doc.text.len() > limits.max_document_bytes {
                return Err(ServiceError::TooLarge(format!(
                    "documents[{i}].text is {} bytes; the limit is {}",
                    doc.text.len(),
                    limits.max_document_bytes
                )));
            }
        }
        let mut found = Violations::default();
        let collection = found
            .check("collection", collection_name(request.collection))
            .unwrap_or_default();
        if request.documents.is_empty() {
            found.add("documents", "must not be empty");
        }
        let mut ids = RequestIds::default();
        let mut documents = Vec::with_capacity(request.documents.len());
        for (i, doc) in request.documents.into_iter().enumerate() {
            let at = |field: &str| format!("documents[{i}].{field}");
            let id = ids.take(i, doc.id, &mut found);
            if doc.text.trim().is_empty() {
                found.add(at("text"), "must not be empty");
            } else if doc.text.contains('\0') {
                found.add(at("text"), "must not contain NUL");
            }
            let metadata = metadata(&at("metadata"), doc.metadata, &mut found);
            documents.push(ValidDocument {
                id,
                text: doc.text,
                metadata,
                sections: None,
                file: None,
            });
        }
        found.finish()?;
        Ok(Self {
            collection,
            documents,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn limits() -> RequestLimits {
        RequestLimits {
            max_body_bytes: 1 << 20,
            max_batch_documents: 2,
            max_document_bytes: 100,
            max_top_k: 10,
            request_timeout: std::time::Duration::from_secs(5),
        }
    }

    fn parse(v: Value) -> Result<ValidIngest, ServiceError> {
        let request: IngestRequest =
            serde_json::from_value(v).map_err(|e| ServiceError::Invalid(e.to_string()))?;
        ValidIngest::parse(request, &limits())
    }

    fn invalid_fields(v: Value) -> Vec<String> {
        match parse(v) {
            Err(ServiceError::InvalidFields(errors)) => {
                errors.into_iter().map(|e| e.field).collect()
            }
            other => panic!("expected invalid fields, got {other:?}"),
        }
    }

    #[test]
    fn a_valid_batch_gets_ids_and_the_default_collection() {
        let ok = parse(json!({"documents": [{"text": "hello"}, {"id": "a-1", "text": "x", "metadata": {"k": 1}}]}))
            .expect("valid");
        assert_eq!(ok.collection, DEFAULT_COLLECTION);
        assert_eq!(ok.documents[1].id, "a-1");
        assert_eq!(ok.documents.len(), 2);
    }

    #[test]
    fn bad_batches_are_refused_whole() {
        assert_eq!(invalid_fields(json!({"documents": []})), ["documents"]);
        assert_eq!(
            invalid_fields(json!({"documents": [{"text": "  "}]})),
            ["documents[0].text"]
        );
        assert_eq!(
            invalid_fields(json!({"documents": [{"text": "a", "id": "bad id"}]})),
            ["documents[0].id"]
        );
        assert_eq!(
            invalid_fields(
                json!({"documents": [{"text": "a", "id": "x"}, {"text": "b", "id": "x"}]})
            ),
            ["documents[1].id"]
        );
        assert_eq!(
            invalid_fields(json!({"documents": [{"text": "a", "metadata": [1]}]})),
            ["documents[0].metadata"]
        );
        assert_eq!(
            invalid_fields(json!({"documents": [{"text": "a", "metadata": {"bad key": 1}}]})),
            ["documents[0].metadata.bad key"]
        );
        assert_eq!(
            invalid_fields(json!({"documents": [{"text": "a", "metadata": {"tags": ["x"]}}]})),
            ["documents[0].metadata.tags"]
        );
        assert_eq!(
            invalid_fields(json!({"collection": "no/slash", "documents": [{"text": "a"}]})),
            ["collection"]
        );
        assert!(matches!(
            parse(json!({"documents": [{"text": "a", "extra": 1}]})),
            Err(ServiceError::Invalid(_))
        ));
        let too_large = |v: Value| matches!(parse(v), Err(ServiceError::TooLarge(_)));
        assert!(too_large(
            json!({"documents": [{"text": "a"}, {"text": "b"}, {"text": "c"}]})
        ));
        assert!(too_large(json!({"documents": [{"text": "x".repeat(101)}]})));
    }

    #[test]
    fn every_invalid_field_of_a_batch_is_named_in_one_answer() {
        let fields = invalid_fields(json!({
            "collection": "a b",
            "documents": [
                {"text": "", "id": "ok"},
                {"text": "fine", "metadata": {"n": {"nested": 1}, "x y": 2}}
            ]
        }));
        assert_eq!(
            fields,
            [
                "collection",
                "documents[0].text",
                "documents[1].metadata.n",
                "documents[1].metadata.x y"
            ]
        );
    }
}
