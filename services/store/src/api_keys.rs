//! Tenants' API keys: stored by the hash of their secret, never the secret.

use analyzer_domain::tenants::TenantId;
use sqlx::Row as _;
use sqlx::any::AnyRow;

use crate::{Db, StoreError, tenant_column};

/// An API key as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// Its public id (part of the key).
    pub id: String,
    /// The tenant it speaks for.
    pub tenant: TenantId,
    /// What its owner called it.
    pub name: String,
    /// The hash of its secret (lower-case hex).
    pub secret_hash: String,
    /// Creation time, Unix milliseconds.
    pub created_at: i64,
    /// When it stops working, Unix milliseconds.
    pub expires_at: Option<i64>,
    /// When it was revoked, Unix milliseconds.
    pub revoked_at: Option<i64>,
    /// When a task last read it to let a request in, Unix milliseconds
    /// (as often as keys are re-read: every few seconds while in use).
    pub last_used_at: Option<i64>,
}

const COLUMNS: &str =
    "id, tenant_id, name, secret_hash, created_at, expires_at, revoked_at, last_used_at";

impl Db {
    /// Store a new key.
    pub async fn insert_api_key(&self, key: &ApiKey) -> Result<(), StoreError> {
        let _quota = self.quota().await;
        self.guarded(async {
            let (_turn, mut tx) = self.begin_write().await?;
            sqlx::query(
                "INSERT INTO api_keys (id, tenant_id, name, secret_hash, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&key.id)
            .bind(key.tenant.as_str())
            .bind(&key.name)
            .bind(&key.secret_hash)
            .bind(key.created_at)
            .bind(key.expires_at)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// One key, by its id.
    pub async fn api_key(&self, id: &str) -> Result<Option<ApiKey>, StoreError> {
        let _quota = self.quota().await;
        self.guarded(async {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM api_keys WHERE id = $1"
            )))
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .map(|row| key_from_row(&row))
            .transpose()
        })
        .await
    }

    /// The tenant's keys, oldest first, revoked ones included.
    pub async fn api_keys(&self, tenant: &TenantId) -> Result<Vec<ApiKey>, StoreError> {
        let _quota = self.quota().await;
        self.guarded(async {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM api_keys WHERE tenant_id = $1 ORDER BY created_at, id"
            )))
            .bind(tenant.as_str())
            .fetch_all(self.pool())
            .await?
            .iter()
            .map(key_from_row)
            .collect()
        })
        .await
    }

    /// Revoke one of the tenant's keys at `now` (a key revoked already
    /// keeps its first revocation time); `false` if the tenant has no
    /// such key.
    pub async fn revoke_api_key(
        &self,
        tenant: &TenantId,
        id: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let _quota = self.quota().await;
        self.guarded(async {
            let (_turn, mut tx) = self.begin_write().await?;
            let found = sqlx::query(
                "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $3) \
                 WHERE tenant_id = $1 AND id = $2",
            )
            .bind(tenant.as_str())
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(found.rows_affected() == 1)
        })
        .await
    }

    /// Note that a key let a request in at `now`.
    pub async fn touch_api_key(&self, id: &str, now: i64) -> Result<(), StoreError> {
        let _quota = self.quota().await;
        self.guarded(async {
            let (_turn, mut tx) = self.begin_write().await?;
            sqlx::query("UPDATE api_keys SET last_used_at = $2 WHERE id = $1")
                .bind(id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }
}

fn key_from_row(row: &AnyRow) -> Result<ApiKey, StoreError> {
    let tenant: String = row.try_get("tenant_id")?;
    Ok(ApiKey {
        id: row.try_get("id")?,
        tenant: tenant_column("api_keys.tenant_id", &tenant)?,
        name: row.try_get("name")?,
        secret_hash: row.try_get("secret_hash")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        revoked_at: row.try_get("revoked_at")?,
        last_used_at: row.try_get("last_used_at")?,
    })
}
