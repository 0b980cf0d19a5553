//! The limits one process enforces by itself: with no Redis configured, or
//! at its share while a configured Redis is unreachable.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::{DefaultKeyedRateLimiter, Quota};

use analyzer_domain::tenants::TenantId;

use super::{LimitKind, Permit, RateState, Refusal, WINDOW};

type Keyed = DefaultKeyedRateLimiter<TenantId, StateInformationMiddleware>;

/// One tier's limiter at one budget.
pub(super) struct Local {
    pub(super) rate: Keyed,
    pub(super) per_minute: u32,
    pub(super) concurrency: u32,
}

impl Local {
    pub(super) fn new(per_minute: u32, concurrency: u32) -> Self {
        let per_minute = per_minute.max(1);
        let burst = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
        let interval = WINDOW / per_minute;
        let quota = Quota::with_period(interval)
            .unwrap_or_else(|| Quota::per_minute(burst))
            .allow_burst(burst);
        Self {
            rate: DefaultKeyedRateLimiter::keyed(quota)
                .with_middleware::<StateInformationMiddleware>(),
            per_minute,
            concurrency: concurrency.max(1),
        }
    }

    fn reset_after(&self, remaining: u32) -> Duration {
        WINDOW / self.per_minute * (self.per_minute - remaining.min(self.per_minute))
    }

    pub(super) fn admit(
        &self,
        tenant: &TenantId,
        counter: Arc<AtomicU32>,
    ) -> Result<(Permit, RateState), Refusal> {
        // Take the concurrency slot first, so a refused rate check does not
        // need to give anything back but the slot.
        let in_flight = counter.fetch_add(1, Ordering::AcqRel) + 1;
        let permit = Permit {
            counter,
            lease: None,
        };
        let mut state = RateState {
            limit: self.per_minute,
            remaining: 0,
            reset: Duration::ZERO,
            in_flight,
            concurrency_limit: self.concurrency,
        };
        if in_flight > self.concurrency {
            state.in_flight -= 1;
            return Err(Refusal {
                kind: LimitKind::Concurrency,
                retry_after: Duration::from_secs(1),
                state,
            });
        }
        match self.rate.check_key(tenant) {
            Ok(snapshot) => {
                state.remaining = snapshot.remaining_burst_capacity();
                state.reset = self.reset_after(state.remaining);
                Ok((permit, state))
            }
            Err(not_until) => {
                state.in_flight -= 1;
                state.reset = self.reset_after(0);
                Err(Refusal {
                    kind: LimitKind::Rate,
                    retry_after: not_until.wait_time_from(DefaultClock::default().now()),
                    state,
                })
            }
        }
    }
}
