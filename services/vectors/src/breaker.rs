//! The vector store behind a circuit breaker ([`analyzer_runtime::breaker`]):
//! every call has a deadline, and a failed call is retried once, with
//! jitter, while the breaker is closed (every vector-store call is
//! idempotent: point ids are deterministic).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use analyzer_domain::tenants::TenantId;
pub use analyzer_runtime::breaker::{Breaker, BreakerConfig};
use async_trait::async_trait;

use serde_json::{Map, Value};

use super::{ChunkHit, ChunkPoint, SearchQuery, VectorError, VectorStore};

/// Run `call` under `breaker` with its call deadline; a failed call is
/// retried once, with jitter, while the breaker is closed.
pub async fn guarded<T, F, Fut>(breaker: &Breaker, call: F) -> Result<T, VectorError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, VectorError>>,
{
    let mut attempt = 0;
    loop {
        let ticket = breaker
            .acquire()
            .map_err(|retry_after| VectorError::CircuitOpen { retry_after })?;
        let probe = ticket.is_probe();
        let outcome = match tokio::time::timeout(breaker.call_timeout(), call()).await {
            Ok(result) => result,
            Err(_) => Err(VectorError::Unavailable(format!(
                "no answer within {:?}",
                breaker.call_timeout()
            ))),
        };
        breaker.record(ticket, outcome.is_ok());
        match outcome {
            Ok(value) => return Ok(value),
            Err(e) if attempt == 0 && !probe && breaker.state_name() == "closed" => {
                attempt += 1;
                let jitter = rand::random_range(50..=150);
                tracing::debug!(error = %e, "vector store call failed; retrying once");
                tokio::time::sleep(Duration::from_millis(jitter)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// A vector store behind a breaker.
pub struct BreakerStore {
    inner: Arc<dyn VectorStore>,
    breaker: Arc<Breaker>,
}

impl BreakerStore {
    /// Wrap `inner`.
    pub fn new(inner: Arc<dyn VectorStore>, breaker: Arc<Breaker>) -> Self {
        Self { inner, breaker }
    }
}

#[async_trait]
impl VectorStore for BreakerStore {
    async fn upsert(&self, tenant: &TenantId, points: Vec<ChunkPoint>) -> Result<(), VectorError> {
        guarded(&self.breaker, || self.inner.upsert(tenant, points.clone())).await
    }

    async fn delete_revision(
        &self,
        tenant: &TenantId,
        document_id: &str,
        revision: &str,
        count: u32,
    ) -> Result<(), VectorError> {
        guarded(&self.breaker, || {
            self.inner
                .delete_revision(tenant, document_id, revision, count)
        })
        .await
    }

    async fn set_metadata(
        &self,
        tenant: &TenantId,
        document_id: &str,
        revision: &str,
        count: u32,
        metadata: Map<String, Value>,
    ) -> Result<(), VectorError> {
        guarded(&self.breaker, || {
            self.inner
                .set_metadata(tenant, document_id, revision, count, metadata.clone())
        })
        .await
    }

    async fn delete_document(
        &self,
        tenant: &TenantId,
        document_id: &str,
    ) -> Result<(), VectorError> {
        guarded(&self.breaker, || {
            self.inner.delete_document(tenant, document_id)
        })
        .await
    }

    async fn search(
        &self,
        tenant: &TenantId,
        query: SearchQuery,
    ) -> Result<Vec<ChunkHit>, VectorError> {
        guarded(&self.breaker, || self.inner.search(tenant, query.clone())).await
    }

    async fn health(&self) -> Result<(), VectorError> {
        guarded(&self.breaker, || self.inner.health()).await
    }

    async fn flush(&self) -> Result<(), VectorError> {
        self.inner.flush().await
    }

    fn backend(&self) -> String {
        format!(
            "{} (breaker {})",
            self.inner.backend(),
            self.breaker.state_name()
        )
    }

    fn breaker_state(&self) -> Option<&'static str> {
        Some(self.breaker.state_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

    fn breaker() -> Breaker {
        Breaker::new(BreakerConfig {
            failure_threshold: 5,
            open_for: Duration::from_secs(30),
            call_timeout: Duration::from_secs(2),
        })
    }

    fn fail(b: &Breaker) {
        if let Ok(t) = b.acquire() {
            b.record(t, false);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_call_times_out_and_counts_as_a_failure() {
        let b = breaker();
        let calls = AtomicU32::new(0);
        let result: Result<(), VectorError> = guarded(&b, || {
            calls.fetch_add(1, Ordering::SeqCst);
            std::future::pending()
        })
        .await;
        assert!(matches!(result, Err(VectorError::Unavailable(_))));
        assert_eq!(calls.load(Ordering::SeqCst), 2, "retried once");
    }

    #[tokio::test(start_paused = true)]
    async fn while_open_calls_fail_at_once_without_reaching_the_store() {
        let b = breaker();
        for _ in 0..5 {
            fail(&b);
        }
        let reached = AtomicBool::new(false);
        let result: Result<(), VectorError> = guarded(&b, || {
            reached.store(true, Ordering::SeqCst);
            async { Ok(()) }
        })
        .await;
        assert!(matches!(result, Err(VectorError::CircuitOpen { .. })));
        assert!(!reached.load(Ordering::SeqCst));
    }
}
