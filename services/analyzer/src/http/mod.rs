//! The HTTP API: the shared state, one router per resource merged here, and
//! the middleware stack (request id, trace span, problem+json, CORS,
//! timeout, body limit; auth on the `/v1` routes).

mod admin;
mod analyze;
mod audit;
mod collections;
mod console;
mod documents;
pub mod error;
mod export;
mod extract;
mod health;
mod keys;
mod limited;
mod me;
mod openapi;
mod prometheus;
mod search;
mod upload;
mod usage;

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use opentelemetry::KeyValue;
use tower::ServiceBuilder;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, OnResponse as _, TraceLayer};
use tracing::{Instrument as _, Level};

use crate::auth::{AuthError, Authenticator, Principal};
use crate::cache::{Cache, CacheStats};
use crate::config::Config;
use crate::search::Retriever;
use crate::usage::{UsageRecorder, metrics};
use analyzer_domain::analyze::Analyst;
use analyzer_domain::embed::Embedder;
use analyzer_domain::tenants::TenantId;
use analyzer_store::Db;
use analyzer_telemetry::{self as telemetry, propagation};
use analyzer_vectors::VectorStore;
use error::{ApiError, Problem};

pub use openapi::ApiDoc;

/// Everything a handler needs. Cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<AppInner>);

/// The parts of [`AppState`].
pub struct AppInner {
    /// Validated configuration.
    pub config: Config,
    /// The relational store.
    pub db: Db,
    /// Token verification and minting.
    pub auth: Authenticator,
    /// Text embedding.
    pub embedder: Arc<dyn Embedder>,
    /// The vector store.
    pub vectors: Arc<dyn VectorStore>,
    /// Answers for `/v1/analyze`.
    pub analyst: Arc<dyn Analyst>,
    /// Usage counters.
    pub usage: UsageRecorder,
    /// The query cache.
    pub cache: Arc<dyn Cache>,
    /// With Redis: the tenants' data generations published there.
    pub generations: Option<Arc<crate::cache::generations::Generations>>,
    /// Cache outcome counters.
    pub cache_stats: Arc<CacheStats>,
    /// Per-tenant request limits.
    pub limiter: Arc<crate::limits::Limiter>,
    /// Reads uploaded files, in child processes.
    pub extractor: crate::uploads::Extractor,
}

impl AppState {
    /// Wrap the parts.
    pub fn new(inner: AppInner) -> Self {
        Self(Arc::new(inner))
    }

    /// A handle that does not keep the state alive (metric callbacks).
    pub fn downgrade(&self) -> std::sync::Weak<AppInner> {
        Arc::downgrade(&self.0)
    }

    /// After a change to the tenant's record has committed: forget its
    /// cached record here, and announce the change to every other task
    /// (PostgreSQL), which then forgets it too.
    pub async fn tenant_changed(&self, tenant: &TenantId) {
        self.auth.invalidate_tenant(tenant);
        if let Err(e) = self.db.announce_tenant(tenant).await {
            tracing::warn!(error = %e, tenant_id = %tenant, "could not announce a tenant's change; other tasks see it when their cached record expires");
        }
    }

    /// After an API key was revoked: the same for the key.
    pub async fn api_key_revoked(&self, id: &str) {
        self.auth.forget_api_key(id);
        if let Err(e) = self.db.announce_api_key(id).await {
            tracing::warn!(error = %e, "could not announce a key's revocation; other tasks see it when their cached key expires");
        }
    }

    /// A retriever over this state's stores, embedder and cache, for a
    /// tenant of `tier` (its cache budget).
    pub fn retriever(&self, tier: analyzer_domain::tenants::Tier) -> Retriever<'_> {
        Retriever {
            db: &self.db,
            generations: self.generations.as_ref(),
            embedder: self.embedder.as_ref(),
            vectors: self.vectors.as_ref(),
            cache: Arc::clone(&self.cache),
            stats: Arc::clone(&self.cache_stats),
            ttl: self.config.cache.ttl,
            usage: &self.usage,
            cache_budget: self.config.tier_limits(tier).query_cache_bytes,
        }
    }
}

impl Deref for AppState {
    type Target = AppInner;

    fn deref(&self) -> &AppInner {
        &self.0
    }
}

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The whole API with its middleware.
pub fn router(state: AppState) -> Router {
    let config = &state.config;
    let authenticated = Router::new()
        .merge(documents::router())
        .merge(collections::router())
        .merge(search::router())
        .merge(analyze::router())
        .merge(usage::router())
        .merge(me::router())
        .merge(admin::router())
        .merge(keys::router())
        .merge(export::router())
        .merge(audit::router())
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate));

    let mut public = Router::new()
        .merge(health::router())
        .merge(openapi::router());
    if config.console {
        public = public.merge(console::router());
    }

    let trace = TraceLayer::new_for_http()
        .make_span_with(|req: &Request| {
            let route = req
                .extensions()
                .get::<MatchedPath>()
                .map_or("unmatched", MatchedPath::as_str);
            let request_id = req
                .headers()
                .get(&X_REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let exported = telemetry::spans_exported();
            let span = tracing::info_span!(
                "request",
                "otel.name" = exported.then(|| format!("{} {route}", req.method())),
                "otel.kind" = "server",
                "otel.status_code" = tracing::field::Empty,
                method = %req.method(),
                route,
                request_id,
                status = tracing::field::Empty,
                trace_id = tracing::field::Empty,
                tenant_id = tracing::field::Empty,
                tier = tracing::field::Empty,
            );
            let trace_id = if exported {
                propagation::continue_trace(&span, req.headers())
            } else {
                req.extensions()
                    .get::<Arc<propagation::Passthrough>>()
                    .map(|t| t.trace_id)
            };
            if let Some(trace_id) = trace_id {
                span.record("trace_id", tracing::field::display(trace_id));
            }
            span
        })
        .on_response(
            |response: &Response, latency: Duration, span: &tracing::Span| {
                span.record("status", response.status().as_u16());
                if response.status().is_server_error() {
                    span.record("otel.status_code", "ERROR");
                }
                DefaultOnResponse::new()
                    .level(Level::INFO)
                    .on_response(response, latency, span);
            },
        );

    Router::new()
        .merge(public)
        .merge(authenticated)
        .fallback(|| async { StatusCode::NOT_FOUND })
        .layer(
            ServiceBuilder::new()
                .layer(middleware::from_fn(measure))
                .layer(SetRequestIdLayer::new(
                    X_REQUEST_ID.clone(),
                    MakeRequestUuid,
                ))
                .layer(PropagateRequestIdLayer::new(X_REQUEST_ID.clone()))
                .layer(trace)
                .layer(middleware::from_fn_with_state(
                    config.limits.max_body_bytes,
                    problems,
                ))
                .layer(cors(&config.cors_origins))
                .layer(middleware::from_fn_with_state(
                    Deadlines {
                        request: config.limits.request_timeout,
                        upload: config.uploads.request_timeout,
                    },
                    deadline,
                ))
                .layer(DefaultBodyLimit::max(config.limits.max_body_bytes))
                .layer(middleware::from_fn_with_state(
                    BodyLimits {
                        json: config.limits.max_body_bytes as u64,
                        upload: config.uploads.max_request_bytes,
                    },
                    limit_body,
                ))
                .layer(catch_panics()),
        )
        .with_state(state)
}

fn cors(origins: &[String]) -> CorsLayer {
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ])
        // What browsers and common client libraries send: `Idempotency-Key`
        // (retrying clients), `Last-Event-ID` (EventSource reconnects),
        // `X-Requested-With` (jQuery, Angular).
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            X_REQUEST_ID.clone(),
            HeaderName::from_static("idempotency-key"),
            HeaderName::from_static("last-event-id"),
            HeaderName::from_static("x-requested-with"),
        ])
        .expose_headers([
            X_REQUEST_ID.clone(),
            header::RETRY_AFTER,
            header::WWW_AUTHENTICATE,
            header::LOCATION,
            HeaderName::from_static("ratelimit-limit"),
            HeaderName::from_static("ratelimit-remaining"),
            HeaderName::from_static("ratelimit-reset"),
        ])
        .max_age(Duration::from_secs(600))
}

/// A handler that panics answers 500 (a problem+json, by [`problems`])
/// instead of dropping the connection; the panic is logged. (A standard
/// tenant's handler runs as a task of its own, whose panic is already a
/// 500: see `lanes::handle`.)
fn catch_panics()
-> tower_http::catch_panic::CatchPanicLayer<fn(Box<dyn std::any::Any + Send>) -> Response> {
    fn answer(panic: Box<dyn std::any::Any + Send>) -> Response {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_owned());
        tracing::error!(panic = %message, "a request's handler panicked");
        StatusCode::INTERNAL_SERVER_ERROR.into_response()
    }
    tower_http::catch_panic::CatchPanicLayer::custom(answer)
}

/// Make every error response a problem+json carrying the request id,
/// including those produced outside handlers (404, 405, timeouts, limits).
async fn problems(State(max_body): State<usize>, req: Request, next: Next) -> Response {
    let request_id = req
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let response = next.run(req).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    // A handler's own JSON error body (such as `/ready`'s checks) is kept.
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json && response.extensions().get::<Problem>().is_none() {
        return response;
    }
    let problem = match response.extensions().get::<Problem>() {
        Some(p) => p.clone(),
        // Only the request timeout answers 503 without a problem of its own.
        None if status == StatusCode::SERVICE_UNAVAILABLE => {
            Problem::new(status, "the request took too long").code("timeout")
        }
        None => Problem::new(
            status,
            match status {
                StatusCode::NOT_FOUND => "no such resource".to_owned(),
                StatusCode::METHOD_NOT_ALLOWED => "method not allowed on this resource".to_owned(),
                StatusCode::PAYLOAD_TOO_LARGE => {
                    format!("request body larger than {max_body} bytes")
                }
                s if s.is_server_error() => "internal error".to_owned(),
                s => s.canonical_reason().unwrap_or("error").to_owned(),
            },
        ),
    };
    let (mut parts, _) = response.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    let rendered = problem.into_response_with_id(&request_id);
    let (new_parts, body) = rendered.into_parts();
    for (name, value) in &new_parts.headers {
        parts.headers.insert(name.clone(), value.clone());
    }
    Response::from_parts(parts, body)
}

/// Most bytes of an oversized body read and thrown away before answering
/// 413. Answering without reading makes the kernel reset the connection
/// when it closes with unread data, and many clients then lose the 413.
const OVERSIZED_DRAIN_BYTES: u64 = 16 * 1024 * 1024;

/// The largest body of a request: a multipart upload's, or any other's.
#[derive(Debug, Clone, Copy)]
struct BodyLimits {
    json: u64,
    upload: u64,
}

/// How long a request may take: a file upload's transfer and extraction
/// may take longer than any other request.
#[derive(Debug, Clone, Copy)]
struct Deadlines {
    request: Duration,
    upload: Duration,
}

/// Answer 503 (a `timeout` problem, by [`problems`]) when a request runs
/// past its deadline; the handler's work is dropped with it.
async fn deadline(State(deadlines): State<Deadlines>, req: Request, next: Next) -> Response {
    let limit = if upload::is_multipart(req.headers()) {
        deadlines.upload
    } else {
        deadlines.request
    };
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

/// Refuse a body whose declared length is over the limit with a 413 the
/// client can read. Bodies without a length are bounded by the extractors
/// (`DefaultBodyLimit`) and, for uploads, by the multipart reader.
async fn limit_body(State(limits): State<BodyLimits>, req: Request, next: Next) -> Response {
    let max_body = if upload::is_multipart(req.headers()) {
        limits.upload
    } else {
        limits.json
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let Some(length) = declared.filter(|&len| len > max_body) else {
        return next.run(req).await;
    };
    let too_large = ApiError::BadRequest {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        code: "payload_too_large",
        detail: format!("request body is {length} bytes; the limit is {max_body}"),
    };
    if length <= max_body + OVERSIZED_DRAIN_BYTES {
        use futures::StreamExt as _;
        let mut body = req.into_body().into_data_stream();
        let drain = async { while let Some(Ok(_)) = body.next().await {} };
        let _ = tokio::time::timeout(Duration::from_secs(10), drain).await;
    }
    too_large.into_response()
}

/// The tier label of a request's metrics, set on its response once the
/// caller is known: `premium`, `standard`, `admin`; `none` when unknown.
#[derive(Debug, Clone, Copy)]
struct TierLabel(&'static str);

/// Count and time every request (`analyzer_http_*`), by route, method,
/// status and tier, and keep the in-flight gauge. When spans are not
/// exported, also attach the request's trace context, passed on as it
/// came (or a new trace), for the logs and the calls downstream.
async fn measure(mut req: Request, next: Next) -> Response {
    let began = std::time::Instant::now();
    if !telemetry::spans_exported() {
        let trace = Arc::new(propagation::Passthrough::from_headers(req.headers()));
        req.extensions_mut().insert(trace);
    }
    let route = telemetry::metrics::route_label(
        req.extensions()
            .get::<MatchedPath>()
            .map_or("unmatched", MatchedPath::as_str),
    );
    let method = telemetry::metrics::method_label(req.method());
    let m = telemetry::metrics::metrics();
    m.in_flight.add(1, &[]);
    // Counted down on drop as well: a request whose client went away.
    let _in_flight = scopeguard(|| m.in_flight.add(-1, &[]));
    let response = next.run(req).await;
    let tier = response
        .extensions()
        .get::<TierLabel>()
        .map_or("none", |t| t.0);
    let labels = [
        KeyValue::new("route", opentelemetry::StringValue::from(route)),
        KeyValue::new("method", method),
        KeyValue::new("status", i64::from(response.status().as_u16())),
        KeyValue::new("tier", tier),
    ];
    m.requests.add(1, &labels);
    m.request_duration
        .record(began.elapsed().as_secs_f64(), &labels);
    response
}

/// Runs `f` when dropped.
fn scopeguard<F: FnOnce()>(f: F) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}

/// The outcome label of a token check.
fn validation_outcome(result: &Result<Principal, AuthError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(AuthError::Missing) => "missing",
        Err(AuthError::Expired) => "expired",
        Err(AuthError::Invalid(_)) => "invalid",
        Err(AuthError::UnknownTenant) => "unknown_tenant",
        Err(AuthError::Suspended) => "suspended",
        Err(AuthError::Forbidden(_)) => "forbidden",
        Err(AuthError::KeysUnavailable(_)) => "keys_unavailable",
        Err(AuthError::Store(_)) => "error",
    }
}

/// Resolve the bearer token into a [`Principal`] for the `/v1` routes.
async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let span = tracing::info_span!(
        "auth",
        route = req
            .extensions()
            .get::<MatchedPath>()
            .map_or("unmatched", MatchedPath::as_str),
        outcome = tracing::field::Empty,
        tenant_id = tracing::field::Empty,
        tier = tracing::field::Empty,
    );
    // Owned: the request body is not `Sync`, so the future may not borrow it.
    let token = bearer(&req).map(str::to_owned);
    let checked = async {
        let token = token?;
        state.auth.authenticate(&state.db, &token).await
    }
    .instrument(span.clone())
    .await;
    let outcome = validation_outcome(&checked);
    span.record("outcome", outcome);
    telemetry::metrics::metrics()
        .token_validations
        .add(1, &[KeyValue::new("outcome", outcome)]);
    let principal = match checked {
        Ok(p) => p,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let admin = match &principal {
        Principal::Admin { subject } => Some(subject.clone()),
        Principal::Tenant(_) => None,
    };
    let tenant = match &principal {
        Principal::Tenant(tenant) => {
            for span in [&tracing::Span::current(), &span] {
                span.record("tenant_id", tenant.id.as_str());
                span.record("tier", tenant.tier.as_str());
            }
            state.usage.add(&tenant.id, metrics::API_CALLS, 1);
            Some(tenant.clone())
        }
        Principal::Admin { .. } => None,
    };
    req.extensions_mut().insert(principal);
    let (mut response, tier) = match tenant {
        Some(tenant) => (
            limited::enforce(&state, &tenant, req, next).await,
            tenant.tier.as_str(),
        ),
        None => (
            audit::audited(&state, admin.unwrap_or_default(), req, next).await,
            "admin",
        ),
    };
    response.extensions_mut().insert(TierLabel(tier));
    response
}

fn bearer(req: &Request) -> Result<&str, AuthError> {
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or(AuthError::Missing)?
        .to_str()
        .map_err(|_| AuthError::Invalid("malformed Authorization header"))?;
    let (scheme, token) = value.split_once(' ').ok_or(AuthError::Invalid(
        "expected `Authorization: Bearer <token>`",
    ))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(AuthError::Invalid(
            "expected `Authorization: Bearer <token>`",
        ));
    }
    Ok(token.trim())
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt as _;

    use super::*;

    #[tokio::test]
    async fn a_panicking_handler_answers_a_problem_with_the_request_id() {
        // The layers of `router` around a handler that panics.
        let app: Router = Router::new()
            .route(
                "/boom",
                get(|| async {
                    if true {
                        panic!("a handler bug");
                    }
                    StatusCode::OK
                }),
            )
            .layer(
                ServiceBuilder::new()
                    .layer(SetRequestIdLayer::new(
                        X_REQUEST_ID.clone(),
                        MakeRequestUuid,
                    ))
                    .layer(middleware::from_fn_with_state(1024usize, problems))
                    .layer(catch_panics()),
            );
        let request = Request::builder()
            .uri("/boom")
            .header("x-request-id", "req-boom")
            .body(Body::empty())
            .expect("a request");
        let response = app.oneshot(request).await.expect("an answer, not a reset");
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            response
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
            Some("application/problem+json")
        );
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        let problem: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(problem["request_id"], "req-boom");
        assert_eq!(problem["status"], 500);
    }
}
