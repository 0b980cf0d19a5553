//! Liveness and readiness for the load balancer and operators.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use analyzer_store::Backend;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(super::prometheus::metrics))
}

/// `GET /health` body.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok` while the process can serve.
    pub status: &'static str,
}

/// Liveness: the process is up and serving.
#[utoipa::path(get, path = "/health", operation_id = "operations_health", tag = "operations",
    responses((status = 200, description = "The process can serve", body = Health)))]
pub(super) async fn health() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// One dependency's state.
#[derive(Debug, Serialize, ToSchema)]
pub struct Check {
    /// `ok`, `degraded` (cache only) or `unavailable`.
    pub status: &'static str,
    /// Which implementation is configured.
    pub backend: String,
}

/// How long each readiness check may take.
const CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(800);

/// A check's outcome within [`CHECK_TIMEOUT`].
async fn bounded<E: std::fmt::Display>(
    check: impl Future<Output = Result<(), E>>,
) -> Result<(), String> {
    match tokio::time::timeout(CHECK_TIMEOUT, check).await {
        Ok(outcome) => outcome.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer within {CHECK_TIMEOUT:?}")),
    }
}

/// `GET /ready` body.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// `ok`; `degraded` when only the cache is down (the service still
    /// answers); `unavailable` when a required dependency is down (503).
    pub status: &'static str,
    /// `database`, `cache`, `vector_store`, `llm`.
    pub checks: BTreeMap<&'static str, Check>,
}

/// Readiness: each configured dependency checked.
#[utoipa::path(get, path = "/ready", operation_id = "operations_ready", tag = "operations",
    responses(
        (status = 200, description = "Every dependency is usable", body = Readiness),
        (status = 503, description = "A dependency is unavailable", body = Readiness)))]
pub(super) async fn ready(State(state): State<AppState>) -> Response {
    // The checks run together, each bounded, so that a backend that does
    // not answer makes the probe answer 503 in time, not time it out.
    let (database, vectors, cache) = tokio::join!(
        bounded(state.db.ping()),
        bounded(state.vectors.health()),
        bounded(state.cache.health()),
    );
    if let Err(e) = &database {
        tracing::warn!(error = %e, "readiness: database unavailable");
    }
    if let Err(e) = &vectors {
        tracing::warn!(error = %e, "readiness: vector store unavailable");
    }
    // The cache is an accelerator: when it is down the service still
    // answers, so it degrades readiness without failing it.
    if let Err(e) = &cache {
        tracing::warn!(error = %e, "readiness: cache degraded");
    }
    let status = |ok: bool| if ok { "ok" } else { "unavailable" };
    let db_backend = match state.db.backend() {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    let all_ok = database.is_ok() && vectors.is_ok();
    let overall = match (all_ok, cache.is_ok()) {
        (false, _) => "unavailable",
        (true, false) => "degraded",
        (true, true) => "ok",
    };
    let checks = BTreeMap::from([
        (
            "database",
            Check {
                status: status(database.is_ok()),
                backend: db_backend.into(),
            },
        ),
        (
            "cache",
            Check {
                status: if cache.is_ok() { "ok" } else { "degraded" },
                backend: state.cache.backend().into(),
            },
        ),
        (
            "vector_store",
            Check {
                status: status(vectors.is_ok()),
                backend: state.vectors.backend(),
            },
        ),
        (
            "llm",
            Check {
                status: "ok",
                backend: state.analyst.model().to_owned(),
            },
        ),
    ]);
    let code = if all_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut response = (
        code,
        Json(Readiness {
            status: overall,
            checks,
        }),
    )
        .into_response();
    if !all_ok {
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from_static(super::error::RETRY_AFTER_SECONDS),
        );
    }
    response
}
