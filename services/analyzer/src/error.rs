//! The error type of the domain services. Each variant says what a caller
//! did wrong or which dependency failed; the HTTP layer maps it to a status.

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
    /// The input is larger than allowed (413).
    #[error("{0}")]
    TooLarge(String),
    /// Storing the input would pass one of the tenant's quotas (413).
    #[error("{0}")]
    OverQuota(String),
    /// The thing asked for does not exist for this caller (404).
    #[error("{0}")]
    NotFound(String),
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

impl From<InvalidValue> for ServiceError {
    fn from(e: InvalidValue) -> Self {
        ServiceError::Invalid(e.0)
    }
}

impl From<TenantError> for ServiceError {
    fn from(e: TenantError) -> Self {
        match e {
            TenantError::NotFound => ServiceError::NotFound("tenant not found".into()),
            TenantError::Store(e) => ServiceError::Store(e),
        }
    }
}
