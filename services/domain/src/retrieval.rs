//! What retrieval returns: the chunks that best match a query, with their
//! document's metadata, handed to an [`crate::analyze::Analyst`].

use serde_json::{Map, Value};

/// A scalar a metadata filter can match exactly (in searches and in
/// document listings).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FilterValue {
    /// A string, matched as a keyword.
    String(String),
    /// An integer.
    Integer(i64),
    /// A boolean.
    Bool(bool),
}

/// One search result.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ChunkHit {
    /// The document id.
    pub document_id: String,
    /// The chunk's position.
    pub chunk: u32,
    /// Cosine similarity.
    pub score: f32,
    /// The chunk's text.
    pub text: String,
    /// The document's metadata.
    pub metadata: Map<String, Value>,
    /// The document revision the chunk belongs to, when the point records
    /// it; cleared once the search has checked it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// The page of its file the chunk is on, for documents uploaded as
    /// files with pages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<u32>,
}
