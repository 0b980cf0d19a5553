//! The usage ledger: per-tenant counters, counted in memory on the request
//! path by the hour they happened in and flushed to the store in batches,
//! so a request never waits on a write. A flush adds its batch in one
//! transaction (`value = value + n`), so any number of tasks can flush
//! into one database and the sums stay exact; a flush that fails keeps its
//! counts for the next try; shutdown flushes after the last request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::store::{Db, StoreError};
use crate::tenants::TenantId;

/// Counter names.
pub mod metrics {
    /// Authenticated tenant API calls.
    pub const API_CALLS: &str = "api_calls";
    /// Searches served.
    pub const SEARCHES: &str = "searches";
    /// Analyses served.
    pub const ANALYSES: &str = "analyses";
    /// Tokens billed by the embedding provider.
    pub const EMBEDDING_TOKENS: &str = "embedding_tokens";
    /// Prompt tokens billed by the LLM.
    pub const LLM_PROMPT_TOKENS: &str = "llm_prompt_tokens";
    /// Completion tokens billed by the LLM.
    pub const LLM_COMPLETION_TOKENS: &str = "llm_completion_tokens";
    /// Estimated provider cost, in millionths of a US dollar.
    pub const COST_MICRO_USD: &str = "estimated_cost_micro_usd";
    /// Documents ingested (counted in the ingest's own transaction).
    pub const DOCUMENTS_INGESTED: &str = "documents_ingested";
    /// Chunks ingested (counted in the ingest's own transaction).
    pub const CHUNKS_INGESTED: &str = "chunks_ingested";
    /// Time spent serving the tenant's requests, from admission to the
    /// last byte of the answer, in microseconds.
    pub const COMPUTE_MICROS: &str = "compute_us";

    /// Every counter, in report order.
    pub const ALL: [&str; 10] = [
        API_CALLS,
        SEARCHES,
        ANALYSES,
        DOCUMENTS_INGESTED,
        CHUNKS_INGESTED,
        EMBEDDING_TOKENS,
        LLM_PROMPT_TOKENS,
        LLM_COMPLETION_TOKENS,
        COST_MICRO_USD,
        COMPUTE_MICROS,
    ];
}

/// The ledger's bucket: hours since the Unix epoch, UTC.
pub fn hour_of(t: SystemTime) -> i64 {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    i64::try_from(secs / 3600).unwrap_or(i64::MAX)
}

/// The current hour bucket.
pub fn current_hour() -> i64 {
    hour_of(SystemTime::now())
}

/// Counts waiting for the next flush, by tenant, counter and hour.
pub type Pending = HashMap<(TenantId, &'static str, i64), i64>;

/// The in-memory side of the usage counters.
#[derive(Debug, Clone, Default)]
pub struct UsageRecorder {
    pending: Arc<Mutex<Pending>>,
    // Held while a batch is between memory and the store, so a reader never
    // sees it in neither place.
    flushing: Arc<tokio::sync::Mutex<()>>,
}

impl UsageRecorder {
    /// Count `n` of `metric` for `tenant`.
    pub fn add(&self, tenant: &TenantId, metric: &'static str, n: i64) {
        let hour = current_hour();
        if let Ok(mut pending) = self.pending.lock() {
            *pending.entry((tenant.clone(), metric, hour)).or_insert(0) += n;
        }
    }

    /// Count an embedding call's tokens and cost (in the ledger and in
    /// the per-tenant metrics).
    pub fn add_embedding(&self, tenant: &TenantId, model: &str, tokens: u64, cost_micro_usd: u64) {
        crate::telemetry::metrics::llm_usage(
            tenant.as_str(),
            model,
            "embedding",
            tokens,
            cost_micro_usd,
        );
        if tokens > 0 {
            self.add(tenant, metrics::EMBEDDING_TOKENS, saturating_i64(tokens));
            self.add(
                tenant,
                metrics::COST_MICRO_USD,
                saturating_i64(cost_micro_usd),
            );
        }
    }

    /// Count an LLM call's tokens and cost (in the ledger and in the
    /// per-tenant metrics).
    pub fn add_llm(
        &self,
        tenant: &TenantId,
        model: &str,
        prompt: u64,
        completion: u64,
        cost_micro_usd: u64,
    ) {
        let metric = crate::telemetry::metrics::llm_usage;
        metric(tenant.as_str(), model, "prompt", prompt, cost_micro_usd);
        metric(tenant.as_str(), model, "completion", completion, 0);
        if prompt + completion > 0 {
            self.add(tenant, metrics::LLM_PROMPT_TOKENS, saturating_i64(prompt));
            self.add(
                tenant,
                metrics::LLM_COMPLETION_TOKENS,
                saturating_i64(completion),
            );
            self.add(
                tenant,
                metrics::COST_MICRO_USD,
                saturating_i64(cost_micro_usd),
            );
        }
    }

    /// A tenant's counters: what the store holds plus what is pending.
    pub async fn totals(
        &self,
        db: &Db,
        tenant: &TenantId,
    ) -> Result<HashMap<String, i64>, StoreError> {
        let _flushing = self.flushing.lock().await;
        let mut totals = db.usage(tenant).await?;
        if let Ok(pending) = self.pending.lock() {
            for ((t, metric, _), value) in pending.iter() {
                if t == tenant {
                    *totals.entry((*metric).to_owned()).or_insert(0) += value;
                }
            }
        }
        Ok(totals)
    }

    /// Write what is pending; on failure the counts are put back.
    pub async fn flush(&self, db: &Db) {
        let _flushing = self.flushing.lock().await;
        let batch = match self.pending.lock() {
            Ok(mut pending) => std::mem::take(&mut *pending),
            Err(_) => return,
        };
        if batch.is_empty() {
            return;
        }
        if let Err(e) = db.add_usage_batch(&batch).await {
            tracing::warn!(error = %e, "usage flush failed; will retry");
            if let Ok(mut pending) = self.pending.lock() {
                for (key, value) in batch {
                    *pending.entry(key).or_insert(0) += value;
                }
            }
        }
    }

    /// Flush every `interval` until `stop` resolves, then flush once more.
    pub async fn run(
        self,
        db: Db,
        interval: Duration,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => self.flush(&db).await,
                _ = stop.changed() => break,
            }
        }
        self.flush(&db).await;
    }
}

fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The last hour an RFC 3339 time can name: 9999-12-31T23:00:00Z.
const LATEST_HOUR: i64 = 253_402_300_800 / 3600 - 1;

/// A period of whole hours, `[from, to)`, as the ledger buckets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    /// First hour in the period.
    pub from: i64,
    /// First hour after it.
    pub to: i64,
}

impl Period {
    /// `from` and `to` as dates (`2026-11-01`: `to`'s whole day is in the
    /// period) or RFC 3339 times (`2026-11-01T08:00:00Z`, truncated to the
    /// hour; `to` is the end, not included).
    pub fn parse(from: &str, to: &str) -> Result<Self, String> {
        let hour = |name: &str, value: &str, end: bool| -> Result<i64, String> {
            let value = value.trim();
            let (time, day) = if value.len() == 10 {
                (format!("{value}T00:00:00Z"), true)
            } else {
                (value.to_owned(), false)
            };
            let t = humantime::parse_rfc3339_weak(&time).map_err(|_| {
                format!("{name}: expected a date (2026-11-01) or an RFC 3339 time, got {value:?}")
            })?;
            Ok(hour_of(t) + if day && end { 24 } else { 0 })
        };
        let period = Self {
            from: hour("from", from, false)?,
            to: hour("to", to, true)?,
        };
        // RFC 3339 has four-digit years: a bound past the last hour of
        // 9999 could be parsed but not written back into the report.
        if period.to > LATEST_HOUR {
            return Err("to: the period must end by 9999-12-31T23:00:00Z".to_owned());
        }
        if period.to <= period.from {
            return Err("to: the period ends before it starts".to_owned());
        }
        Ok(period)
    }

    /// The period's bounds as RFC 3339 times.
    pub fn bounds(&self) -> (String, String) {
        let at = |hour: i64| {
            let secs = u64::try_from(hour).unwrap_or(0) * 3600;
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
        };
        (at(self.from), at(self.to))
    }
}

/// Usage per tenant over a period: the cost-allocation report.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Report {
    /// Start of the period (included), RFC 3339.
    pub from: String,
    /// End of the period (not included), RFC 3339.
    pub to: String,
    /// One entry per tenant with usage in the period, by name.
    pub tenants: Vec<TenantUsage>,
}

/// One tenant's usage over the report's period.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct TenantUsage {
    /// The tenant.
    pub tenant_id: String,
    /// Its name.
    pub name: String,
    /// Its tier now.
    pub tier: crate::tenants::Tier,
    /// Each counter's sum over the period (all of them, zeros included):
    /// `api_calls`, `searches`, `analyses`, `documents_ingested`,
    /// `chunks_ingested`, `embedding_tokens`, `llm_prompt_tokens`,
    /// `llm_completion_tokens`, `estimated_cost_micro_usd`, `compute_us`.
    pub counters: std::collections::BTreeMap<String, i64>,
    /// The estimated provider cost over the period, US dollars.
    pub estimated_cost_usd: f64,
    /// Time spent serving its requests, milliseconds.
    pub compute_ms: f64,
    /// Bytes it stores now (text, vectors and payload).
    pub storage_bytes: i64,
}

impl Report {
    /// Gather the ledger's rows for `period` into a report.
    pub fn from_rows(period: Period, rows: Vec<crate::store::LedgerRow>) -> Self {
        let mut tenants: Vec<TenantUsage> = Vec::new();
        for row in rows {
            let fresh = tenants.last().is_none_or(|t| t.tenant_id != row.tenant_id);
            if fresh {
                tenants.push(TenantUsage {
                    tenant_id: row.tenant_id.clone(),
                    name: row.name.clone(),
                    tier: row.tier,
                    counters: metrics::ALL.iter().map(|m| ((*m).to_owned(), 0)).collect(),
                    estimated_cost_usd: 0.0,
                    compute_ms: 0.0,
                    storage_bytes: row.storage_bytes,
                });
            }
            if let Some(tenant) = tenants.last_mut() {
                *tenant.counters.entry(row.metric).or_insert(0) += row.value;
            }
        }
        for tenant in &mut tenants {
            let counter = |name: &str| tenant.counters.get(name).copied().unwrap_or(0) as f64;
            tenant.estimated_cost_usd = counter(metrics::COST_MICRO_USD) / 1e6;
            tenant.compute_ms = counter(metrics::COMPUTE_MICROS) / 1e3;
        }
        let (from, to) = period.bounds();
        Self { from, to, tenants }
    }

    /// The report as CSV: a header line, then one line per tenant.
    pub fn to_csv(&self) -> String {
        let mut out = String::from("tenant_id,name,tier");
        for metric in metrics::ALL {
            out.push(',');
            out.push_str(metric);
        }
        out.push_str(",estimated_cost_usd,compute_ms,storage_bytes\n");
        for t in &self.tenants {
            out.push_str(&format!(
                "{},{},{}",
                csv_field(&t.tenant_id),
                csv_field(&t.name),
                t.tier.as_str()
            ));
            for metric in metrics::ALL {
                let value = t.counters.get(metric).copied().unwrap_or(0);
                out.push_str(&format!(",{value}"));
            }
            out.push_str(&format!(
                ",{:.6},{:.3},{}\n",
                t.estimated_cost_usd, t.compute_ms, t.storage_bytes
            ));
        }
        out
    }
}

/// A CSV field, quoted when it holds a comma, quote or line break (and a
/// leading `=`, `+`, `-` or `@` defused, so a spreadsheet never runs a
/// tenant's name as a formula).
fn csv_field(value: &str) -> String {
    let defused = if value.starts_with(['=', '+', '-', '@']) {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    if defused.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", defused.replace('"', "\"\""))
    } else {
        defused
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_take_dates_whole_and_times_by_the_hour() {
        let p = Period::parse("2026-11-01", "2026-11-01").expect("one day");
        assert_eq!(p.to - p.from, 24);
        assert_eq!(p.bounds().0, "2026-11-01T00:00:00Z");
        assert_eq!(p.bounds().1, "2026-11-02T00:00:00Z");
        let p = Period::parse("2026-11-01T08:30:00Z", "2026-11-01T10:00:00Z").expect("hours");
        assert_eq!(p.to - p.from, 2);
        assert!(Period::parse("2026-11-02", "2026-11-01").is_err());
        let err = Period::parse("yesterday", "2026-11-01").expect_err("bad");
        assert!(err.starts_with("from:"), "{err}");
    }

    #[test]
    fn periods_past_the_year_9999_are_refused_not_a_panic() {
        let err = Period::parse("2026-01-01", "9999-12-31").expect_err("ends in year 10000");
        assert!(err.contains("9999-12-31T23:00:00Z"), "{err}");
        let last = Period::parse("9999-12-30", "9999-12-31T23:00:00Z").expect("the last hour");
        assert_eq!(last.bounds().1, "9999-12-31T23:00:00Z");
        for (from, to) in [("0000-01-01", "2026-01-01"), ("2026-01-01", "99999-01-01")] {
            assert!(Period::parse(from, to).is_err(), "{from}..{to}");
        }
    }

    #[test]
    fn csv_quotes_what_needs_it_and_defuses_formulas() {
        assert_eq!(csv_field("Acme"), "Acme");
        assert_eq!(csv_field("Acme, Inc."), "\"Acme, Inc.\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=SUM(A1)"), "'=SUM(A1)");
    }
}
