//! Administration of tenants' API keys: create (the key shown once), list
//! (never a secret), revoke.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::api_keys::{display_prefix, generate};
use crate::error::{ServiceError, Violations};
use crate::tenants;
use analyzer_domain::tenants::TenantId;
use analyzer_store::{ApiKey, Db, now_millis, rfc3339};

/// `POST /v1/admin/tenants/{id}/keys` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// What the key is for (1 to 100 characters), e.g. the program using it.
    pub name: String,
    /// When it stops working (RFC 3339, in the future); never if omitted.
    pub expires_at: Option<String>,
}

/// A key as listed: never its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyView {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// How the key starts (`ak_` and its id), to recognise it.
    pub prefix: String,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// When it stops working (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// When it last let a request in (RFC 3339; to within a few seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<String>,
    /// When it was revoked (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
}

impl From<ApiKey> for KeyView {
    fn from(k: ApiKey) -> Self {
        Self {
            prefix: display_prefix(&k.id),
            id: k.id,
            name: k.name,
            created_at: rfc3339(k.created_at),
            expires_at: k.expires_at.map(rfc3339),
            last_used_at: k.last_used_at.map(rfc3339),
            revoked_at: k.revoked_at.map(rfc3339),
        }
    }
}

/// A key just created: the listing's fields and the key itself, shown
/// this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedKey {
    /// The key as listed.
    #[serde(flatten)]
    pub view: KeyView,
    /// The key: `Authorization: Bearer <key>`. It cannot be shown again.
    pub key: String,
}

/// `GET /v1/admin/tenants/{id}/keys` response.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyList {
    /// Oldest first, revoked ones included.
    pub keys: Vec<KeyView>,
}

/// Make a key for an existing tenant.
pub async fn create(
    db: &Db,
    tenant: &TenantId,
    request: CreateKey,
) -> Result<CreatedKey, ServiceError> {
    let mut found = Violations::default();
    let name = request.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        found.add(
            "name",
            "must be 1 to 100 characters without control characters",
        );
    }
    let now = now_millis();
    let expires_at = request.expires_at.and_then(|raw| {
        let parsed = humantime::parse_rfc3339_weak(raw.trim())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .and_then(|d| i64::try_from(d.as_millis()).ok());
        match parsed {
            Some(at) if at > now => Some(at),
            Some(_) => {
                found.add("expires_at", "must be in the future");
                None
            }
            None => {
                found.add("expires_at", "must be an RFC 3339 time");
                None
            }
        }
    });
    found.finish()?;
    tenants::get_live(db, tenant).await?;
    let new = generate();
    let key = ApiKey {
        id: new.id,
        tenant: tenant.clone(),
        name,
        secret_hash: new.secret_hash,
        created_at: now,
        expires_at,
        revoked_at: None,
        last_used_at: None,
    };
    db.insert_api_key(&key).await?;
    Ok(CreatedKey {
        view: KeyView::from(key),
        key: new.key,
    })
}

/// The tenant's keys.
pub async fn list(db: &Db, tenant: &TenantId) -> Result<KeyList, ServiceError> {
    tenants::get(db, tenant).await?;
    let keys = db.api_keys(tenant).await?;
    Ok(KeyList {
        keys: keys.into_iter().map(KeyView::from).collect(),
    })
}

/// Revoke one of the tenant's keys; revoking it again changes nothing.
pub async fn revoke(db: &Db, tenant: &TenantId, id: &str) -> Result<(), ServiceError> {
    if !db.revoke_api_key(tenant, id, now_millis()).await? {
        return Err(ServiceError::NotFound("no such key for this tenant".into()));
    }
    Ok(())
}
