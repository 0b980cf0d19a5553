//! A circuit breaker: the state machine shared by the vector store's and
//! the database's breakers.
//!
//! Closed: calls pass; `failure_threshold` consecutive failures open it.
//! Open: calls fail at once with the time left (for `Retry-After`), for
//! `open_for`. Then one probe is let through (half-open): its success
//! closes the breaker, its failure opens it again. What a call is, its
//! deadline and its retry belong to the caller (`analyzer-vectors`'s
//! `BreakerStore`, `analyzer-store`'s guard).
//!
//! Written here rather than taken from a crate: docs/decisions/circuit-breaker.md.

use std::sync::Mutex;
use std::time::Duration;

use analyzer_telemetry::messages::{BREAKER_CLOSED as CLOSED, BREAKER_OPENED as OPENED};
use tokio::time::Instant;

/// Breaker settings.
#[derive(Debug, Clone, Copy)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker.
    pub failure_threshold: u32,
    /// How long it stays open before a probe.
    pub open_for: Duration,
    /// Deadline of each call.
    pub call_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// A probe is out since the instant given (`None`: none yet).
    HalfOpen {
        probe_since: Option<Instant>,
    },
}

/// The breaker's state machine.
#[derive(Debug)]
pub struct Breaker {
    config: BreakerConfig,
    state: Mutex<State>,
    /// The log messages of its transitions (alarms count them).
    messages: (&'static str, &'static str),
}

/// Permission to make one call; report its outcome with [`Breaker::record`].
#[derive(Debug)]
pub struct Ticket {
    probe: bool,
}

impl Ticket {
    /// Whether this call is the half-open breaker's probe.
    pub fn is_probe(&self) -> bool {
        self.probe
    }
}

impl Breaker {
    /// A closed breaker, logging the vector store's transition messages.
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            state: Mutex::new(State::Closed { failures: 0 }),
            messages: (OPENED, CLOSED),
        }
    }

    /// The same, logging `opened` and `closed` on its transitions: for a
    /// breaker in front of another dependency.
    pub fn with_messages(mut self, opened: &'static str, closed: &'static str) -> Self {
        self.messages = (opened, closed);
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        crate::locked(&self.state)
    }

    /// The deadline of each call.
    pub fn call_timeout(&self) -> Duration {
        self.config.call_timeout
    }

    /// `closed`, `open` or `half_open`.
    pub fn state_name(&self) -> &'static str {
        match *self.lock() {
            State::Closed { .. } => "closed",
            State::Open { until } if Instant::now() >= until => "half_open",
            State::Open { .. } => "open",
            State::HalfOpen { .. } => "half_open",
        }
    }

    /// May a call go through now? If not, how long until one may.
    pub fn acquire(&self) -> Result<Ticket, Duration> {
        let mut state = self.lock();
        let now = Instant::now();
        match *state {
            State::Closed { .. } => Ok(Ticket { probe: false }),
            State::Open { until } if now < until => Err(until - now),
            // One probe at a time; the others wait for its verdict. A probe
            // whose caller went away never reports: after twice the call
            // deadline another one may go.
            State::HalfOpen {
                probe_since: Some(since),
            } if now - since < self.config.call_timeout * 2 => Err(Duration::from_secs(1)),
            State::Open { .. } | State::HalfOpen { .. } => {
                *state = State::HalfOpen {
                    probe_since: Some(now),
                };
                Ok(Ticket { probe: true })
            }
        }
    }

    /// Report the outcome of a call.
    pub fn record(&self, ticket: Ticket, success: bool) {
        let mut state = self.lock();
        let open = State::Open {
            until: Instant::now() + self.config.open_for,
        };
        let before = *state;
        *state = match (before, success) {
            (_, true) => State::Closed { failures: 0 },
            (State::Closed { failures }, false) if failures + 1 < self.config.failure_threshold => {
                State::Closed {
                    failures: failures + 1,
                }
            }
            (State::HalfOpen { .. }, false) if !ticket.probe => before,
            (_, false) => open,
        };
        // Transitions are logged: the CloudWatch alarm "Qdrant unreachable"
        // counts OPENED lines (infra/modules/monitoring).
        match (before, *state) {
            (State::Open { .. }, State::Open { .. }) => {}
            (_, State::Open { .. }) => {
                tracing::error!(
                    open_for_s = self.config.open_for.as_secs(),
                    "{}",
                    self.messages.0
                )
            }
            (State::Open { .. } | State::HalfOpen { .. }, State::Closed { .. }) => {
                tracing::info!("{}", self.messages.1);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    async fn five_failures_open_it_for_thirty_seconds_then_one_probe_decides() {
        let b = breaker();
        for _ in 0..4 {
            fail(&b);
        }
        assert_eq!(b.state_name(), "closed");
        fail(&b);
        assert_eq!(b.state_name(), "open");
        let wait = b.acquire().expect_err("open");
        assert_eq!(wait, Duration::from_secs(30));

        tokio::time::advance(Duration::from_secs(29)).await;
        assert!(b.acquire().is_err());
        tokio::time::advance(Duration::from_secs(1)).await;
        let probe = b.acquire().expect("one probe");
        assert!(b.acquire().is_err(), "only one probe at a time");
        b.record(probe, false);
        assert_eq!(b.state_name(), "open", "a failed probe opens it again");

        tokio::time::advance(Duration::from_secs(30)).await;
        let probe = b.acquire().expect("probe");
        b.record(probe, true);
        assert_eq!(b.state_name(), "closed");
        assert!(b.acquire().is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_resets_the_count() {
        let b = breaker();
        for _ in 0..4 {
            fail(&b);
        }
        let t = b.acquire().expect("closed");
        b.record(t, true);
        for _ in 0..4 {
            fail(&b);
        }
        assert_eq!(b.state_name(), "closed");
    }
}
