//! `/openapi.json`: the OpenAPI 3.1 description, generated from the handlers
//! and types with utoipa, so it cannot drift from the code; then
//! [`finish`] adds what the middleware does for every route alike (the
//! errors it answers, as problem+json, and the headers it sets), which no
//! handler declares.

use std::sync::OnceLock;

use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Map, Value, json};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::AppState;

/// The API description, as generated from the handlers.
#[derive(OpenApi)]
#[openapi(
    info(title = "analyzer", description = "Multi-tenant AI analyzer: ingest, search and analyze documents."),
    paths(
        super::health::health,
        super::health::ready,
        super::prometheus::metrics,
        super::documents::list,
        super::documents::ingest,
        super::documents::read,
        super::documents::update_metadata,
        super::documents::remove,
        super::collections::list,
        super::collections::create,
        super::collections::remove,
        super::search::search,
        super::analyze::analyze,
        super::usage::usage,
        super::usage::history,
        super::me::me,
        super::admin::create,
        super::admin::list,
        super::admin::read,
        super::admin::update,
        super::admin::offboard,
        super::admin::mint,
        super::admin::revoke_tokens,
        super::export::own,
        super::export::admin,
        super::keys::create,
        super::keys::list,
        super::keys::revoke,
        super::admin::usage_report,
        super::audit::read,
    ),
    components(schemas(
        super::error::Problem,
        super::analyze::CitationsEvent,
        super::analyze::DeltaEvent,
        super::analyze::DoneEvent,
    )),
    modifiers(&BearerAuth),
    tags(
        (name = "documents", description = "Ingest, list, read, update and delete documents; collections"),
        (name = "search", description = "Similarity search"),
        (name = "analyze", description = "Answers with citations"),
        (name = "usage", description = "Who the caller is, its tier, limits and usage"),
        (name = "admin", description = "Tenant management (admin tokens)"),
        (name = "operations", description = "Health and readiness"),
    )
)]
pub struct ApiDoc;

impl ApiDoc {
    /// The description as served: generated, then [`finish`]ed.
    pub fn served() -> &'static Value {
        static SPEC: OnceLock<Value> = OnceLock::new();
        SPEC.get_or_init(|| {
            let generated = serde_json::to_value(Self::openapi()).unwrap_or(Value::Null);
            finish(generated)
        })
    }
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/openapi.json", get(|| async { Json(ApiDoc::served()) }))
}

/// Who may call an operation, which decides the errors the middleware
/// can answer it with.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Caller {
    /// No credential (health, readiness, metrics).
    Anyone,
    /// An admin token.
    Admin,
    /// A tenant's credential: also rate and concurrency limited.
    Tenant,
}

/// The errors every operation of a kind can answer, beside its own: the
/// authentication middleware's, the limiter's, the body and query
/// extractors', the timeout's and the panic guard's.
fn common_errors(caller: Caller, has_body: bool, has_query: bool) -> Vec<(u16, &'static str)> {
    let mut errors = Vec::new();
    if has_body || has_query {
        errors.push((
            400,
            "Malformed input (`malformed_json`, `validation_failed`: `errors` names every invalid field); nothing changed",
        ));
    }
    if caller != Caller::Anyone {
        errors.push((
            401,
            "No valid credential (`token_missing`, `token_expired`, `token_invalid`, `tenant_unknown`)",
        ));
        errors.push((
            403,
            "Not allowed (`forbidden`: the wrong kind of token; `tenant_suspended`)",
        ));
    }
    if has_body {
        errors.push((
            413,
            "Body over the size limit (`payload_too_large`); nothing changed",
        ));
        errors.push((
            415,
            "Body not `application/json` (`unsupported_media_type`)",
        ));
    }
    if caller == Caller::Tenant {
        errors.push((
            429,
            "Over the tier's requests per minute (`rate_limited`) or concurrent requests (`concurrency_limited`); `Retry-After` says when to retry",
        ));
    }
    errors.push((
        500,
        "A bug (`internal`); the request id finds it in the logs",
    ));
    if caller != Caller::Anyone {
        errors.push((
            503,
            "A dependency is unavailable (`unavailable`, `circuit_open`) or the request took too long (`timeout`); retry after `Retry-After`",
        ));
    }
    errors
}

/// Headers the description declares, by name.
fn header_components() -> Value {
    let integer = |description: &str| json!({"description": description, "schema": {"type": "integer", "minimum": 0}});
    json!({
        "x-request-id": {
            "description": "The request's id: the client's own if it sent one, else a new UUID. Problems carry it as `request_id`.",
            "schema": {"type": "string"}
        },
        "RateLimit-Limit": integer("Requests per minute the tenant's tier allows."),
        "RateLimit-Remaining": integer("Requests left in the current window."),
        "RateLimit-Reset": integer("Seconds until the window has room again."),
        "Retry-After": integer("Seconds to wait before retrying."),
        "WWW-Authenticate": {
            "description": "`Bearer realm=\"analyzer\"`.",
            "schema": {"type": "string"}
        },
        "Location": {
            "description": "The URL of what was created.",
            "schema": {"type": "string"}
        }
    })
}

fn header_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/headers/{name}")})
}

/// Add to the generated description what the middleware does for every
/// route: the errors each can answer (problem+json, with their codes),
/// the headers of every response, and the event stream of `/v1/analyze`.
fn finish(mut spec: Value) -> Value {
    let problem = json!({
        "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
    });
    if let Some(paths) = spec.get_mut("paths").and_then(Value::as_object_mut) {
        for (path, item) in paths.iter_mut() {
            let Some(item) = item.as_object_mut() else {
                continue;
            };
            for (method, operation) in item.iter_mut() {
                let caller = if operation.get("security").is_none() {
                    Caller::Anyone
                } else if path.starts_with("/v1/admin") {
                    Caller::Admin
                } else {
                    Caller::Tenant
                };
                finish_operation(operation, caller, &problem);
                if path == "/v1/analyze" && method == "post" {
                    describe_event_stream(operation);
                }
            }
        }
    }
    if let Some(components) = spec.get_mut("components").and_then(Value::as_object_mut) {
        components.insert("headers".to_owned(), header_components());
    }
    spec
}

fn finish_operation(operation: &mut Value, caller: Caller, problem: &Value) {
    let has_body = operation.get("requestBody").is_some();
    let has_query = operation
        .get("parameters")
        .and_then(Value::as_array)
        .is_some_and(|ps| ps.iter().any(|p| p["in"] == "query"));
    let Some(responses) = operation
        .get_mut("responses")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    for (status, description) in common_errors(caller, has_body, has_query) {
        responses
            .entry(status.to_string())
            .or_insert_with(|| json!({"description": description}));
    }
    for (status, response) in responses.iter_mut() {
        let status: u16 = status.parse().unwrap_or(0);
        let Some(response) = response.as_object_mut() else {
            continue;
        };
        let mut headers = vec!["x-request-id"];
        if status >= 400 {
            // A response with a body of its own (`/ready`'s checks) keeps it.
            if !response.contains_key("content") {
                response.insert("content".to_owned(), problem.clone());
            }
            match status {
                401 => headers.push("WWW-Authenticate"),
                429 | 503 => headers.push("Retry-After"),
                _ => {}
            }
        }
        if caller == Caller::Tenant && status != 401 && status != 403 && status != 500 {
            headers.extend(["RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"]);
        }
        if status == 201 {
            headers.push("Location");
        }
        let declared = response
            .entry("headers")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(declared) = declared.as_object_mut() {
            for name in headers {
                declared.insert(name.to_owned(), header_ref(name));
            }
        }
    }
}

/// `/v1/analyze` with `stream: true` answers `text/event-stream`; its
/// events are named in `x-events` with the schema of each one's `data`.
fn describe_event_stream(operation: &mut Value) {
    let Some(content) = operation
        .pointer_mut("/responses/200/content")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    content.insert(
        "text/event-stream".to_owned(),
        json!({
            "schema": {
                "type": "string",
                "description": "Server-sent events, each `data` a JSON object: one `citations` event, then `delta` events whose `text` concatenates to the answer, then `done`; or, when the model fails midway, `error` with a problem."
            },
            "x-events": {
                "citations": {"$ref": "#/components/schemas/CitationsEvent"},
                "delta": {"$ref": "#/components/schemas/DeltaEvent"},
                "done": {"$ref": "#/components/schemas/DoneEvent"},
                "error": {"$ref": "#/components/schemas/Problem"}
            }
        }),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_has_a_unique_id() {
        let spec = ApiDoc::served();
        let mut seen = std::collections::HashSet::new();
        for item in spec["paths"].as_object().expect("paths").values() {
            for operation in item.as_object().expect("path item").values() {
                let id = operation["operationId"].as_str().expect("an operationId");
                assert!(seen.insert(id.to_owned()), "operationId {id} twice");
            }
        }
    }

    #[test]
    fn every_error_is_declared_as_a_problem() {
        let spec = ApiDoc::served();
        let search = &spec["paths"]["/v1/search"]["post"]["responses"];
        for status in ["400", "401", "403", "413", "415", "429", "500", "503"] {
            assert_eq!(
                search[status]["content"]["application/problem+json"]["schema"]["$ref"],
                "#/components/schemas/Problem",
                "{status}"
            );
        }
        assert!(search["429"]["headers"]["Retry-After"].is_object());
        assert!(search["200"]["headers"]["RateLimit-Remaining"].is_object());
        // `/ready`'s 503 keeps its own body: the checks.
        assert!(
            spec["paths"]["/ready"]["get"]["responses"]["503"]["content"]["application/json"]
                .is_object()
        );
        // The admin API is not rate limited per tenant.
        assert!(
            spec["paths"]["/v1/admin/tenants"]["get"]["responses"]
                .get("429")
                .is_none()
        );
    }

    #[test]
    fn query_parameters_are_declared_in_the_query() {
        let spec = ApiDoc::served();
        for (path, method) in [
            ("/v1/admin/usage", "get"),
            ("/v1/documents", "get"),
            ("/v1/usage/history", "get"),
        ] {
            let params = spec["paths"][path][method]["parameters"]
                .as_array()
                .expect("parameters");
            assert!(params.iter().all(|p| p["in"] == "query"), "{path}");
        }
    }
}
