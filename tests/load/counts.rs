//! Calls to the production backends per request: the Redis commands
//! (`INFO commandstats`, which counts each command a script runs too) and
//! the PostgreSQL transactions (`pg_stat_database`; a statement outside a
//! transaction is one) the server makes for one request of a scenario,
//! counted over a sequential pass of requests after the scenario's
//! measurement. The server's background work during the pass (the usage
//! flush every 2 s, the journal sweep every 10 s) is included.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;

use crate::drive::{Call, Plan};

/// Requests of a counting pass.
pub const REQUESTS: u64 = 200;

/// A connection number no load connection has: the pass's own queries and
/// documents.
const CONNECTION: usize = 1_000_000;

/// PostgreSQL flushes a backend's counters when it has been idle this
/// long (`PGSTAT_IDLE_INTERVAL`, 10 s), or at the end of a transaction a
/// second after its last flush: the pass waits this long before it reads
/// them, each time.
const STATS_SETTLE: Duration = Duration::from_secs(11);

/// What is counted: the backends named in the environment.
pub struct Counter {
    redis_url: Option<String>,
    database_url: Option<String>,
}

/// Calls per request of one pass.
pub struct PerRequest {
    /// Redis commands by name, per request.
    pub redis: Option<BTreeMap<String, f64>>,
    /// PostgreSQL transactions per request.
    pub database: Option<f64>,
}

impl PerRequest {
    /// Redis commands per request, all names together.
    pub fn redis_total(&self) -> Option<f64> {
        self.redis.as_ref().map(|by| by.values().sum())
    }
}

impl Counter {
    /// Count the backends of `REDIS_URL` and a PostgreSQL `DATABASE_URL`;
    /// `None` when neither is set (the embedded defaults).
    pub fn from_env() -> Option<Self> {
        let redis_url = std::env::var("REDIS_URL").ok();
        let database_url = std::env::var("DATABASE_URL")
            .ok()
            .filter(|url| url.starts_with("postgres"));
        (redis_url.is_some() || database_url.is_some()).then_some(Self {
            redis_url,
            database_url,
        })
    }

    /// Send `REQUESTS` calls of `plan` one after another through `http` to
    /// `base`, and count what the server asked of its backends.
    pub async fn pass(
        &self,
        http: &reqwest::Client,
        base: &str,
        plan: &Plan,
    ) -> anyhow::Result<PerRequest> {
        // The measurement's last transactions reach the counters late.
        if self.database_url.is_some() {
            tokio::time::sleep(STATS_SETTLE).await;
        }
        let (redis_before, db_before) = (self.redis().await?, self.transactions().await?);
        for n in 0..REQUESTS {
            let call: Call = plan(CONNECTION, n);
            let response = http
                .request(call.method.clone(), format!("{base}{}", call.path))
                .bearer_auth(&*call.token)
                .header("content-type", call.content_type)
                .body(call.body.clone())
                .send()
                .await?;
            let status = response.status();
            response.bytes().await?;
            anyhow::ensure!(
                status.is_success(),
                "counting pass: {} answered {status}",
                call.path
            );
        }
        if self.database_url.is_some() {
            tokio::time::sleep(STATS_SETTLE).await;
        }
        let (redis_after, db_after) = (self.redis().await?, self.transactions().await?);
        let per = |delta: u64| delta as f64 / REQUESTS as f64;
        Ok(PerRequest {
            redis: redis_after.map(|after| {
                let before = redis_before.unwrap_or_default();
                after
                    .into_iter()
                    .filter_map(|(name, calls)| {
                        let delta = calls.saturating_sub(before.get(&name).copied().unwrap_or(0));
                        (delta > 0).then(|| (name, per(delta)))
                    })
                    .collect()
            }),
            database: db_after
                .zip(db_before)
                .map(|(after, before)| per(after.saturating_sub(before))),
        })
    }

    /// Calls of each Redis command so far, from `INFO commandstats` (the
    /// `INFO` of the count itself excluded by name).
    async fn redis(&self) -> anyhow::Result<Option<BTreeMap<String, u64>>> {
        let Some(url) = &self.redis_url else {
            return Ok(None);
        };
        let out = tokio::process::Command::new("redis-cli")
            .args(["-u", url, "INFO", "commandstats"])
            .output()
            .await
            .context("redis-cli (Debian's redis-tools) counts Redis commands")?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut calls = BTreeMap::new();
        for line in text.lines() {
            let Some((name, stats)) = line
                .trim()
                .strip_prefix("cmdstat_")
                .and_then(|l| l.split_once(':'))
            else {
                continue;
            };
            if name == "info" {
                continue;
            }
            if let Some(n) = stats
                .split(',')
                .find_map(|kv| kv.strip_prefix("calls="))
                .and_then(|n| n.parse().ok())
            {
                calls.insert(name.to_owned(), n);
            }
        }
        Ok(Some(calls))
    }

    /// Transactions committed and rolled back in the database so far.
    async fn transactions(&self) -> anyhow::Result<Option<u64>> {
        use sqlx::Connection as _;
        let Some(url) = &self.database_url else {
            return Ok(None);
        };
        let mut conn = sqlx::PgConnection::connect(url).await?;
        let (n,): (i64,) = sqlx::query_as(
            "SELECT (xact_commit + xact_rollback)::BIGINT FROM pg_stat_database \
             WHERE datname = current_database()",
        )
        .fetch_one(&mut conn)
        .await?;
        conn.close().await?;
        Ok(Some(u64::try_from(n).unwrap_or(0)))
    }
}

/// Raw Redis `GET`s at `connections` connections by `redis-benchmark`, on
/// the Redis of `REDIS_URL`, as a line for the report: the floor the
/// production shape's cached search is compared with, in the same run.
pub async fn raw_redis_get(connections: usize) -> Option<String> {
    let url = std::env::var("REDIS_URL").ok()?;
    let requests = (connections * 200).max(100_000).to_string();
    let out = tokio::process::Command::new("redis-benchmark")
        .args([
            "-u",
            &url,
            "-c",
            &connections.to_string(),
            "-n",
            &requests,
            "-t",
            "get",
            "--csv",
        ])
        .output()
        .await
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let fields: Vec<String> = text
        .lines()
        .find(|l| l.starts_with("\"GET\""))?
        .split(',')
        .map(|f| f.trim_matches('"').to_owned())
        .collect();
    // "GET", rps, avg, min, p50, p95, p99, max
    let (rps, p50, p99) = (fields.get(1)?, fields.get(4)?, fields.get(6)?);
    Some(format!(
        "raw Redis GET (redis-benchmark, {connections} connections, {requests} requests): \
         {rps} requests/s, p50 {p50} ms, p99 {p99} ms"
    ))
}
