//! `/openapi.json`: the OpenAPI 3.1 description, generated from the handlers
//! and types with utoipa, so it cannot drift from the code.

use axum::routing::get;
use axum::{Json, Router};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::AppState;

/// The API description.
#[derive(OpenApi)]
#[openapi(
    info(title = "analyzer", description = "Multi-tenant AI analyzer: ingest, search and analyze documents."),
    paths(
        super::health::health,
        super::health::ready,
        super::prometheus::metrics,
        super::documents::ingest,
        super::documents::read,
        super::documents::remove,
        super::search::search,
        super::analyze::analyze,
        super::usage::usage,
        super::admin::create,
        super::admin::list,
        super::admin::read,
        super::admin::update,
        super::admin::mint,
        super::admin::usage_report,
    ),
    components(schemas(super::error::Problem)),
    modifiers(&BearerAuth),
    tags(
        (name = "documents", description = "Ingest, read and delete documents"),
        (name = "search", description = "Similarity search"),
        (name = "analyze", description = "Answers with citations"),
        (name = "usage", description = "Tier, limits and usage"),
        (name = "admin", description = "Tenant management (admin tokens)"),
        (name = "operations", description = "Health and readiness"),
    )
)]
pub struct ApiDoc;

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
    Router::new().route("/openapi.json", get(|| async { Json(ApiDoc::openapi()) }))
}
