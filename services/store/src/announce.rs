//! Changes to credentials announced to every process of the fleet on
//! PostgreSQL (`NOTIFY`), so that a suspended, signed-out or deleted
//! tenant, or a revoked key, is refused by every task at once rather than
//! when its cached record expires. On SQLite there is one server: nothing
//! to announce.
//!
//! A notification can be lost (the announcing task dies between its commit
//! and its `NOTIFY`; a listener's connection drops): the caches' lifetime
//! (`ANALYZER_TENANT_CACHE_MS`) stays the bound then, and a listener that
//! reconnects says so ([`Announced::Missed`]) so that its process drops
//! everything it has cached.

use analyzer_domain::tenants::TenantId;

use crate::{Backend, Db, StoreConfig, StoreError, pools::target};

/// The channel.
const CHANNEL: &str = "analyzer_credentials";

/// What was announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Announced {
    /// The tenant's record changed (tier, status, sign-out, deletion).
    Tenant(TenantId),
    /// The API key with this id was revoked.
    ApiKey(String),
    /// The listener lost its connection: announcements may have been
    /// missed.
    Missed,
}

impl Db {
    /// Tell every process that the tenant's credentials changed (after the
    /// change has committed). Nothing on SQLite.
    pub async fn announce_tenant(&self, tenant: &TenantId) -> Result<(), StoreError> {
        self.announce(format!("tenant:{tenant}")).await
    }

    /// Tell every process that this API key was revoked.
    pub async fn announce_api_key(&self, id: &str) -> Result<(), StoreError> {
        self.announce(format!("key:{id}")).await
    }

    async fn announce(&self, payload: String) -> Result<(), StoreError> {
        if self.backend != Backend::Postgres {
            return Ok(());
        }
        self.guarded(async {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANNEL)
                .bind(payload)
                .execute(self.pool())
                .await?;
            Ok(())
        })
        .await
    }
}

/// A connection listening to announcements (PostgreSQL only).
pub struct Listener(sqlx::postgres::PgListener);

impl Listener {
    /// Listen on the configured PostgreSQL database; `None` on SQLite.
    pub async fn connect(config: &StoreConfig) -> Result<Option<Self>, StoreError> {
        let (url, backend) = target(config);
        if backend != Backend::Postgres {
            return Ok(None);
        }
        let mut listener = sqlx::postgres::PgListener::connect(&url).await?;
        listener.listen(CHANNEL).await?;
        Ok(Some(Self(listener)))
    }

    /// The next announcement. After a lost connection it reconnects (on
    /// this call or the next) and answers [`Announced::Missed`] first.
    pub async fn next(&mut self) -> Result<Announced, StoreError> {
        loop {
            let Some(notification) = self.0.try_recv().await? else {
                return Ok(Announced::Missed);
            };
            let payload = notification.payload();
            if let Some(id) = payload.strip_prefix("tenant:")
                && let Ok(id) = id.parse::<TenantId>()
            {
                return Ok(Announced::Tenant(id));
            }
            if let Some(id) = payload.strip_prefix("key:") {
                return Ok(Announced::ApiKey(id.to_owned()));
            }
            // Someone else's use of the channel: not ours to act on.
        }
    }
}
