//! Tenants' rows: create, read, list, change.

use std::str::FromStr as _;

use analyzer_domain::tenants::{Tenant, TenantId, TenantStatus, Tier};
use sqlx::Row as _;
use sqlx::any::AnyRow;

use crate::collections::{DEFAULT_COLLECTION, ensure_collection};
use crate::{Db, StoreError, now_millis, rfc3339};

impl Db {
    // ---- tenants -------------------------------------------------------

    /// Insert a new tenant, with its `default` collection.
    pub async fn insert_tenant(
        &self,
        id: &TenantId,
        name: &str,
        tier: Tier,
    ) -> Result<Tenant, StoreError> {
        let now = now_millis();
        self.guarded(async {
            let (_turn, mut tx) = self.begin_write().await?;
            sqlx::query(
                "INSERT INTO tenants (id, name, tier, status, created_at, updated_at) \
                 VALUES ($1, $2, $3, 'active', $4, $4)",
            )
            .bind(id.as_str())
            .bind(name)
            .bind(tier.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?;
            ensure_collection(&mut tx, id, DEFAULT_COLLECTION).await?;
            tx.commit().await?;
            Ok(())
        })
        .await?;
        Ok(Tenant {
            id: id.clone(),
            name: name.to_owned(),
            tier,
            status: TenantStatus::Active,
            created_at: rfc3339(now),
            tokens_valid_after: 0,
        })
    }

    /// Sign a tenant out everywhere: its tokens issued before `at` (Unix
    /// seconds) are refused from now on (a later revocation only moves the
    /// time forward). `false` if there is no such tenant.
    pub async fn revoke_tokens(&self, id: &TenantId, at: u64) -> Result<bool, StoreError> {
        let at = i64::try_from(at).unwrap_or(i64::MAX);
        let _quota = self.quota().await;
        self.guarded(async {
            let (_turn, mut tx) = self.begin_write().await?;
            let found = sqlx::query(
                "UPDATE tenants SET tokens_valid_after = \
                 CASE WHEN tokens_valid_after > $2 THEN tokens_valid_after ELSE $2 END WHERE id = $1",
            )
            .bind(id.as_str())
            .bind(at)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(found.rows_affected() == 1)
        })
        .await
    }

    /// Read one tenant.
    pub async fn tenant(&self, id: &TenantId) -> Result<Option<Tenant>, StoreError> {
        self.guarded(async {
            sqlx::query("SELECT id, name, tier, status, created_at, tokens_valid_after, deleted_at FROM tenants WHERE id = $1")
                .bind(id.as_str())
                .fetch_optional(self.pool())
                .await?
                .map(|row| tenant_from_row(&row))
                .transpose()
        })
        .await
    }

    /// All tenants, oldest first.
    pub async fn tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        self.guarded(async {
            sqlx::query(
                "SELECT id, name, tier, status, created_at, tokens_valid_after, deleted_at FROM tenants ORDER BY created_at, id",
            )
            .fetch_all(self.pool())
            .await?
            .iter()
            .map(tenant_from_row)
            .collect()
        })
        .await
    }

    /// Change tier and/or status; `None` if there is no such tenant.
    pub async fn update_tenant(
        &self,
        id: &TenantId,
        tier: Option<Tier>,
        status: Option<TenantStatus>,
    ) -> Result<Option<Tenant>, StoreError> {
        let turn = self.write_turn().await;
        self.guarded(async {
            sqlx::query(
                "UPDATE tenants SET tier = COALESCE($2, tier), status = COALESCE($3, status), \
                 updated_at = $4 WHERE id = $1",
            )
            .bind(id.as_str())
            .bind(tier.map(Tier::as_str))
            .bind(status.map(TenantStatus::as_str))
            .bind(now_millis())
            .execute(self.pool())
            .await?;
            Ok(())
        })
        .await?;
        drop(turn);
        self.tenant(id).await
    }
}

pub(crate) fn tenant_from_row(row: &AnyRow) -> Result<Tenant, StoreError> {
    let id: String = row.try_get("id")?;
    let tier: String = row.try_get("tier")?;
    let status: String = row.try_get("status")?;
    Ok(Tenant {
        id: TenantId::from_str(&id).map_err(|e| StoreError::Corrupt(e.0))?,
        name: row.try_get("name")?,
        tier: tier
            .parse()
            .map_err(|e: analyzer_domain::tenants::InvalidValue| StoreError::Corrupt(e.0))?,
        status: match row.try_get::<Option<i64>, _>("deleted_at")? {
            Some(_) => TenantStatus::Deleted,
            None => status
                .parse()
                .map_err(|e: analyzer_domain::tenants::InvalidValue| StoreError::Corrupt(e.0))?,
        },
        created_at: rfc3339(row.try_get("created_at")?),
        tokens_valid_after: u64::try_from(row.try_get::<i64, _>("tokens_valid_after")?)
            .unwrap_or(0),
    })
}
