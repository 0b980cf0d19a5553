//! The vector store as the service sees it: every call in a span
//! (`vector.search`, or `store.write` for upserts and deletes) and timed in
//! `analyzer_vector_request_duration_seconds`, failures counted in
//! `analyzer_vector_errors` by kind. Wraps the configured store (the
//! breaker included, so an open circuit counts as `circuit_open`).

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use opentelemetry::KeyValue;
use tracing::Instrument as _;

use serde_json::{Map, Value};

use super::{ChunkHit, ChunkPoint, SearchQuery, VectorError, VectorStore};
use analyzer_domain::tenants::TenantId;
use analyzer_telemetry::metrics::metrics;

/// A measured vector store.
pub struct Metered {
    inner: Arc<dyn VectorStore>,
    /// `edge` or `qdrant`.
    backend: &'static str,
}

impl Metered {
    /// Measure `inner`, labelled `backend`.
    pub fn new(inner: Arc<dyn VectorStore>, backend: &'static str) -> Self {
        Self { inner, backend }
    }

    async fn measured<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<T, VectorError>>,
    ) -> Result<T, VectorError> {
        let began = Instant::now();
        let result = call.await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => {
                let kind = match e {
                    VectorError::Unavailable(_) => "unavailable",
                    VectorError::Internal(_) => "internal",
                    VectorError::CircuitOpen { .. } => "circuit_open",
                };
                metrics().vector_errors.add(
                    1,
                    &[
                        KeyValue::new("backend", self.backend),
                        KeyValue::new("operation", operation),
                        KeyValue::new("kind", kind),
                    ],
                );
                "error"
            }
        };
        metrics().vector_duration.record(
            began.elapsed().as_secs_f64(),
            &[
                KeyValue::new("backend", self.backend),
                KeyValue::new("operation", operation),
                KeyValue::new("outcome", outcome),
            ],
        );
        result
    }
}

#[async_trait]
impl VectorStore for Metered {
    async fn upsert(&self, tenant: &TenantId, points: Vec<ChunkPoint>) -> Result<(), VectorError> {
        let span =
            analyzer_telemetry::op_span!("store.write", store = "vectors", points = points.len());
        self.measured("upsert", self.inner.upsert(tenant, points))
            .instrument(span)
            .await
    }

    async fn delete_revision(
        &self,
        tenant: &TenantId,
        document_id: &str,
        revision: &str,
        count: u32,
    ) -> Result<(), VectorError> {
        let span = analyzer_telemetry::op_span!("store.write", store = "vectors", points = count);
        self.measured(
            "delete",
            self.inner
                .delete_revision(tenant, document_id, revision, count),
        )
        .instrument(span)
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
        let span = analyzer_telemetry::op_span!("store.write", store = "vectors", points = count);
        self.measured(
            "set_payload",
            self.inner
                .set_metadata(tenant, document_id, revision, count, metadata),
        )
        .instrument(span)
        .await
    }

    async fn delete_document(
        &self,
        tenant: &TenantId,
        document_id: &str,
    ) -> Result<(), VectorError> {
        let span = analyzer_telemetry::op_span!("store.write", store = "vectors");
        self.measured("delete", self.inner.delete_document(tenant, document_id))
            .instrument(span)
            .await
    }

    async fn search(
        &self,
        tenant: &TenantId,
        query: SearchQuery,
    ) -> Result<Vec<ChunkHit>, VectorError> {
        let span = analyzer_telemetry::op_span!(
            "vector.search",
            backend = self.backend,
            top_k = query.top_k,
            collection = query.collection.as_str()
        );
        self.measured("search", self.inner.search(tenant, query))
            .instrument(span)
            .await
    }

    async fn snapshot_to(&self, dest: &std::path::Path) -> Result<(), VectorError> {
        self.measured("snapshot", self.inner.snapshot_to(dest))
            .await
    }

    async fn health(&self) -> Result<(), VectorError> {
        self.inner.health().await
    }

    async fn flush(&self) -> Result<(), VectorError> {
        self.inner.flush().await
    }

    fn backend(&self) -> String {
        self.inner.backend()
    }

    fn breaker_state(&self) -> Option<&'static str> {
        self.inner.breaker_state()
    }

    fn maintenance_pending(&self) -> Option<bool> {
        self.inner.maintenance_pending()
    }
}
