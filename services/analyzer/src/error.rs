//! The error type of the domain services. Each variant says what a caller
//! did wrong or which dependency failed; the HTTP layer maps it to a status.

use serde::Serialize;
use utoipa::ToSchema;

use crate::tenants::TenantError;
use analyzer_domain::embed::ProviderError;
use analyzer_domain::tenants::InvalidValue;
use analyzer_store::StoreError;
use analyzer_vectors::VectorError;

/// Why a service call failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The input is malformed or out of range (400).
    #[error("{0}")]
    Invalid(String),
    /// Fields of the input are invalid, each named (400).
    #[error("{}", FieldError::summary(.0))]
    InvalidFields(Vec<FieldError>),
    /// The input is larger than allowed (413).
    #[error("{0}")]
    TooLarge(String),
    /// Storing the input would pass one of the tenant's quotas (413).
    #[error("{0}")]
    OverQuota(String),
    /// The thing asked for does not exist for this caller (404).
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with what exists (409); the code names how.
    #[error("{message}")]
    Conflict {
        /// The problem's machine-readable code.
        code: &'static str,
        /// What conflicts.
        message: String,
    },
    /// Uploaded files that cannot be ingested, each with why; the status
    /// is the first one's (415 unsupported, 422 unreadable, 413 too large).
    #[error("{}", FileRefusal::summary(.0))]
    FilesRefused(Vec<FileRefusal>),
    /// The relational store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The vector store failed.
    #[error(transparent)]
    Vectors(#[from] VectorError),
    /// The embedding or LLM provider failed.
    #[error(transparent)]
    Provider(#[from] ProviderError),
}

/// One invalid field of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    /// Where: a path into the JSON body (`documents[2].text`), or the name
    /// of a query parameter or form part.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl FieldError {
    /// Every error as `field: message`, joined, for a problem's `detail`.
    fn summary(errors: &[FieldError]) -> String {
        errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// An uploaded file refused, and why.
#[derive(Debug, Clone)]
pub struct FileRefusal {
    /// Which part of the request (`files[2]`).
    pub field: String,
    /// The file's name as uploaded.
    pub file: String,
    /// Why.
    pub refusal: analyzer_extract::Refusal,
}

impl FileRefusal {
    fn summary(refused: &[FileRefusal]) -> String {
        refused
            .iter()
            .map(|r| format!("{} ({}): {}", r.field, r.file, r.refusal))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Collects every invalid field of a request, so that one answer names
/// them all instead of only the first.
#[derive(Debug, Default)]
pub struct Violations(Vec<FieldError>);

impl Violations {
    /// Record that `field` is invalid.
    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    /// The value of `checked`, or `None` with its error recorded against `field`.
    pub fn check<T, E: std::fmt::Display>(
        &mut self,
        field: impl Into<String>,
        checked: Result<T, E>,
    ) -> Option<T> {
        match checked {
            Ok(value) => Some(value),
            Err(e) => {
                self.add(field, e.to_string());
                None
            }
        }
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok` if no field was invalid, else every invalid field.
    pub fn finish(self) -> Result<(), ServiceError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ServiceError::InvalidFields(self.0))
        }
    }
}

impl From<InvalidValue> for ServiceError {
    fn from(e: InvalidValue) -> Self {
        ServiceError::Invalid(e.0)
    }
}

impl From<TenantError> for ServiceError {
    fn from(e: TenantError) -> Self {
        match e {
            TenantError::NotFound => ServiceError::NotFound("tenant not found".into()),
            TenantError::Deleted => ServiceError::Conflict {
                code: "tenant_deleted",
                message: "the tenant was deleted".into(),
            },
            TenantError::Store(e) => ServiceError::Store(e),
        }
    }
}
