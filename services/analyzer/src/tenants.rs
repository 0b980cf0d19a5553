//! Tenant administration (the admin API and the CLI): create, read, list
//! and change tenants. The tenant types are the domain's
//! ([`analyzer_domain::tenants`]).

use analyzer_domain::tenants::{Tenant, TenantId, TenantName, TenantStatus, Tier};
use analyzer_store::{Db, StoreError};

/// Errors of tenant operations.
#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    /// No tenant with that id.
    #[error("tenant not found")]
    NotFound,
    /// The tenant was deleted: it takes no new credential or change.
    #[error("the tenant was deleted")]
    Deleted,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Create a tenant.
pub async fn create(db: &Db, name: TenantName, tier: Tier) -> Result<Tenant, TenantError> {
    Ok(db
        .insert_tenant(&TenantId::generate(), name.as_str(), tier)
        .await?)
}

/// Read a tenant.
pub async fn get(db: &Db, id: &TenantId) -> Result<Tenant, TenantError> {
    db.tenant(id).await?.ok_or(TenantError::NotFound)
}

/// Read a tenant that was not deleted: one that may get credentials and
/// changes.
pub async fn get_live(db: &Db, id: &TenantId) -> Result<Tenant, TenantError> {
    let tenant = get(db, id).await?;
    if tenant.status == TenantStatus::Deleted {
        return Err(TenantError::Deleted);
    }
    Ok(tenant)
}

/// List all tenants, oldest first.
pub async fn list(db: &Db) -> Result<Vec<Tenant>, TenantError> {
    Ok(db.tenants().await?)
}

/// Change a tenant's tier and/or status.
pub async fn update(
    db: &Db,
    id: &TenantId,
    tier: Option<Tier>,
    status: Option<TenantStatus>,
) -> Result<Tenant, TenantError> {
    get_live(db, id).await?;
    db.update_tenant(id, tier, status)
        .await?
        .ok_or(TenantError::NotFound)
}
