//! The tenant's data generation published in Redis, so that a cached
//! search is answered from Redis alone (one `MGET` of the generation and
//! the entry) and never from a result older than an acknowledged write.
//!
//! A cached search result carries the data generation it was computed at
//! (read from the database before the vectors were searched). It is served
//! only when the generation published in Redis (`{tenant}:gen`) is the
//! same. The rules that make that never stale:
//!
//! - A write withdraws the published generation (`DEL`) after its
//!   transaction and before it is acknowledged (`store::WriteNotice`).
//! - Only a search publishes, and only a value it read from the database
//!   after claiming the key: it sets a claim of its own (`SET NX`, so only
//!   when nothing is published), then reads the database, then replaces
//!   its claim by the value it read, if the claim is still there. A write
//!   in between removes the claim, so the read, possibly from before the
//!   write, is not published; a Redis restart in between removes it too.
//! - So a published value was read after every write whose withdrawal came
//!   before the claim, and every later write withdraws it: once a write is
//!   acknowledged, the published generation is missing or at least the
//!   write's, and no result computed before the write matches it.
//!
//! What the argument assumes, and the bound where it fails: the write's
//! `DEL` reaches Redis and Redis keeps it. If the writing task cannot reach
//! Redis (it logs a warning and acknowledges anyway: the write has
//! committed), or Redis comes back from an older snapshot or a replica that
//! missed the `DEL`, a published generation can outlive a write; it expires
//! [`PUBLISHED_FOR`] after it was published, which bounds the staleness.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use fred::prelude::*;
use fred::types::{Expiration, SetOptions};

use analyzer_domain::tenants::TenantId;
use analyzer_runtime::locked;
use analyzer_store::gate::{current_db_gate, with_db_gate};
use analyzer_store::{Db, SearchContext, StoreError, WriteNotice};
use tokio::sync::oneshot;
use tracing::Instrument as _;

use super::{CacheError, RedisCache, Script, full_key};

/// How long a published generation lives (the staleness bound above).
pub const PUBLISHED_FOR: Duration = Duration::from_secs(10);
/// How long a claim lives if its search never publishes.
const CLAIM_FOR: Duration = Duration::from_secs(2);

/// Replace the claim ARGV[1] by ARGV[2] for ARGV[3] ms, if it is still
/// there. KEYS: the generation.
const PUBLISH_LUA: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
";

static PUBLISH: Script = Script::new(PUBLISH_LUA);

/// What `{tenant}:gen` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// A generation read from the database.
    At(i64),
    /// Nothing (never published, withdrawn by a write, expired) or a
    /// search's claim.
    Unknown,
}

/// The published generations, in the query cache's Redis.
#[derive(Debug)]
pub struct Generations {
    redis: Arc<RedisCache>,
    /// Searches waiting for a tenant's collection's context, by the
    /// collection; see [`Generations::settle`].
    waiting: Mutex<HashMap<(TenantId, String), Waiting>>,
}

/// The searches waiting for one context.
#[derive(Debug, Default)]
struct Waiting {
    searches: Vec<oneshot::Sender<Option<SearchContext>>>,
    /// Whether a task is reading for them.
    reading: bool,
}

fn generation_key(tenant: &TenantId) -> String {
    full_key(tenant, "gen")
}

impl Generations {
    /// Published in `redis`.
    pub fn new(redis: Arc<RedisCache>) -> Self {
        Self {
            redis,
            waiting: Mutex::default(),
        }
    }

    /// The search context of a search that found no generation published:
    /// read from the database after a claim, and published. The searches of
    /// one tenant's collection that ask while none is being read share the
    /// next read (each asked before it began, so it is as recent as one of
    /// their own): after a write, or when a published generation expires,
    /// the searches in flight make one database read per round, not one
    /// each.
    pub async fn settle(
        self: &Arc<Self>,
        db: &Db,
        tenant: &TenantId,
        collection: &str,
    ) -> Result<SearchContext, StoreError> {
        let (sender, receiver) = oneshot::channel();
        let key = (tenant.clone(), collection.to_owned());
        let start = {
            let mut waiting = locked(&self.waiting);
            let entry = waiting.entry(key.clone()).or_default();
            entry.searches.push(sender);
            !std::mem::replace(&mut entry.reading, true)
        };
        if start {
            // The read is the tenant's (every search it serves is): it keeps
            // this search's database gate and span.
            let read = Arc::clone(self)
                .read_for_waiting(db.clone(), key)
                .instrument(tracing::Span::current());
            match current_db_gate() {
                Some(gate) => tokio::spawn(with_db_gate(gate, read)),
                None => tokio::spawn(read),
            };
        }
        match receiver.await {
            Ok(Some(context)) => Ok(context),
            // The shared read failed (or its task is gone): this search
            // reads for itself, and reports its own error.
            _ => db.search_context(tenant, collection).await,
        }
    }

    /// Read for the searches waiting on `key`, round after round, until
    /// none is left.
    async fn read_for_waiting(self: Arc<Self>, db: Db, key: (TenantId, String)) {
        let (tenant, collection) = &key;
        loop {
            let searches = {
                let mut waiting = locked(&self.waiting);
                let Some(entry) = waiting.get_mut(&key) else {
                    return;
                };
                if entry.searches.is_empty() {
                    waiting.remove(&key);
                    return;
                }
                std::mem::take(&mut entry.searches)
            };
            let claim = self.claim(tenant).await.ok().flatten();
            let context = db.search_context(tenant, collection).await.ok();
            if let (Some(claim), Some(context)) = (claim, context)
                && let Err(e) = self.publish(tenant, claim, context.generation).await
            {
                tracing::debug!(error = %e, "generation not published");
            }
            for search in searches {
                let _ = search.send(context);
            }
        }
    }

    /// The published generation and the cache entry under the tenant's
    /// `key`, in one round trip.
    pub async fn lookup(
        &self,
        tenant: &TenantId,
        key: &str,
    ) -> Result<(Published, Option<Bytes>), CacheError> {
        let values: Vec<Option<Bytes>> = self
            .redis
            .fast()?
            .mget(vec![generation_key(tenant), full_key(tenant, key)])
            .await
            .map_err(|e| CacheError(e.to_string()))?;
        let mut values = values.into_iter();
        let published = values
            .next()
            .flatten()
            .and_then(|v| std::str::from_utf8(&v).ok()?.parse().ok())
            .map_or(Published::Unknown, Published::At);
        Ok((published, values.next().flatten()))
    }

    /// Claim the right to publish the tenant's generation, when nothing is
    /// published; the claim to hand to [`Generations::publish`].
    async fn claim(&self, tenant: &TenantId) -> Result<Option<String>, CacheError> {
        let claim = format!("claim:{}", uuid::Uuid::new_v4().simple());
        let set: Option<String> = self
            .redis
            .fast()?
            .set(
                generation_key(tenant),
                claim.as_str(),
                Some(Expiration::PX(millis(CLAIM_FOR))),
                Some(SetOptions::NX),
                false,
            )
            .await
            .map_err(|e| CacheError(e.to_string()))?;
        Ok(set.map(|_| claim))
    }

    /// Publish `generation`, read from the database after `claim` was
    /// taken, if no write or restart has removed the claim since.
    async fn publish(
        &self,
        tenant: &TenantId,
        claim: String,
        generation: i64,
    ) -> Result<bool, CacheError> {
        let published: i64 = self
            .redis
            .run(
                &PUBLISH,
                vec![generation_key(tenant)],
                vec![
                    claim.into(),
                    generation.to_string().into(),
                    millis(PUBLISHED_FOR).to_string().into(),
                ],
            )
            .await?;
        Ok(published == 1)
    }

    async fn withdraw(&self, tenant: &TenantId) -> Result<(), CacheError> {
        self.redis
            .fast()?
            .del::<i64, _>(generation_key(tenant))
            .await
            .map(|_| ())
            .map_err(|e| CacheError(e.to_string()))
    }
}

impl WriteNotice for Generations {
    fn written<'a>(
        &'a self,
        tenant: &'a TenantId,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            if let Err(e) = self.withdraw(tenant).await {
                tracing::warn!(
                    error = %e,
                    tenant_id = %tenant,
                    "could not withdraw a tenant's published generation; other tasks may serve its cached searches for up to {PUBLISHED_FOR:?}"
                );
            }
        })
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A cached search result: the generation it was computed at, then the
/// result.
pub fn tagged(generation: i64, result: &[u8]) -> Bytes {
    let mut entry = Vec::with_capacity(8 + result.len());
    entry.extend_from_slice(&generation.to_le_bytes());
    entry.extend_from_slice(result);
    entry.into()
}

/// The generation and result of a cached entry (None: not a tagged entry).
pub fn untagged(entry: &Bytes) -> Option<(i64, Bytes)> {
    let tag: [u8; 8] = entry.get(..8)?.try_into().ok()?;
    Some((i64::from_le_bytes(tag), entry.slice(8..)))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn generations() -> Option<Generations> {
        Some(Generations::new(RedisCache::for_tests().await?))
    }

    #[tokio::test]
    async fn only_a_claim_no_write_has_removed_is_published() {
        let Some(generations) = generations().await else {
            return;
        };
        let tenant = TenantId::generate();
        let (published, _) = generations.lookup(&tenant, "k").await.expect("lookup");
        assert_eq!(published, Published::Unknown);

        // A write between the claim and the publication: nothing published.
        let claim = generations.claim(&tenant).await.expect("claim");
        let claim = claim.expect("nothing published yet");
        generations.written(&tenant).await;
        assert!(
            !generations
                .publish(&tenant, claim, 1)
                .await
                .expect("publish")
        );
        let (published, _) = generations.lookup(&tenant, "k").await.expect("lookup");
        assert_eq!(published, Published::Unknown);

        // Undisturbed: published, and no second claim while it stands.
        let claim = generations
            .claim(&tenant)
            .await
            .expect("claim")
            .expect("free");
        assert_eq!(
            generations.claim(&tenant).await.expect("claim"),
            None,
            "one claim at a time"
        );
        assert!(
            generations
                .publish(&tenant, claim, 2)
                .await
                .expect("publish")
        );
        let (published, _) = generations.lookup(&tenant, "k").await.expect("lookup");
        assert_eq!(published, Published::At(2));
        assert_eq!(generations.claim(&tenant).await.expect("claim"), None);

        // The next write withdraws it.
        generations.written(&tenant).await;
        let (published, _) = generations.lookup(&tenant, "k").await.expect("lookup");
        assert_eq!(published, Published::Unknown);
    }

    #[test]
    fn a_tagged_entry_gives_back_its_generation_and_result() {
        let entry = tagged(-3, b"[1,2]");
        assert_eq!(untagged(&entry), Some((-3, Bytes::from_static(b"[1,2]"))));
        assert_eq!(untagged(&Bytes::from_static(b"short")), None);
    }
}
