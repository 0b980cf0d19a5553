//! Documents uploaded as files: each file's text read (in a child
//! process, see `uploads`), then ingested like a JSON batch: the request is
//! stored whole or not at all.

use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::requests::{RequestIds, ValidDocument, ValidIngest, collection_name, metadata};
use crate::config::RequestLimits;
use crate::error::{FileRefusal, ServiceError, Violations};
use crate::uploads::Extractor;
use analyzer_store::StoredFile;

/// A file received, kept in a temporary file until the request ends.
#[derive(Debug)]
pub struct ReceivedFile {
    /// Its name as uploaded (the part's `filename`).
    pub name: String,
    /// Where it is.
    pub path: tempfile::TempPath,
    /// Its size.
    pub bytes: u64,
}

/// Per-file options: the `documents` part, a JSON array in the order of
/// the `file` parts.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FileOptions {
    /// The document's id (as in a JSON ingest); generated if omitted.
    pub id: Option<String>,
    /// Its metadata.
    #[schema(value_type = Option<super::requests::Metadata>)]
    pub metadata: Option<Value>,
}

/// A multipart ingest, as received.
#[derive(Debug, Default)]
pub struct Upload {
    /// The `collection` part.
    pub collection: Option<String>,
    /// The `file` parts, in order.
    pub files: Vec<ReceivedFile>,
    /// The `documents` part, if sent.
    pub options: Option<Vec<FileOptions>>,
}

impl ValidIngest {
    /// Check an upload and read every file; every invalid field and every
    /// refused file is named. Nothing is stored by this.
    pub async fn from_upload(
        upload: Upload,
        extractor: &Extractor,
        limits: &RequestLimits,
    ) -> Result<Self, ServiceError> {
        if upload.files.len() > limits.max_batch_documents {
            return Err(ServiceError::TooLarge(format!(
                "at most {} files per request, got {}",
                limits.max_batch_documents,
                upload.files.len()
            )));
        }
        let mut found = Violations::default();
        let collection = found
            .check("collection", collection_name(upload.collection))
            .unwrap_or_default();
        if upload.files.is_empty() {
            found.add("file", "send at least one `file` part");
        }
        let mut options = upload.options.unwrap_or_default();
        if !options.is_empty() && options.len() != upload.files.len() {
            found.add(
                "documents",
                format!(
                    "has {} entries for {} files; give one per file, in their order",
                    options.len(),
                    upload.files.len()
                ),
            );
        }
        options.resize_with(upload.files.len(), FileOptions::default);
        let mut ids = RequestIds::default();
        let mut checked = Vec::with_capacity(options.len());
        for (i, option) in options.into_iter().enumerate() {
            let id = ids.take(i, option.id, &mut found);
            let metadata = metadata(
                &format!("documents[{i}].metadata"),
                option.metadata,
                &mut found,
            );
            checked.push((id, metadata));
        }
        found.finish()?;

        // Every file is read before anything is refused, so that one answer
        // names each bad file.
        let mut documents = Vec::with_capacity(upload.files.len());
        let mut refused = Vec::new();
        for (i, (file, (id, metadata))) in upload.files.into_iter().zip(checked).enumerate() {
            match extractor
                .extract(&file.path, &file.name, limits.max_document_bytes)
                .await
            {
                Ok(extracted) => documents.push(ValidDocument {
                    id,
                    text: extracted.text(),
                    metadata,
                    file: Some(StoredFile {
                        name: file.name,
                        media_type: extracted.format.media_type().to_owned(),
                        bytes: i64::try_from(file.bytes).unwrap_or(i64::MAX),
                        pages: extracted.pages.map(i64::from),
                    }),
                    sections: Some(extracted.sections),
                }),
                Err(refusal) => refused.push(FileRefusal {
                    field: format!("files[{i}]"),
                    file: file.name,
                    refusal,
                }),
            }
        }
        if !refused.is_empty() {
            return Err(ServiceError::FilesRefused(refused));
        }
        Ok(Self {
            collection,
            documents,
        })
    }
}
