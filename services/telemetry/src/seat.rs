//! The tenant, tier, route and trace context a task is serving: set for
//! each tenant request, read by the log and span fields, by trace
//! propagation, and by the lanes that schedule the tenant's work.

use std::future::Future;
use std::sync::Arc;

use analyzer_domain::tenants::{TenantId, Tier};

/// The tenant and tier a task is serving.
#[derive(Clone, Debug)]
pub struct Seat {
    pub tenant: TenantId,
    pub tier: Tier,
    /// The matched route template (for span attributes).
    pub route: Arc<str>,
    /// The request's trace context to pass on when spans are not recorded.
    pub trace: Option<Arc<crate::propagation::Passthrough>>,
}

tokio::task_local! {
    static SEAT: Seat;
}

/// Run `f` with its lane work queued as `seat`'s.
pub async fn seated<F: Future>(seat: Seat, f: F) -> F::Output {
    SEAT.scope(seat, f).await
}

/// `f` of the seat being served (`None` outside a tenant's request),
/// without copying it.
pub fn with_seat<R>(f: impl FnOnce(Option<&Seat>) -> R) -> R {
    if SEAT.try_with(|_| ()).is_ok() {
        SEAT.with(|seat| f(Some(seat)))
    } else {
        f(None)
    }
}

/// The tier of the tenant being served, if the task serves one.
pub fn tier() -> Option<Tier> {
    SEAT.try_with(|s| s.tier).ok()
}
