//! Per-tenant usage counters: counted in memory on the request path and
//! flushed to the store in batches, so a request never waits on a write.
//! A flush that fails keeps its counts for the next try; shutdown flushes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
}

type Pending = HashMap<(TenantId, &'static str), i64>;

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
        if let Ok(mut pending) = self.pending.lock() {
            *pending.entry((tenant.clone(), metric)).or_insert(0) += n;
        }
    }

    /// Count an embedding call's tokens and cost.
    pub fn add_embedding(&self, tenant: &TenantId, tokens: u64, cost_micro_usd: u64) {
        if tokens > 0 {
            self.add(tenant, metrics::EMBEDDING_TOKENS, saturating_i64(tokens));
            self.add(
                tenant,
                metrics::COST_MICRO_USD,
                saturating_i64(cost_micro_usd),
            );
        }
    }

    /// Count an LLM call's tokens and cost.
    pub fn add_llm(&self, tenant: &TenantId, prompt: u64, completion: u64, cost_micro_usd: u64) {
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
            for ((t, metric), value) in pending.iter() {
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
