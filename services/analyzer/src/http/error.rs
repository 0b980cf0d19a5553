//! The API error: every failure becomes `application/problem+json` with a
//! safe text for the client; the cause is logged once, here, and never sent.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::AuthError;
use crate::error::{FieldError, ServiceError};
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
    /// What kind of problem, for programs: stable, one of the codes listed
    /// in docs/api.md (`validation_failed`, `token_expired`, `rate_limited`…).
    pub code: &'static str,
    /// What went wrong with this request.
    pub detail: String,
    /// For `validation_failed`: every invalid field.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// The request id (also in `x-request-id`).
    pub request_id: String,
}

impl Problem {
    /// A problem with an empty request id (filled in by the middleware)
    /// and the status's general code; [`Problem::code`] makes it precise.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            kind: "about:blank".to_owned(),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            code: status_code(status),
            detail: detail.into(),
            errors: Vec::new(),
            request_id: String::new(),
        }
    }

    /// The same problem with a more precise code.
    pub fn code(mut self, code: &'static str) -> Self {
        self.code = code;
        self
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

/// The code of a problem that has none more precise: one per status.
fn status_code(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "invalid_request",
        401 => "token_invalid",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        409 => "conflict",
        413 => "payload_too_large",
        415 => "unsupported_media_type",
        422 => "unprocessable",
        429 => "rate_limited",
        502 => "bad_gateway",
        503 => "unavailable",
        _ if status.is_client_error() => "invalid_request",
        _ => "internal",
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
        /// The problem's code (`malformed_json`, `payload_too_large`…).
        code: &'static str,
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
    .code("circuit_open")
    .into_response_with_id("");
    set_retry_after(response.headers_mut(), retry_after);
    response
}

/// How an error is answered.
struct Answer {
    status: StatusCode,
    code: &'static str,
    detail: String,
    /// `Retry-After` with the default wait (a dependency failed).
    retry: bool,
    /// `WWW-Authenticate` (the credentials were missing or refused).
    bearer: bool,
}

impl Answer {
    fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
            retry: false,
            bearer: false,
        }
    }

    fn retry(mut self) -> Self {
        self.retry = true;
        self
    }

    fn bearer(mut self) -> Self {
        self.bearer = true;
        self
    }
}

/// A dependency failed: logged with its cause, answered without it.
fn dependency_failed(what: &str, cause: &dyn std::fmt::Display) -> Answer {
    tracing::error!(error = %cause, "{what} error");
    Answer::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        format!("the {what} is unavailable; retry later"),
    )
    .retry()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        use ServiceError as S;
        let mut errors = Vec::new();
        let answer = match self {
            ApiError::Service(S::Invalid(m)) => {
                Answer::new(StatusCode::BAD_REQUEST, "validation_failed", m)
            }
            ApiError::Service(S::InvalidFields(fields)) => {
                let detail = ServiceError::InvalidFields(fields.clone()).to_string();
                errors = fields;
                Answer::new(StatusCode::BAD_REQUEST, "validation_failed", detail)
            }
            ApiError::Service(S::TooLarge(m)) => {
                Answer::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", m)
            }
            ApiError::Service(S::OverQuota(m)) => {
                Answer::new(StatusCode::PAYLOAD_TOO_LARGE, "quota_exceeded", m)
            }
            ApiError::Service(S::NotFound(m)) => Answer::new(StatusCode::NOT_FOUND, "not_found", m),
            ApiError::Service(S::FilesRefused(refused)) => {
                use analyzer_extract::Refusal;
                let detail = ServiceError::FilesRefused(refused.clone()).to_string();
                let (status, code) = match refused.first().map(|r| &r.refusal) {
                    Some(Refusal::Unsupported(_)) => {
                        (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_file")
                    }
                    Some(Refusal::TooLarge(_)) => {
                        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
                    }
                    Some(Refusal::Unreadable(_)) | None => {
                        (StatusCode::UNPROCESSABLE_ENTITY, "unreadable_file")
                    }
                };
                errors = refused
                    .into_iter()
                    .map(|r| FieldError {
                        field: r.field,
                        message: format!("{}: {}", r.file, r.refusal),
                    })
                    .collect();
                Answer::new(status, code, detail)
            }
            ApiError::Service(S::Conflict { code, message }) => {
                Answer::new(StatusCode::CONFLICT, code, message)
            }
            ApiError::Service(S::Store(StoreError::TenantDeleted)) => Answer::new(
                StatusCode::UNAUTHORIZED,
                "tenant_unknown",
                "the tenant was deleted",
            )
            .bearer(),
            ApiError::Service(S::Store(StoreError::Unavailable { retry_after })) => {
                return unavailable_for("the database", retry_after);
            }
            ApiError::Service(S::Store(e)) => dependency_failed("database", &e),
            ApiError::Service(S::Vectors(analyzer_vectors::VectorError::CircuitOpen {
                retry_after,
            })) => {
                return unavailable_for("the vector store", retry_after);
            }
            ApiError::Service(S::Vectors(e)) => dependency_failed("vector store", &e),
            ApiError::Service(S::Provider(e)) => {
                tracing::error!(error = %e, "provider error");
                match e {
                    ProviderError::Unavailable(_) => Answer::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "unavailable",
                        "the AI provider is unavailable; retry later",
                    )
                    .retry(),
                    ProviderError::BadGateway(_) => Answer::new(
                        StatusCode::BAD_GATEWAY,
                        "bad_gateway",
                        "the AI provider answered with an error",
                    ),
                }
            }
            ApiError::Auth(AuthError::Missing) => Answer::new(
                StatusCode::UNAUTHORIZED,
                "token_missing",
                "a bearer token is required",
            )
            .bearer(),
            ApiError::Auth(AuthError::Expired) => {
                Answer::new(StatusCode::UNAUTHORIZED, "token_expired", "token expired").bearer()
            }
            ApiError::Auth(AuthError::Invalid(m)) => {
                Answer::new(StatusCode::UNAUTHORIZED, "token_invalid", m).bearer()
            }
            ApiError::Auth(AuthError::UnknownTenant) => Answer::new(
                StatusCode::UNAUTHORIZED,
                "tenant_unknown",
                "the token's tenant does not exist",
            )
            .bearer(),
            ApiError::Auth(AuthError::Suspended) => Answer::new(
                StatusCode::FORBIDDEN,
                "tenant_suspended",
                "the tenant is suspended",
            ),
            ApiError::Auth(AuthError::Forbidden(m)) => {
                Answer::new(StatusCode::FORBIDDEN, "forbidden", m)
            }
            ApiError::Auth(AuthError::KeysUnavailable(e)) => {
                tracing::error!(error = %e, "token keys unavailable");
                Answer::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "token verification keys are unavailable; retry later",
                )
                .retry()
            }
            ApiError::Auth(AuthError::Store(e)) => {
                dependency_failed("database", &format!("during authentication: {e}"))
            }
            ApiError::BadRequest {
                status,
                code,
                detail,
            } => Answer::new(status, code, detail),
        };
        let mut problem = Problem::new(answer.status, answer.detail).code(answer.code);
        problem.errors = errors;
        let mut response = problem.into_response_with_id("");
        if answer.retry {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECONDS),
            );
        }
        if answer.bearer {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"analyzer\""),
            );
        }
        response
    }
}
