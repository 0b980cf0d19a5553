//! The API error: every failure becomes `application/problem+json` with a
//! safe text for the client; the cause is logged once, here, and never sent.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::AuthError;
use crate::error::ServiceError;
use analyzer_domain::embed::ProviderError;
use analyzer_store::StoreError;

/// An RFC 9457 problem, as sent.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// `about:blank` (RFC 9457): the status and title say what kind of
    /// problem it is; `detail` says what went wrong.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary of the kind.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong with this request.
    pub detail: String,
    /// The request id (also in `x-request-id`).
    pub request_id: String,
}

impl Problem {
    /// A problem with an empty request id (filled in by the middleware).
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            kind: "about:blank".to_owned(),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            request_id: String::new(),
        }
    }

    /// Render with the given request id.
    pub fn into_response_with_id(mut self, request_id: &str) -> Response {
        self.request_id = request_id.to_owned();
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (status, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        response.extensions_mut().insert(self);
        response
    }
}

/// Every error a handler can return.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A domain service failed.
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// Authentication or authorization failed.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// A request that could not be read (bad JSON, wrong content type…).
    #[error("{detail}")]
    BadRequest {
        /// The status to answer with (400, 413, 415…).
        status: StatusCode,
        /// What was wrong.
        detail: String,
    },
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::Service(ServiceError::Store(e))
    }
}

impl From<ProviderError> for ApiError {
    fn from(e: ProviderError) -> Self {
        ApiError::Service(ServiceError::Provider(e))
    }
}

impl From<crate::tenants::TenantError> for ApiError {
    fn from(e: crate::tenants::TenantError) -> Self {
        ApiError::Service(e.into())
    }
}

/// `Retry-After` when the wait is not known (a dependency is down).
pub(super) const RETRY_AFTER_SECONDS: &str = "5";

/// Whole seconds for a header, rounded up.
pub(super) fn whole_seconds(d: std::time::Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// Set `Retry-After` to a known wait: whole seconds, rounded up, at least 1.
pub(super) fn set_retry_after(headers: &mut axum::http::HeaderMap, after: std::time::Duration) {
    headers.insert(
        header::RETRY_AFTER,
        HeaderValue::from(whole_seconds(after).max(1)),
    );
}

/// 503 for a dependency behind an open circuit breaker, with the time
/// until it is tried again as `Retry-After`.
fn unavailable_for(dependency: &str, retry_after: std::time::Duration) -> Response {
    let mut response = Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("{dependency} is unavailable; retry later"),
    )
    .into_response_with_id("");
    set_retry_after(response.headers_mut(), retry_after);
    response
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        use ServiceError as S;
        let (status, detail, retry, bearer) = match &self {
            ApiError::Service(S::Invalid(m)) => (StatusCode::BAD_REQUEST, m.clone(), false, false),
            ApiError::Service(S::TooLarge(m) | S::OverQuota(m)) => {
                (StatusCode::PAYLOAD_TOO_LARGE, m.clone(), false, false)
            }
            ApiError::Service(S::NotFound(m)) => (StatusCode::NOT_FOUND, m.clone(), false, false),
            ApiError::Service(S::Store(StoreError::Unavailable { retry_after })) => {
                return unavailable_for("the database", *retry_after);
            }
            ApiError::Service(S::Store(e)) => {
                tracing::error!(error = %e, "database error");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the database is unavailable; retry later".to_owned(),
                    true,
                    false,
                )
            }
            ApiError::Service(S::Vectors(analyzer_vectors::VectorError::CircuitOpen {
                retry_after,
            })) => {
                return unavailable_for("the vector store", *retry_after);
            }
            ApiError::Service(S::Vectors(e)) => {
                tracing::error!(error = %e, "vector store error");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the vector store is unavailable; retry later".to_owned(),
                    true,
                    false,
                )
            }
            ApiError::Service(S::Provider(e)) => {
                tracing::error!(error = %e, "provider error");
                match e {
                    analyzer_domain::embed::ProviderError::Unavailable(_) => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "the AI provider is unavailable; retry later".to_owned(),
                        true,
                        false,
                    ),
                    analyzer_domain::embed::ProviderError::BadGateway(_) => (
                        StatusCode::BAD_GATEWAY,
                        "the AI provider answered with an error".to_owned(),
                        false,
                        false,
                    ),
                }
            }
            ApiError::Auth(AuthError::Missing) => (
                StatusCode::UNAUTHORIZED,
                "a bearer token is required".to_owned(),
                false,
                true,
            ),
            ApiError::Auth(AuthError::Invalid(m)) => {
                (StatusCode::UNAUTHORIZED, (*m).to_owned(), false, true)
            }
            ApiError::Auth(AuthError::UnknownTenant) => (
                StatusCode::UNAUTHORIZED,
                "the token's tenant does not exist".to_owned(),
                false,
                true,
            ),
            ApiError::Auth(AuthError::Suspended) => (
                StatusCode::FORBIDDEN,
                "the tenant is suspended".to_owned(),
                false,
                false,
            ),
            ApiError::Auth(AuthError::Forbidden(m)) => {
                (StatusCode::FORBIDDEN, (*m).to_owned(), false, false)
            }
            ApiError::Auth(AuthError::KeysUnavailable(e)) => {
                tracing::error!(error = %e, "token keys unavailable");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "token verification keys are unavailable; retry later".to_owned(),
                    true,
                    false,
                )
            }
            ApiError::Auth(AuthError::Store(e)) => {
                tracing::error!(error = %e, "database error during authentication");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the database is unavailable; retry later".to_owned(),
                    true,
                    false,
                )
            }
            ApiError::BadRequest { status, detail } => (*status, detail.clone(), false, false),
        };
        let mut response = Problem::new(status, detail).into_response_with_id("");
        if retry {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECONDS),
            );
        }
        if bearer {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"analyzer\""),
            );
        }
        response
    }
}
