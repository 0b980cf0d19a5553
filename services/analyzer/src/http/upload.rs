//! Receiving a `multipart/form-data` ingest: each `file` part streamed to
//! a temporary file, within the per-file and per-request byte limits; the
//! small `collection` and `documents` parts read whole.

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use tokio::io::AsyncWriteExt as _;

use super::error::ApiError;
use crate::documents::files::{FileOptions, ReceivedFile, Upload};
use crate::error::{ServiceError, Violations};
use crate::uploads::{Extractor, UploadConfig};

/// `POST /v1/documents` as `multipart/form-data` (described for the
/// OpenAPI document; the parts are read by [`receive`]).
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct UploadForm {
    /// The files, one part each, with their file names: PDF, DOCX, HTML,
    /// Markdown or plain text, told from their content.
    #[schema(value_type = Vec<String>, format = Binary)]
    pub file: Vec<Vec<u8>>,
    /// The collection to store into; `default` if omitted.
    pub collection: Option<String>,
    /// A JSON array, one `{"id"?, "metadata"?}` per file in their order.
    #[schema(value_type = Option<String>)]
    pub documents: Option<Vec<FileOptions>>,
}

/// Largest `collection` or `documents` part.
const MAX_FIELD_BYTES: u64 = 1024 * 1024;

/// Whether the request is a multipart upload.
pub(super) fn is_multipart(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/form-data"))
}

/// Read the parts of a multipart body into an [`Upload`].
pub(super) async fn receive(
    headers: &HeaderMap,
    body: Body,
    extractor: &Extractor,
) -> Result<Upload, ApiError> {
    let config = extractor.config();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let boundary = multer::parse_boundary(content_type).map_err(|_| {
        malformed("`Content-Type: multipart/form-data` needs a `boundary` parameter".into())
    })?;
    let constraints = multer::Constraints::new().size_limit(
        multer::SizeLimit::new()
            .whole_stream(config.max_request_bytes)
            .for_field("collection", MAX_FIELD_BYTES)
            .for_field("documents", MAX_FIELD_BYTES)
            .for_field("file", config.max_file_bytes),
    );
    let mut multipart =
        multer::Multipart::with_constraints(body.into_data_stream(), boundary, constraints);
    let received = read_parts(&mut multipart, extractor).await;
    if received.is_err() {
        // Read what is left, so that the client gets the answer instead
        // of a reset connection; bounded by the request's own limit.
        let drain = async {
            while let Ok(Some(mut field)) = multipart.next_field().await {
                while let Ok(Some(_)) = field.chunk().await {}
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(10), drain).await;
    }
    received
}

async fn read_parts(
    multipart: &mut multer::Multipart<'static>,
    extractor: &Extractor,
) -> Result<Upload, ApiError> {
    let config = extractor.config();
    let mut upload = Upload::default();
    let mut unknown = Violations::default();
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| part_error(e, &upload, config))?
    {
        match field.name().unwrap_or_default() {
            "file" => {
                let file = receive_file(field, upload.files.len(), extractor).await;
                upload
                    .files
                    .push(file.map_err(|e| part_error(e, &upload, config))?);
            }
            "collection" => {
                let text = field
                    .text()
                    .await
                    .map_err(|e| part_error(e, &upload, config))?;
                upload.collection = Some(text);
            }
            "documents" => {
                let text = field
                    .text()
                    .await
                    .map_err(|e| part_error(e, &upload, config))?;
                let options: Vec<FileOptions> = serde_json::from_str(&text).map_err(|e| {
                    ServiceError::InvalidFields(vec![crate::error::FieldError {
                        field: "documents".into(),
                        message: format!(
                            "must be a JSON array of {{\"id\"?, \"metadata\"?}}, one per file ({e})"
                        ),
                    }])
                })?;
                upload.options = Some(options);
            }
            other => {
                let other = other.chars().take(64).collect::<String>();
                unknown.add(
                    other,
                    "unknown part; the parts are `file`, `documents` and `collection`",
                );
                // Its bytes are read and dropped (they count toward the limit).
                let mut field = field;
                while field
                    .chunk()
                    .await
                    .map_err(|e| part_error(e, &upload, config))?
                    .is_some()
                {}
            }
        }
    }
    unknown.finish()?;
    Ok(upload)
}

/// Stream one `file` part to a temporary file.
async fn receive_file(
    mut field: multer::Field<'static>,
    index: usize,
    extractor: &Extractor,
) -> Result<ReceivedFile, multer::Error> {
    let name = field
        .file_name()
        .map(file_name)
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| format!("file-{}", index + 1));
    let temp = extractor
        .temp_file("upload-")
        .map_err(|e| multer::Error::StreamReadFailed(Box::new(e)))?;
    let (file, path) = temp.into_parts();
    let mut file = tokio::fs::File::from_std(file);
    let mut bytes = 0u64;
    while let Some(chunk) = field.chunk().await? {
        bytes += chunk.len() as u64;
        file.write_all(&chunk)
            .await
            .map_err(|e| multer::Error::StreamReadFailed(Box::new(e)))?;
    }
    file.flush()
        .await
        .map_err(|e| multer::Error::StreamReadFailed(Box::new(e)))?;
    Ok(ReceivedFile { name, path, bytes })
}

/// A file name as uploaded, without any directory a browser put before
/// it (`C:\fakepath\x.pdf`) or control characters, at most 255 characters.
fn file_name(raw: &str) -> String {
    let base = raw.rsplit(['/', '\\']).next().unwrap_or(raw);
    base.chars()
        .filter(|c| !c.is_control())
        .take(255)
        .collect::<String>()
        .trim()
        .to_owned()
}

/// A part that could not be read, as the problem it is.
fn part_error(e: multer::Error, upload: &Upload, config: &UploadConfig) -> ApiError {
    let index = upload.files.len();
    match e {
        multer::Error::FieldSizeExceeded { field_name, .. } => {
            let detail = match field_name.as_deref() {
                Some("file") => format!(
                    "files[{index}] is larger than {} bytes, the limit of a file; nothing was stored",
                    config.max_file_bytes
                ),
                other => format!(
                    "the part `{}` is larger than {MAX_FIELD_BYTES} bytes",
                    other.unwrap_or_default()
                ),
            };
            too_large(detail)
        }
        multer::Error::StreamSizeExceeded { .. } => too_large(format!(
            "the upload is larger than {} bytes, the limit of a request; nothing was stored",
            config.max_request_bytes
        )),
        multer::Error::StreamReadFailed(e) => {
            tracing::warn!(error = %e, "an upload could not be received");
            ApiError::BadRequest {
                status: StatusCode::BAD_REQUEST,
                code: "invalid_request",
                detail: "the upload could not be received".into(),
            }
        }
        e => malformed(format!("malformed multipart body: {e}")),
    }
}

fn too_large(detail: String) -> ApiError {
    ApiError::BadRequest {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        code: "payload_too_large",
        detail,
    }
}

fn malformed(detail: String) -> ApiError {
    ApiError::BadRequest {
        status: StatusCode::BAD_REQUEST,
        code: "invalid_request",
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_name_keeps_only_its_last_component() {
        assert_eq!(file_name(r"C:\fakepath\report.pdf"), "report.pdf");
        assert_eq!(file_name("../../etc/passwd"), "passwd");
        assert_eq!(file_name("a\u{0}b.txt"), "ab.txt");
    }

    #[test]
    fn only_multipart_form_data_is_an_upload() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            "Multipart/Form-Data; boundary=x".parse().expect("a header"),
        );
        assert!(is_multipart(&headers));
        headers.insert(
            header::CONTENT_TYPE,
            "application/json".parse().expect("a header"),
        );
        assert!(!is_multipart(&headers));
    }
}
