//! Redis through fred: short timeouts, reconnection in the background, and
//! each tenant's entries within its budget by a Lua script.

use std::time::Duration;

use analyzer_domain::tenants::TenantId;
use async_trait::async_trait;
use bytes::Bytes;
use fred::prelude::*;

use super::{Cache, CacheError, full_key};

/// Redis through fred, with short timeouts and reconnection in the
/// background: while Redis is slow or down, calls fail fast and the service
/// answers without the cache.
pub struct RedisCache {
    client: Client,
}

impl std::fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCache").finish_non_exhaustive()
    }
}

impl RedisCache {
    /// Build the client and connect, waiting a short, bounded time for the
    /// first connection: a Redis that is down at start does not stop the
    /// service, which keeps reconnecting in the background.
    pub async fn connect(url: &str, timeout: Duration) -> Result<Self, CacheError> {
        let mut config =
            Config::from_url(url).map_err(|e| CacheError(format!("REDIS_URL: {e}")))?;
        // Keep retrying the first connection too, instead of giving up.
        config.fail_fast = false;
        let client = Builder::from_config(config)
            .with_connection_config(|c| {
                c.connection_timeout = timeout;
                c.internal_command_timeout = timeout;
                c.max_command_attempts = 1;
                // Commands issued while disconnected are not queued for later.
                c.max_command_buffer_len = 0;
            })
            .with_performance_config(|p| {
                p.default_command_timeout = timeout;
            })
            .set_policy(ReconnectPolicy::new_exponential(0, 100, 5_000, 2))
            .build()
            .map_err(|e| CacheError(format!("REDIS_URL: {e}")))?;
        let _connection_task = client.connect();
        let first = (timeout * 8).max(Duration::from_secs(1));
        match tokio::time::timeout(first, client.wait_for_connect()).await {
            Ok(Ok(())) => tracing::info!("cache: connected to Redis"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cache: Redis unreachable; serving without it until it returns");
            }
            Err(_) => tracing::warn!(
                "cache: Redis not connected within {first:?}; serving without it until it returns"
            ),
        }
        Ok(Self { client })
    }

    /// The client for one call, failing at once while disconnected (fred
    /// would otherwise wait for a reconnect). Also serves the fleet-wide
    /// limits, which share this connection.
    pub fn fast(&self) -> Result<fred::clients::WithOptions<Client>, CacheError> {
        if !self.client.is_connected() {
            return Err(CacheError("not connected".into()));
        }
        Ok(self.client.with_options(&fred::types::config::Options {
            fail_fast: true,
            ..Default::default()
        }))
    }

    /// For unit tests: a new client of the development Redis (`REDIS_URL`,
    /// else 127.0.0.1:6379) on a connection of its own, so a process of
    /// its own in Redis's eyes; `None` with a note where there is none
    /// (a failure under `CI`).
    #[cfg(test)]
    pub async fn for_tests() -> Option<std::sync::Arc<Self>> {
        let url = std::env::var("REDIS_URL")
            .ok()
            .filter(|u| u.starts_with("redis"))
            .unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned());
        let redis = Self::connect(&url, Duration::from_secs(2))
            .await
            .expect("client");
        if redis.fast().is_err() {
            assert!(std::env::var_os("CI").is_none(), "no Redis at {url}");
            eprintln!("skipped: no Redis at {url}");
            return None;
        }
        Some(std::sync::Arc::new(redis))
    }

    /// Close the connection.
    pub async fn quit(&self) {
        let _ = self.client.quit().await;
    }

    /// Run `script` on `keys` and `args`.
    pub async fn run<R: FromValue>(
        &self,
        script: &Script,
        keys: Vec<String>,
        args: Vec<Value>,
    ) -> Result<R, CacheError> {
        let client = self.fast()?;
        if let Some(sha) = script.sha.get() {
            match client
                .evalsha(sha.as_str(), keys.clone(), args.clone())
                .await
            {
                // Redis restarted (or flushed its scripts): load it again.
                Err(e) if e.details().starts_with("NOSCRIPT") => {}
                answer => return answer.map_err(redis_error),
            }
        }
        let sha: String = client.script_load(script.lua).await.map_err(redis_error)?;
        let _ = script.sha.set(sha.clone());
        client.evalsha(sha, keys, args).await.map_err(redis_error)
    }
}

/// A Lua script, run by its SHA-1 (`EVALSHA`) once Redis has it: `EVAL`
/// sent the script's text with every call (a kilobyte copied per request,
/// and hashed by Redis each time). The SHA-1 is the text's, so it stays
/// valid when Redis restarts; the script is loaded again then.
pub struct Script {
    lua: &'static str,
    sha: std::sync::OnceLock<String>,
}

impl Script {
    /// The script with this text.
    pub const fn new(lua: &'static str) -> Self {
        Self {
            lua,
            sha: std::sync::OnceLock::new(),
        }
    }
}

static PUT: Script = Script::new(PUT_LUA);
static FORGET: Script = Script::new(FORGET_LUA);

fn redis_error(e: fred::error::Error) -> CacheError {
    CacheError(e.to_string())
}

/// Stores one entry within the tenant's budget. KEYS: the entry, the
/// tenant's index (entry key by expiry time), its sizes (entry key to
/// bytes), its byte total; all share the tenant's hash tag. ARGV: value,
/// ttl ms, budget, size. Expired entries leave the books first, then the
/// oldest entries are removed until the new one fits.
pub(super) const PUT_LUA: &str = r"
local ttl = tonumber(ARGV[2])
local budget = tonumber(ARGV[3])
local size = tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local total = tonumber(redis.call('GET', KEYS[4]) or '0')
local function forget(key)
  local s = tonumber(redis.call('HGET', KEYS[3], key) or '0')
  redis.call('HDEL', KEYS[3], key)
  redis.call('ZREM', KEYS[2], key)
  total = total - s
end
for _, key in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)) do
  forget(key)
end
forget(KEYS[1])
while total + size > budget do
  local oldest = redis.call('ZRANGE', KEYS[2], 0, 0)
  if #oldest == 0 then break end
  redis.call('DEL', oldest[1])
  forget(oldest[1])
end
if total < 0 then total = 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
redis.call('ZADD', KEYS[2], now + ttl, KEYS[1])
redis.call('HSET', KEYS[3], KEYS[1], size)
total = total + size
redis.call('SET', KEYS[4], total)
for i = 2, 4 do redis.call('PEXPIRE', KEYS[i], ttl) end
return total
";

/// Remove the tenant's entries whose keys start with ARGV[1], keeping the
/// books (KEYS: index, sizes, total) in step; answers how many went.
pub(super) const FORGET_LUA: &str = r"
local prefix = ARGV[1]
local total = tonumber(redis.call('GET', KEYS[3]) or '0')
local gone = 0
for _, key in ipairs(redis.call('HKEYS', KEYS[2])) do
  if string.sub(key, 1, #prefix) == prefix then
    total = total - tonumber(redis.call('HGET', KEYS[2], key) or '0')
    redis.call('DEL', key)
    redis.call('HDEL', KEYS[2], key)
    redis.call('ZREM', KEYS[1], key)
    gone = gone + 1
  end
end
if total < 0 then total = 0 end
if redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('SET', KEYS[3], total, 'KEEPTTL')
end
return gone
";

/// The tenant's cache books in Redis: index, sizes, total.
pub(super) fn books(tenant: &TenantId) -> [String; 3] {
    ["cache:index", "cache:sizes", "cache:bytes"].map(|name| full_key(tenant, name))
}

#[async_trait]
impl Cache for RedisCache {
    fn backend(&self) -> &'static str {
        "redis"
    }

    async fn get(&self, tenant: &TenantId, key: &str) -> Result<Option<Bytes>, CacheError> {
        self.fast()?
            .get::<Option<Bytes>, _>(full_key(tenant, key))
            .await
            .map_err(redis_error)
    }

    async fn put(
        &self,
        tenant: &TenantId,
        key: &str,
        value: Bytes,
        ttl: Duration,
        budget: u64,
    ) -> Result<(), CacheError> {
        let key = full_key(tenant, key);
        let size = (value.len() + key.len()) as u64;
        if size > budget {
            return Ok(()); // never fits; not an error
        }
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let [index, sizes, total] = books(tenant);
        let _total: i64 = self
            .run(
                &PUT,
                vec![key, index, sizes, total],
                vec![
                    fred::types::Value::Bytes(value),
                    ttl_ms.to_string().into(),
                    budget.to_string().into(),
                    size.to_string().into(),
                ],
            )
            .await?;
        Ok(())
    }

    async fn forget(&self, tenant: &TenantId, prefix: &str) -> Result<u64, CacheError> {
        let [index, sizes, total] = books(tenant);
        let gone: u64 = self
            .run(
                &FORGET,
                vec![index, sizes, total],
                vec![full_key(tenant, prefix).into()],
            )
            .await?;
        Ok(gone)
    }

    async fn used_bytes(&self, tenant: &TenantId) -> Result<u64, CacheError> {
        let [_, _, total] = books(tenant);
        let bytes: Option<u64> = self.fast()?.get(total).await.map_err(redis_error)?;
        Ok(bytes.unwrap_or(0))
    }

    async fn health(&self) -> Result<(), CacheError> {
        self.fast()?.ping::<()>(None).await.map_err(redis_error)
    }

    fn is_up(&self) -> bool {
        self.client.is_connected()
    }
}
