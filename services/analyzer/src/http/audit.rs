//! The audit log of admin actions: every admin request that changes
//! something (and every export) is recorded after it is answered, from
//! what the request and its answer say (route, path, `Location`, status,
//! request id), never from a body: no secret can reach the log. A handler
//! adds what its route does not say with an [`AuditNote`].

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::error::ApiError;
use super::extract::{Admin, ApiQuery};
use crate::documents::{decode_position, encode_position, page_limit};
use crate::error::{ServiceError, Violations};
use analyzer_store::{AuditEntry, AuditFilter, now_millis, rfc3339};

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/v1/admin/audit", get(read))
}

/// What a handler adds to its audit entry: a more precise action, or what
/// changed.
#[derive(Debug, Clone, Default)]
pub(super) struct AuditNote {
    /// Replaces the action the route names (`tenant.suspend` for an update
    /// that suspends).
    pub action: Option<&'static str>,
    /// What changed, without secrets.
    pub detail: Option<String>,
}

/// The action an admin route performs, if it is one that is audited.
fn action(method: &Method, route: &str) -> Option<&'static str> {
    Some(match (method.as_str(), route) {
        ("POST", "/v1/admin/tenants") => "tenant.create",
        ("PATCH", "/v1/admin/tenants/{id}") => "tenant.update",
        ("DELETE", "/v1/admin/tenants/{id}") => "tenant.delete",
        ("POST", "/v1/admin/tenants/{id}/tokens") => "token.mint",
        ("POST", "/v1/admin/tenants/{id}/tokens/revoke") => "tokens.revoke",
        ("POST", "/v1/admin/tenants/{id}/keys") => "key.create",
        ("DELETE", "/v1/admin/tenants/{id}/keys/{key_id}") => "key.revoke",
        ("GET", "/v1/admin/tenants/{id}/export") => "tenant.export",
        ("GET" | "HEAD", _) => return None,
        _ => "admin.other",
    })
}

/// The tenant and the object within it that a path (or a `Location`)
/// names: `/v1/admin/tenants/<tenant>[/keys/<key>]`.
fn targets(path: &str) -> (Option<String>, Option<String>) {
    let mut parts = path
        .strip_prefix("/v1/admin/tenants/")
        .unwrap_or_default()
        .split('/');
    let clean = |s: &str| -> Option<String> {
        let s: String = s.chars().filter(|c| !c.is_control()).take(128).collect();
        (!s.is_empty()).then_some(s)
    };
    let tenant = parts.next().and_then(clean);
    let target = match (parts.next(), parts.next()) {
        (Some("keys"), Some(key)) => clean(key),
        _ => None,
    };
    (tenant, target)
}

/// A new entry's id. Entries are read in `(at, id)` order, and two of one
/// task may share a millisecond: the id starts with this task's sequence,
/// so they keep their order.
fn entry_id() -> String {
    static SEQUENCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQUENCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{seq:016x}-{}", uuid::Uuid::new_v4().simple())
}

/// Run an admin request, then record it if it is an audited action.
pub(super) async fn audited(state: &AppState, actor: String, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let Some(action) = route.as_deref().and_then(|r| action(req.method(), r)) else {
        return next.run(req).await;
    };
    let path = req.uri().path().to_owned();
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .chars()
        .take(128)
        .collect();
    let response = next.run(req).await;
    let status = response.status();
    // A creation names what it made in `Location`.
    let located = response
        .headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (tenant, target) = targets(located.as_deref().unwrap_or(&path));
    let note = response
        .extensions()
        .get::<AuditNote>()
        .cloned()
        .unwrap_or_default();
    let outcome = if status.is_success() {
        "ok".to_owned()
    } else if status.is_client_error() {
        format!("refused {}", status.as_u16())
    } else {
        format!("failed {}", status.as_u16())
    };
    let entry = AuditEntry {
        id: entry_id(),
        at: now_millis(),
        actor,
        action: note.action.unwrap_or(action).to_owned(),
        tenant,
        target,
        request_id,
        outcome,
        detail: note.detail,
    };
    if let Err(e) = state.db.record_audit(&entry).await {
        tracing::error!(error = %e, action = %entry.action, "could not record an admin action in the audit log");
    }
    response
}

/// `GET /v1/admin/audit` query parameters.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Only actions on this tenant.
    pub tenant: Option<String>,
    /// From this time on: a date (`2026-12-01`) or an RFC 3339 time.
    pub from: Option<String>,
    /// Before this time: a date (its whole day included) or an RFC 3339 time.
    pub to: Option<String>,
    /// Entries per page, 1 to 1000 (default 100).
    pub limit: Option<String>,
    /// Where to continue: the `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// One admin action.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditView {
    /// When (RFC 3339).
    pub at: String,
    /// Who: the admin token's subject.
    pub actor: String,
    /// What: `tenant.create`, `tenant.update`, `tenant.suspend`,
    /// `token.mint`, `tokens.revoke`, `key.create`, `key.revoke`,
    /// `tenant.export`, ….
    pub action: String,
    /// The tenant acted on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// The object acted on within it (a key's id).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The request's id.
    pub request_id: String,
    /// `ok`, `refused <status>` or `failed <status>`.
    pub outcome: String,
    /// What changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A page of the audit log.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    /// Newest first.
    pub entries: Vec<AuditView>,
    /// Pass as `cursor` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// A time bound: a date (the start of its day, or with `end` the start of
/// the next) or an RFC 3339 time, in Unix milliseconds.
fn time_bound(raw: &str, end: bool) -> Result<i64, String> {
    let raw = raw.trim();
    let (text, day) = if raw.len() == 10 {
        (format!("{raw}T00:00:00Z"), true)
    } else {
        (raw.to_owned(), false)
    };
    let t = humantime::parse_rfc3339_weak(&text)
        .map_err(|_| "must be a date (2026-12-01) or an RFC 3339 time".to_owned())?;
    let millis = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| "must be after 1970".to_owned())?
        .as_millis();
    let millis = i64::try_from(millis).map_err(|_| "is too far ahead".to_owned())?;
    Ok(millis + if day && end { 86_400_000 } else { 0 })
}

/// Admin actions, newest first: who did what to which tenant, when, in
/// which request, with what outcome.
#[utoipa::path(get, path = "/v1/admin/audit", tag = "admin", operation_id = "admin_audit_list",
    security(("bearer" = [])),
    params(AuditQuery),
    responses((status = 200, description = "A page of the audit log", body = AuditPage)))]
pub(super) async fn read(
    State(state): State<AppState>,
    _: Admin,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    let mut found = Violations::default();
    let tenant = query.tenant.and_then(|t| {
        found.check(
            "tenant",
            t.parse::<analyzer_domain::tenants::TenantId>()
                .map(|id| id.to_string())
                .map_err(|e| e.0),
        )
    });
    let from = query
        .from
        .and_then(|f| found.check("from", time_bound(&f, false)));
    let to = query
        .to
        .and_then(|t| found.check("to", time_bound(&t, true)));
    let limit = page_limit(query.limit.as_deref(), &mut found);
    let after = query
        .cursor
        .and_then(|c| found.check("cursor", decode_position(AUDIT, &c)));
    found.finish()?;
    let filter = AuditFilter { tenant, from, to };
    let mut entries = state
        .db
        .audit_entries(&filter, after.as_ref(), limit + 1)
        .await
        .map_err(ServiceError::from)?;
    let more = entries.len() > limit as usize;
    entries.truncate(limit as usize);
    let next_cursor = more
        .then(|| entries.last())
        .flatten()
        .map(|e| encode_position(AUDIT, e.at, &e.id));
    Ok(Json(AuditPage {
        entries: entries
            .into_iter()
            .map(|e| AuditView {
                at: rfc3339(e.at),
                actor: e.actor,
                action: e.action,
                tenant_id: e.tenant,
                target: e.target,
                request_id: e.request_id,
                outcome: e.outcome,
                detail: e.detail,
            })
            .collect(),
        next_cursor,
    }))
}

/// The kind and version of the audit log's cursors.
const AUDIT: &str = "a1";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_or_a_location_names_the_tenant_and_the_key() {
        assert_eq!(
            targets("/v1/admin/tenants/t-1/keys/k-2"),
            (Some("t-1".into()), Some("k-2".into()))
        );
        assert_eq!(
            targets("/v1/admin/tenants/t-1/tokens"),
            (Some("t-1".into()), None)
        );
        assert_eq!(targets("/v1/admin/tenants"), (None, None));
    }

    #[test]
    fn reads_are_not_audited_but_exports_are() {
        assert_eq!(action(&Method::GET, "/v1/admin/tenants"), None);
        assert_eq!(
            action(&Method::GET, "/v1/admin/tenants/{id}/export"),
            Some("tenant.export")
        );
        assert_eq!(
            action(&Method::POST, "/v1/admin/tenants/{id}/keys"),
            Some("key.create")
        );
    }
}
