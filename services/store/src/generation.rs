//! The tenant's data generation: bumped by every transaction that writes
//! the tenant's data, so that cache keys carrying it never outlive what
//! they were computed from. Bumping it first also takes the tenant's row
//! lock, which orders the tenant's writes.

use analyzer_domain::tenants::TenantId;

use crate::StoreError;

pub(crate) async fn bump_generation(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    tenant: &TenantId,
) -> Result<(), StoreError> {
    // Every write of a tenant's data begins here, holding its row: a
    // tenant deleted meanwhile gets nothing written again.
    let bumped = sqlx::query(
        "UPDATE tenants SET data_generation = data_generation + 1 \
         WHERE id = $1 AND deleted_at IS NULL",
    )
    .bind(tenant.as_str())
    .execute(&mut **tx)
    .await?;
    if bumped.rows_affected() == 0 {
        return Err(StoreError::TenantDeleted);
    }
    Ok(())
}
