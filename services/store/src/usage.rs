//! The usage ledger's rows: batches of counts added in one transaction,
//! and the sums a report reads.

use std::collections::HashMap;

use analyzer_domain::tenants::{TenantId, Tier};
use analyzer_domain::usage;
use sqlx::Row as _;

use crate::{Db, StoreError};

/// One tenant's sum of one counter over a period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerRow {
    /// The tenant.
    pub tenant_id: String,
    /// Its name.
    pub name: String,
    /// Its tier now.
    pub tier: Tier,
    /// The counter.
    pub metric: String,
    /// Its sum over the period.
    pub value: i64,
    /// Bytes the tenant stores now (text, vectors and payload).
    pub storage_bytes: i64,
}

impl Db {
    // ---- usage ---------------------------------------------------------

    /// Add a batch of `(tenant, metric) → delta` to the usage counters, in
    /// one transaction.
    pub async fn add_usage_batch(&self, batch: &usage::Pending) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.guarded(async {
            let (_turn, mut tx) = self.begin_write().await?;
            for ((tenant, metric, hour), value) in batch {
                add_usage(&mut tx, tenant, metric, *hour, *value).await?;
            }
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// Every tenant's ledger summed over hours `[from, to)`, and what each
    /// stores now. Tenants with no usage in the period are left out.
    pub async fn usage_report(&self, from: i64, to: i64) -> Result<Vec<LedgerRow>, StoreError> {
        let rows = self
            .guarded(async {
                Ok(sqlx::query(
                    "SELECT l.tenant_id, t.name, t.tier, l.metric, CAST(SUM(l.value) AS BIGINT), \
                    CAST(COALESCE((SELECT SUM(d.byte_size + d.vector_bytes) FROM documents d \
                                   WHERE d.tenant_id = l.tenant_id), 0) AS BIGINT) \
             FROM usage_ledger l JOIN tenants t ON t.id = l.tenant_id \
             WHERE l.hour >= $1 AND l.hour < $2 \
             GROUP BY l.tenant_id, t.name, t.tier, l.metric \
             ORDER BY t.name, l.tenant_id, l.metric",
                )
                .bind(from)
                .bind(to)
                .fetch_all(self.pool())
                .await?)
            })
            .await?;
        rows.iter()
            .map(|row| {
                let tier: String = row.try_get(2)?;
                Ok(LedgerRow {
                    tenant_id: row.try_get(0)?,
                    name: row.try_get(1)?,
                    tier: tier
                        .parse()
                        .map_err(|e| StoreError::Corrupt(format!("tier: {e}")))?,
                    metric: row.try_get(3)?,
                    value: row.try_get(4)?,
                    storage_bytes: row.try_get(5)?,
                })
            })
            .collect()
    }

    /// One tenant's ledger over hours `[from, to)`: `(hour, metric, value)`
    /// by hour, then metric; hours without usage have no rows.
    pub async fn usage_history(
        &self,
        tenant: &TenantId,
        from: i64,
        to: i64,
    ) -> Result<Vec<(i64, String, i64)>, StoreError> {
        let _quota = self.quota().await;
        self.guarded(async {
            let rows = sqlx::query(
                "SELECT hour, metric, value FROM usage_ledger \
                 WHERE tenant_id = $1 AND hour >= $2 AND hour < $3 ORDER BY hour, metric",
            )
            .bind(tenant.as_str())
            .bind(from)
            .bind(to)
            .fetch_all(self.pool())
            .await?;
            rows.iter()
                .map(|row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?)))
                .collect()
        })
        .await
    }

    /// A tenant's usage counters.
    pub async fn usage(&self, tenant: &TenantId) -> Result<HashMap<String, i64>, StoreError> {
        let _quota = self.quota().await;
        self.guarded(async {
            let rows = sqlx::query("SELECT metric, value FROM usage_counters WHERE tenant_id = $1")
                .bind(tenant.as_str())
                .fetch_all(self.pool())
                .await?;
            rows.iter()
                .map(|row| Ok((row.try_get::<String, _>(0)?, row.try_get::<i64, _>(1)?)))
                .collect()
        })
        .await
    }
}

/// Add `value` to the tenant's lifetime total and to its `hour` in the
/// ledger, inside the caller's transaction.
pub(crate) async fn add_usage(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    tenant: &TenantId,
    metric: &str,
    hour: i64,
    value: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO usage_counters (tenant_id, metric, value) VALUES ($1, $2, $3) \
         ON CONFLICT (tenant_id, metric) DO UPDATE SET value = usage_counters.value + excluded.value",
    )
    .bind(tenant.as_str())
    .bind(metric)
    .bind(value)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO usage_ledger (tenant_id, hour, metric, value) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (tenant_id, hour, metric) DO UPDATE SET value = usage_ledger.value + excluded.value",
    )
    .bind(tenant.as_str())
    .bind(hour)
    .bind(metric)
    .bind(value)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
