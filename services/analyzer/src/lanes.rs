//! Where a request's CPU-heavy work runs: the embedded vector store's
//! searches, which scan vectors for milliseconds at a time.
//!
//! Two lanes of OS threads, one per tier: four threads per core for
//! premium work, one per core for standard work. Each lane drains a queue
//! that is fair between tenants: one job per tenant per turn, so a tenant
//! with a backlog cannot make another of its tier wait behind all of it. The standard lane's
//! threads run at a lower scheduling priority (nice +10, weight 110
//! against 1024): while premium work is waiting, the kernel preempts the
//! standard threads and gives the premium ones nearly all the CPU, and
//! when it is not, standard work has the machine. A standard tenant
//! flooding at its concurrency cap therefore barely moves a premium
//! tenant's latency (measured in BENCHMARKS.md, noisy-neighbour scenario).
//!
//! Work outside a tenant's request (admin calls, the CLI, background
//! tasks) runs in the premium lane. A job whose request was dropped before
//! its turn (client gone, timeout) is skipped.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard};

use crate::tenants::{TenantId, Tier};

/// How many nice steps the standard lane's threads run below the process.
const STANDARD_NICE: i32 = 10;

type Job = Box<dyn FnOnce() + Send>;

/// The tenant and tier a task is serving.
#[derive(Clone, Debug)]
pub struct Seat {
    pub tenant: TenantId,
    pub tier: Tier,
}

tokio::task_local! {
    static SEAT: Seat;
}

/// Run `f` with its lane work queued as `seat`'s.
pub async fn seated<F: Future>(seat: Seat, f: F) -> F::Output {
    SEAT.scope(seat, f).await
}

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
    let (tier, tenant) = SEAT
        .try_with(|s| (s.tier, s.tenant.as_str().to_owned()))
        .unwrap_or((Tier::Premium, String::new()));
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

/// Premium threads per core: more than one, so that a search waiting on a
/// page of on-disk vectors does not leave its core idle.
const PREMIUM_THREADS_PER_CORE: usize = 4;

static LANES: LazyLock<Lanes> = LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    Lanes {
        premium: start_lane("premium", PREMIUM_THREADS_PER_CORE * cores, 0),
        // One per core: more standard threads would each take a share of
        // the CPU from a premium one, whatever their priority (measured).
        standard: start_lane("standard", cores, STANDARD_NICE),
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

/// Start `threads` threads draining a new queue, `nice` steps below the
/// process's priority.
fn start_lane(name: &str, threads: usize, nice: i32) -> Arc<Queue> {
    let queue = Arc::new(Queue::default());
    for i in 0..threads {
        let queue = Arc::clone(&queue);
        let spawned = std::thread::Builder::new()
            .name(format!("lane-{name}-{i}"))
            .spawn(move || {
                if nice != 0 {
                    lower_priority(nice);
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

/// Lower this thread's scheduling priority by `by` nice steps, relative to
/// the process's own (Linux: nice is per thread; 19 is the floor).
fn lower_priority(by: i32) {
    #[cfg(target_os = "linux")]
    {
        let tid = rustix::thread::gettid();
        let lowered = rustix::process::getpriority_process(Some(tid))
            .and_then(|now| rustix::process::setpriority_process(Some(tid), (now + by).min(19)));
        if let Err(e) = lowered {
            tracing::warn!(error = %e, by, "could not lower the standard lane's priority");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = by;
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
            let nice = |tier| {
                let seat = Seat {
                    tenant: TenantId::generate(),
                    tier,
                };
                seated(
                    seat,
                    run(|| rustix::process::getpriority_process(Some(rustix::thread::gettid()))),
                )
            };
            let standard = nice(Tier::Standard).await.expect("answer").expect("nice");
            let premium = nice(Tier::Premium).await.expect("answer").expect("nice");
            assert_eq!(
                standard,
                (premium + STANDARD_NICE).min(19),
                "standard threads run below premium ones"
            );
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
}
