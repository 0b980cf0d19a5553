//! The usage ledger: per-tenant counters, counted in memory on the request
//! path by the hour they happened in and flushed to the store in batches,
//! so a request never waits on a write. A flush adds its batch in one
//! transaction (`value = value + n`), so any number of tasks can flush
//! into one database and the sums stay exact; a flush that fails keeps its
//! counts for the next try; shutdown flushes after the last request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use analyzer_domain::tenants::TenantId;
pub use analyzer_domain::usage::{
    Pending, Period, current_hour, hour_of, hour_rfc3339, metrics, parse_bound,
};
use analyzer_store::{Db, StoreError};

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
        analyzer_telemetry::metrics::llm_usage(
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
        let metric = analyzer_telemetry::metrics::llm_usage;
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
    pub tier: analyzer_domain::tenants::Tier,
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
    pub fn from_rows(period: Period, rows: Vec<analyzer_store::LedgerRow>) -> Self {
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
    fn csv_quotes_what_needs_it_and_defuses_formulas() {
        assert_eq!(csv_field("Acme"), "Acme");
        assert_eq!(csv_field("Acme, Inc."), "\"Acme, Inc.\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=SUM(A1)"), "'=SUM(A1)");
    }
}
