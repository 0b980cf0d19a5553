//! Where a tenant's work runs, by tier, so that a standard tenant at its
//! limits cannot slow a premium one down.
//!
//! - Request handling: a tenant's handler (its database and cache calls,
//!   serialization) runs for a premium tenant on the server's runtime and
//!   for a standard tenant on the standard runtime: its own workers, one
//!   per core, at the standard priority (Linux SCHED_IDLE: the CPU no
//!   other thread wants; nice +10 where that is refused). A premium
//!   request therefore never waits in a run queue behind a standard
//!   tenant's flood, and a premium thread that wakes up takes the CPU
//!   from standard work at once; when premium is idle, standard work has
//!   the machine. Reading the request, checking its token and admission
//!   run on the server's runtime for both tiers: admission touches state
//!   every tenant shares, and a lowered thread preempted while holding it
//!   would make premium requests wait (measured: worse with admission
//!   moved).
//! - The embedded vector store's searches, which scan vectors for
//!   milliseconds at a time: two lanes of OS threads, four per core for
//!   premium work at the process's priority, one per core for standard
//!   work at the standard priority. Each lane drains a queue that is fair
//!   between tenants: one job per tenant per turn, so a tenant with a
//!   backlog cannot make another of its tier wait behind all of it.
//!
//! Why, and what it costs: docs/decisions/lanes.md. Work outside a
//! tenant's request (admin calls, the CLI, background tasks) runs on the
//! premium side. A job whose request was dropped before its turn (client
//! gone, timeout) is skipped; a request given up is aborted.
//!
//! Threads inherit their creator's priority, so everything here is
//! started from the server's own thread ([`start`]), and SQLite's
//! connections (threads) have a pool per tier, each opened whole at start
//! (see `store`). The price of SCHED_IDLE: while premium work keeps every
//! core busy, standard work barely runs, and a shared lock held by a
//! standard thread (a SQLite write, the cache's map) is released late.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard};

use tracing::Instrument as _;

use analyzer_domain::tenants::Tier;
use analyzer_telemetry::seat::with_seat;
pub use analyzer_telemetry::seat::{Seat, seated, tier};

/// Where SCHED_IDLE is refused: how many nice steps standard threads run
/// below the process.
const STANDARD_NICE: i32 = 10;

type Job = Box<dyn FnOnce() + Send>;

/// The lane was shut down, or the job panicked.
#[derive(Debug, thiserror::Error)]
#[error("the search lane dropped the job")]
pub struct Dropped;

/// Run `f` in the lane of the tenant being served, after the jobs ahead
/// of it by the queue's fairness.
pub async fn run<T, F>(f: F) -> Result<T, Dropped>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (tier, tenant) = with_seat(|seat| {
        seat.map(|s| (s.tier, s.tenant.as_str().to_owned()))
            .unwrap_or((Tier::Premium, String::new()))
    });
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        if tx.is_closed() {
            return;
        }
        let _ = tx.send(f());
    });
    LANES.lane(tier).push(tenant, job);
    rx.await.map_err(|_| Dropped)
}

/// Run a tenant's request handling (`f`: the handler with its database
/// work, cache lookups and serialization) where its tier's work runs:
/// premium requests on the server's own runtime, standard ones on the
/// standard runtime. The task is aborted if the caller stops waiting
/// (client gone, timeout).
pub async fn handle<F>(tier: Tier, f: F) -> Result<F::Output, Dropped>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match (tier, STANDARD_RUNTIME.as_ref()) {
        (Tier::Standard, Some(runtime)) => {
            // The request's span goes along: log lines keep its ids.
            AbortOnDrop(runtime.spawn(f.instrument(tracing::Span::current()))).await
        }
        _ => Ok(f.await),
    }
}

/// A spawned request task, aborted when its caller drops it.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T> Future for AbortOnDrop<T> {
    type Output = Result<T, Dropped>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.get_mut().0)
            .poll(cx)
            .map(|r| r.map_err(|_| Dropped))
    }
}

/// The runtime standard-tier requests are handled on: one worker per core,
/// at the standard lane's priority. Its run queue is its own, so a premium
/// request never waits in line behind a standard tenant's flood on the
/// server's workers; the kernel gives the server's (premium) workers the
/// CPU as soon as they wake. `None` if it could not be built: everything
/// then runs on the server's runtime, as before.
static STANDARD_RUNTIME: LazyLock<Option<tokio::runtime::Runtime>> = LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    let built = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .thread_name("standard-rt")
        .on_thread_start(lower_priority)
        .enable_all()
        .build();
    match built {
        Ok(runtime) => Some(runtime),
        Err(e) => {
            tracing::error!(error = %e, "could not start the standard runtime; standard requests share the server's");
            None
        }
    }
});

/// Start the lanes and the standard runtime now, from a thread at the
/// process's own priority (threads inherit their creator's priority, so
/// they must not first be created from a lowered thread).
pub fn start() {
    LazyLock::force(&BASE_NICE);
    LazyLock::force(&LANES);
    LazyLock::force(&STANDARD_RUNTIME);
}

/// Premium threads per core: more than one, so that a search waiting on a
/// page of on-disk vectors does not leave its core idle.
const PREMIUM_THREADS_PER_CORE: usize = 4;

static LANES: LazyLock<Lanes> = LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    Lanes {
        premium: start_lane("premium", PREMIUM_THREADS_PER_CORE * cores, false),
        // One per core: more standard threads would each take a share of
        // the CPU from a premium one, whatever their priority (measured).
        standard: start_lane("standard", cores, true),
    }
});

/// Each tier's queue; the lane threads hold it too.
struct Lanes {
    premium: Arc<Queue>,
    standard: Arc<Queue>,
}

impl Lanes {
    fn lane(&self, tier: Tier) -> &Queue {
        match tier {
            Tier::Premium => &self.premium,
            Tier::Standard => &self.standard,
        }
    }
}

/// Start `threads` threads draining a new queue, at the standard priority
/// if `lowered`.
fn start_lane(name: &str, threads: usize, lowered: bool) -> Arc<Queue> {
    let queue = Arc::new(Queue::default());
    for i in 0..threads {
        let queue = Arc::clone(&queue);
        let spawned = std::thread::Builder::new()
            .name(format!("lane-{name}-{i}"))
            .spawn(move || {
                if lowered {
                    lower_priority();
                }
                while let Some(job) = queue.pop() {
                    // A panicking job drops its sender: the caller gets
                    // `Dropped`, and the thread lives on.
                    let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, lane = name, "could not start a lane thread");
        }
    }
    queue
}

/// The process's nice value when the lanes started.
static BASE_NICE: LazyLock<i32> = LazyLock::new(|| {
    #[cfg(target_os = "linux")]
    {
        rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap_or(0)
    }
    #[cfg(not(target_os = "linux"))]
    0
});

/// Run this thread at the standard priority: Linux's SCHED_IDLE, so that
/// it runs only on CPU no other thread of the machine wants, and any of
/// them waking up preempts it at once (nice alone leaves a woken premium
/// thread waiting for the CPU for up to milliseconds: measured). Where the
/// policy is refused, nice +10. Threads this thread starts inherit it.
/// Public for the load harness, whose flood client runs lowered too.
pub fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        use thread_priority::{
            NormalThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy,
            set_thread_priority_and_policy, thread_native_id, thread_schedule_policy,
        };
        let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
        // Setting the policy also resets nice, which may be refused; what
        // counts is the policy.
        let _ = set_thread_priority_and_policy(thread_native_id(), ThreadPriority::Min, idle);
        if thread_schedule_policy().is_ok_and(|p| p == idle) {
            return;
        }
        let tid = rustix::thread::gettid();
        let lowered =
            rustix::process::setpriority_process(Some(tid), (*BASE_NICE + STANDARD_NICE).min(19));
        if let Err(e) = lowered {
            tracing::warn!(error = %e, "could not lower a standard thread's priority");
        }
    }
}

/// Whether this thread runs at the standard priority.
#[cfg(all(test, target_os = "linux"))]
fn lowered() -> bool {
    use thread_priority::{
        NormalThreadSchedulePolicy, ThreadSchedulePolicy, thread_schedule_policy,
    };
    let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
    thread_schedule_policy().is_ok_and(|p| p == idle)
        || rustix::process::getpriority_process(Some(rustix::thread::gettid()))
            .is_ok_and(|nice| nice == (*BASE_NICE + STANDARD_NICE).min(19))
}

/// Jobs by tenant, served round robin.
#[derive(Default)]
struct Queue {
    waiting: Mutex<Waiting>,
    wake: Condvar,
}

#[derive(Default)]
struct Waiting {
    /// Tenants with queued jobs, in turn order.
    turns: VecDeque<String>,
    jobs: HashMap<String, VecDeque<Job>>,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, Waiting> {
        // A job never runs under this lock, so poisoning cannot leave the
        // queue half-changed.
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(&self, tenant: String, job: Job) {
        let mut guard = self.lock();
        let Waiting { turns, jobs } = &mut *guard;
        match jobs.get_mut(&tenant) {
            Some(queue) => queue.push_back(job),
            None => {
                jobs.insert(tenant.clone(), VecDeque::from([job]));
                turns.push_back(tenant);
            }
        }
        drop(guard);
        self.wake.notify_one();
    }

    fn pop(&self) -> Option<Job> {
        let mut waiting = self.lock();
        loop {
            if let Some(job) = waiting.next() {
                return Some(job);
            }
            waiting = self.wake.wait(waiting).unwrap_or_else(|p| p.into_inner());
        }
    }
}

impl Waiting {
    /// The next tenant's oldest job; the tenant goes to the back of the
    /// turns if it has more.
    fn next(&mut self) -> Option<Job> {
        let tenant = self.turns.pop_front()?;
        let queue = self.jobs.get_mut(&tenant)?;
        let job = queue.pop_front();
        if queue.is_empty() {
            self.jobs.remove(&tenant);
        } else {
            self.turns.push_back(tenant);
        }
        job
    }
}

#[cfg(test)]
mod tests {
    use analyzer_domain::tenants::TenantId;

    use super::*;

    #[test]
    fn tenants_take_turns_one_job_each() {
        let queue = Queue::default();
        let order = Arc::new(Mutex::new(Vec::new()));
        for (tenant, label) in [
            ("a", "a1"),
            ("a", "a2"),
            ("a", "a3"),
            ("b", "b1"),
            ("c", "c1"),
        ] {
            let order = Arc::clone(&order);
            queue.push(
                tenant.to_owned(),
                Box::new(move || order.lock().expect("lock").push(label)),
            );
        }
        for _ in 0..5 {
            let job = queue.pop().expect("a job");
            job();
        }
        assert_eq!(*order.lock().expect("lock"), ["a1", "b1", "c1", "a2", "a3"]);
        let waiting = queue.lock();
        assert!(waiting.turns.is_empty() && waiting.jobs.is_empty());
    }

    #[tokio::test]
    async fn a_job_answers_in_its_tiers_lane_and_a_panic_is_dropped_not_fatal() {
        let seat = Seat {
            tenant: TenantId::generate(),
            tier: Tier::Standard,
            route: Arc::from("/test"),
            trace: None,
        };
        let name = seated(
            seat.clone(),
            run(|| std::thread::current().name().map(str::to_owned)),
        )
        .await
        .expect("answer");
        assert!(name.is_some_and(|n| n.starts_with("lane-standard-")));
        #[cfg(target_os = "linux")]
        {
            let lowered_in = |tier| {
                let seat = Seat {
                    tenant: TenantId::generate(),
                    tier,
                    route: Arc::from("/test"),
                    trace: None,
                };
                seated(seat, run(lowered))
            };
            assert!(lowered_in(Tier::Standard).await.expect("answer"));
            assert!(!lowered_in(Tier::Premium).await.expect("answer"));
        }
        let outside = run(|| std::thread::current().name().map(str::to_owned))
            .await
            .expect("answer");
        assert!(outside.is_some_and(|n| n.starts_with("lane-premium-")));

        let panicked = seated(seat.clone(), run(|| -> u32 { panic!("job failed") })).await;
        assert!(panicked.is_err());
        let after = seated(seat, run(|| 7))
            .await
            .expect("the lane still serves");
        assert_eq!(after, 7);
    }

    #[tokio::test]
    async fn standard_requests_are_handled_on_the_standard_runtime_at_its_priority() {
        start();
        let thread = || std::thread::current().name().map(str::to_owned);
        let standard = handle(Tier::Standard, async move { thread() }).await;
        assert_eq!(standard.expect("answer").as_deref(), Some("standard-rt"));
        let premium = handle(Tier::Premium, async move { thread() }).await;
        assert_ne!(premium.expect("answer").as_deref(), Some("standard-rt"));

        #[cfg(target_os = "linux")]
        {
            let standard = handle(Tier::Standard, async { lowered() }).await;
            assert!(standard.expect("answer"), "standard work runs lowered");
            let premium = handle(Tier::Premium, async { lowered() }).await;
            assert!(!premium.expect("answer"));
        }
    }

    #[tokio::test]
    async fn a_panicking_handler_is_an_error_and_the_runtime_serves_on() {
        start();
        let panicked = handle(Tier::Standard, async { panic!("handler failed") }).await;
        assert!(matches!(panicked, Err::<(), _>(Dropped)));
        let after = handle(Tier::Standard, async { 7 }).await;
        assert_eq!(after.expect("served"), 7);
    }

    #[tokio::test]
    async fn a_request_given_up_is_aborted_on_the_standard_runtime() {
        start();
        let (held, released) = tokio::sync::oneshot::channel::<()>();
        let never = async move {
            let _held = held;
            std::future::pending::<()>().await;
        };
        let gave_up = tokio::time::timeout(
            std::time::Duration::from_millis(20),
            handle(Tier::Standard, never),
        )
        .await;
        assert!(gave_up.is_err(), "the handler never answers");
        // Aborting drops the task's future, and with it the sender.
        let dropped = tokio::time::timeout(std::time::Duration::from_secs(5), released).await;
        assert!(matches!(dropped, Ok(Err(_))), "the task was aborted");
    }
}
