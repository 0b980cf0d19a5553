//! The audit log: one row per admin action, never a secret.

use sqlx::Row as _;

use crate::{Db, ListPosition, StoreError};

/// One admin action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Its id.
    pub id: String,
    /// When, Unix milliseconds.
    pub at: i64,
    /// Who: the admin token's subject.
    pub actor: String,
    /// What (`tenant.create`, `key.revoke`, …).
    pub action: String,
    /// The tenant acted on.
    pub tenant: Option<String>,
    /// The object acted on within it (a key's id).
    pub target: Option<String>,
    /// The request's id.
    pub request_id: String,
    /// `ok`, or `refused <status>` / `failed <status>`.
    pub outcome: String,
    /// What changed, where the action says more than its name.
    pub detail: Option<String>,
}

/// Which entries to read.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only this tenant's.
    pub tenant: Option<String>,
    /// From this time on (Unix milliseconds, included).
    pub from: Option<i64>,
    /// Before this time (Unix milliseconds).
    pub to: Option<i64>,
}

impl Db {
    /// Record an admin action.
    pub async fn record_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        let _quota = self.quota().await;
        self.guarded(async {
            let (_turn, mut tx) = self.begin_write().await?;
            sqlx::query(
                "INSERT INTO audit_log (id, at, actor, action, tenant_id, target, request_id, \
                 outcome, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(&entry.id)
            .bind(entry.at)
            .bind(&entry.actor)
            .bind(&entry.action)
            .bind(entry.tenant.as_deref())
            .bind(entry.target.as_deref())
            .bind(&entry.request_id)
            .bind(&entry.outcome)
            .bind(entry.detail.as_deref())
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// Up to `limit` entries that pass `filter`, newest first, after
    /// `after` (the `(at, id)` of the last one read).
    pub async fn audit_entries(
        &self,
        filter: &AuditFilter,
        after: Option<&ListPosition>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let _quota = self.quota().await;
        self.guarded(async {
            let (at, id) = after.map_or((i64::MAX, ""), |p| (p.created_at, p.id.as_str()));
            // Absent bounds are the widest ones, so one statement serves
            // every filter; an absent tenant matches every row.
            sqlx::query(
                "SELECT id, at, actor, action, tenant_id, target, request_id, outcome, detail \
                 FROM audit_log WHERE ($1 = '' OR tenant_id = $1) AND at >= $2 AND at < $3 \
                 AND (at < $4 OR (at = $4 AND id < $5)) \
                 ORDER BY at DESC, id DESC LIMIT $6",
            )
            .bind(filter.tenant.as_deref().unwrap_or(""))
            .bind(filter.from.unwrap_or(i64::MIN))
            .bind(filter.to.unwrap_or(i64::MAX))
            .bind(at)
            .bind(id)
            .bind(i64::from(limit))
            .fetch_all(self.pool())
            .await?
            .iter()
            .map(|row| {
                Ok(AuditEntry {
                    id: row.try_get(0)?,
                    at: row.try_get(1)?,
                    actor: row.try_get(2)?,
                    action: row.try_get(3)?,
                    tenant: row.try_get(4)?,
                    target: row.try_get(5)?,
                    request_id: row.try_get(6)?,
                    outcome: row.try_get(7)?,
                    detail: row.try_get(8)?,
                })
            })
            .collect()
        })
        .await
    }
}
