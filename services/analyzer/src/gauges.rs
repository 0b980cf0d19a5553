//! The instruments observed from the application's state at collection
//! time: cache outcomes and health, limit fallbacks, the breakers' states,
//! the embedded store's maintenance and the database pools.

use std::sync::Weak;
use std::sync::atomic::Ordering;

use analyzer_telemetry::metrics::meter;
use opentelemetry::KeyValue;

use crate::http::AppInner;

/// Register the instruments observed from the application's state at
/// collection time: cache outcomes and health, limit fallbacks, the
/// breaker's state, database pools. The state is held weakly: a stopped
/// application reports nothing.
pub fn observe(state: Weak<AppInner>) {
    let meter = meter();
    let s = state.clone();
    meter
        .u64_observable_counter("analyzer_cache_lookups")
        .with_description("Query cache lookups (results and query embeddings) by outcome; bypass means the cache failed and was skipped.")
        .with_callback(move |o| {
            if let Some(state) = s.upgrade() {
                let stats = &state.cache_stats;
                for (outcome, counter) in [
                    ("hit", &stats.hits),
                    ("miss", &stats.misses),
                    ("bypass", &stats.bypassed),
                ] {
                    o.observe(counter.load(Ordering::Relaxed), &[KeyValue::new("outcome", outcome)]);
                }
            }
        })
        .build();
    let s = state.clone();
    meter
        .u64_observable_gauge("analyzer_cache_up")
        .with_description("Whether the query cache is connected (0 while the service bypasses it).")
        .with_callback(move |o| {
            if let Some(state) = s.upgrade() {
                o.observe(
                    u64::from(state.cache.is_up()),
                    &[KeyValue::new("backend", state.cache.backend())],
                );
            }
        })
        .build();
    let s = state.clone();
    meter
        .u64_observable_counter("analyzer_limit_fallbacks")
        .with_description(
            "Limit decisions taken on this task's share because Redis was unreachable.",
        )
        .with_callback(move |o| {
            if let Some(state) = s.upgrade() {
                o.observe(state.limiter.stats.fallbacks.load(Ordering::Relaxed), &[]);
            }
        })
        .build();
    let s = state.clone();
    meter
        .u64_observable_gauge("analyzer_vector_breaker_state")
        .with_description("The vector store circuit breaker's state: 1 for the current one (absent without a breaker).")
        .with_callback(move |o| {
            if let Some(state) = s.upgrade()
                && let Some(current) = state.vectors.breaker_state()
            {
                observe_breaker(o, current);
            }
        })
        .build();
    let s = state.clone();
    meter
        .u64_observable_gauge("analyzer_db_breaker_state")
        .with_description(
            "The database circuit breaker's state: 1 for the current one (PostgreSQL only).",
        )
        .with_callback(move |o| {
            if let Some(state) = s.upgrade()
                && let Some(current) = state.db.breaker_state()
            {
                observe_breaker(o, current);
            }
        })
        .build();
    let s = state.clone();
    meter
        .u64_observable_gauge("analyzer_vector_maintenance_pending")
        .with_description("The embedded vector store: 1 while writes wait for a flush or its segments for the optimizers (HNSW indexing, merges), else 0 (absent with a Qdrant server).")
        .with_callback(move |o| {
            if let Some(state) = s.upgrade()
                && let Some(pending) = state.vectors.maintenance_pending()
            {
                o.observe(u64::from(pending), &[]);
            }
        })
        .build();
    let s = state.clone();
    meter
        .u64_observable_gauge("analyzer_db_pool_connections")
        .with_description("Database pool connections, by pool and state (in_use, idle, max).")
        .with_callback(move |o| {
            if let Some(state) = s.upgrade() {
                for pool in state.db.pool_stats() {
                    let name = KeyValue::new("pool", pool.name);
                    o.observe(
                        u64::from(pool.in_use),
                        &[name.clone(), KeyValue::new("state", "in_use")],
                    );
                    o.observe(
                        u64::from(pool.idle),
                        &[name.clone(), KeyValue::new("state", "idle")],
                    );
                    o.observe(u64::from(pool.max), &[name, KeyValue::new("state", "max")]);
                }
            }
        })
        .build();
}

/// A breaker's state as its gauge shows it: 1 for the current one, 0 for
/// the others.
fn observe_breaker(o: &dyn opentelemetry::metrics::AsyncInstrument<u64>, current: &str) {
    for name in ["closed", "half_open", "open"] {
        o.observe(u64::from(name == current), &[KeyValue::new("state", name)]);
    }
}
