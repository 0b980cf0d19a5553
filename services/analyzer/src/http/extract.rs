//! Extractors: a JSON body whose rejections are problems too, and the
//! authenticated principal put in the request by the auth middleware.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::auth::{AuthError, Principal};
use analyzer_domain::tenants::Tenant;

/// `axum::Json`, but a malformed body is a problem+json like every error.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

/// The cause in an axum rejection's text, which starts with a generic
/// sentence.
fn cause(text: String) -> String {
    match text.split_once(": ") {
        Some((_, cause)) => cause.to_owned(),
        None => text,
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    use axum::http::StatusCode;
    let (status, code, detail) = match &rejection {
        JsonRejection::MissingJsonContentType(_) => (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "expected a body with `Content-Type: application/json`".to_owned(),
        ),
        JsonRejection::JsonSyntaxError(_) => (
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("malformed JSON: {}", cause(rejection.body_text())),
        ),
        // The contract answers every malformed input with 400, including
        // well-formed JSON of the wrong shape (axum's default is 422).
        JsonRejection::JsonDataError(_) => (
            StatusCode::BAD_REQUEST,
            "validation_failed",
            format!("invalid request body: {}", cause(rejection.body_text())),
        ),
        _ => (rejection.status(), "invalid_request", rejection.body_text()),
    };
    ApiError::BadRequest {
        status,
        code,
        detail,
    }
}

/// `axum::extract::Query`, but a malformed query string is a problem too.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Self(value)),
            Err(rejection) => Err(ApiError::BadRequest {
                status: axum::http::StatusCode::BAD_REQUEST,
                code: "validation_failed",
                detail: format!("invalid query string: {}", cause(rejection.body_text())),
            }),
        }
    }
}

/// The calling tenant; a 403 for an admin token.
#[derive(Debug, Clone)]
pub struct CurrentTenant(pub Tenant);

impl<S: Send + Sync> FromRequestParts<S> for CurrentTenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<Principal>() {
            Some(Principal::Tenant(t)) => Ok(Self(t.clone())),
            Some(Principal::Admin { .. }) => Err(AuthError::Forbidden(
                "this endpoint needs a tenant token; admin tokens reach the admin API only",
            )
            .into()),
            None => Err(AuthError::Missing.into()),
        }
    }
}

/// An admin caller; a 403 for a tenant token.
#[derive(Debug, Clone, Copy)]
pub struct Admin;

impl<S: Send + Sync> FromRequestParts<S> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<Principal>() {
            Some(Principal::Admin { .. }) => Ok(Self),
            Some(Principal::Tenant(_)) => {
                Err(AuthError::Forbidden("the admin scope is required").into())
            }
            None => Err(AuthError::Missing.into()),
        }
    }
}
