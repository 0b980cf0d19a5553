//! The load generator: `connections` keep-alive HTTP/1.1 connections, each
//! a closed loop (send, read the whole answer, send the next), on hyper's
//! low-level client so that the generator costs as little CPU as it can
//! on a machine it shares with the server.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// One request to send.
#[derive(Clone)]
pub struct Call {
    pub method: hyper::Method,
    pub path: &'static str,
    pub token: Arc<str>,
    pub body: Bytes,
    pub content_type: &'static str,
}

/// What a scenario sends: the `n`th call of connection `conn`.
pub type Plan = Arc<dyn Fn(usize, u64) -> Call + Send + Sync>;

/// Latencies and statuses of every answered call in the measured window.
#[derive(Default)]
pub struct Outcome {
    /// Latency of each answered call, microseconds.
    pub micros: Vec<u32>,
    /// Answers by HTTP status.
    pub statuses: BTreeMap<u16, u64>,
    /// Calls that got no answer (connection refused, reset, closed).
    pub failures: u64,
    /// Length of the measured window.
    pub window: Duration,
}

impl Outcome {
    /// Add `other`'s calls to these (the same window).
    pub fn merge(&mut self, other: Outcome) {
        self.micros.extend(other.micros);
        for (status, n) in other.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
        self.failures += other.failures;
    }

    /// Answered calls per second over the window.
    pub fn rate(&self) -> f64 {
        self.micros.len() as f64 / self.window.as_secs_f64().max(1e-9)
    }

    /// Answers with a status outside 2xx, plus calls without an answer.
    pub fn errors(&self) -> u64 {
        let bad: u64 = self
            .statuses
            .iter()
            .filter(|(status, _)| !(200..300).contains(*status))
            .map(|(_, n)| n)
            .sum();
        bad + self.failures
    }

    /// The `q` quantile (0..=1) of latency, in milliseconds.
    pub fn quantile_ms(&mut self, q: f64) -> f64 {
        if self.micros.is_empty() {
            return f64::NAN;
        }
        self.micros.sort_unstable();
        let rank = ((self.micros.len() as f64 * q).ceil() as usize).clamp(1, self.micros.len());
        f64::from(self.micros[rank - 1]) / 1000.0
    }
}

/// How the calls of one connection are spaced.
#[derive(Clone, Copy)]
pub enum Pace {
    /// The next call as soon as the answer is read (closed loop).
    Closed,
    /// One call every interval per connection (open loop): latency runs
    /// from when the call was due, so a server that falls behind is seen
    /// as slow, not as a generator that waited (no coordinated omission).
    Every(Duration),
}

/// Run `plan` on `connections` connections: `warmup` unmeasured, then
/// `measure` measured.
pub async fn run(
    addr: SocketAddr,
    connections: usize,
    pace: Pace,
    (warmup, measure): (Duration, Duration),
    plan: Plan,
) -> Outcome {
    let begin = Instant::now();
    let start = begin + warmup;
    let end = start + measure;
    let loops: Vec<_> = (0..connections)
        .map(|conn| {
            // Open-loop connections start spread over one interval.
            let first = match pace {
                Pace::Closed => begin,
                Pace::Every(every) => begin + every.mul_f64(conn as f64 / connections as f64),
            };
            let schedule = Schedule {
                addr,
                conn,
                pace,
                first,
                start,
                end,
            };
            tokio::spawn(schedule.drive(Arc::clone(&plan)))
        })
        .collect();
    let mut outcome = Outcome {
        window: measure,
        ..Outcome::default()
    };
    for handle in loops {
        match handle.await {
            Ok(part) => outcome.merge(part),
            Err(_) => outcome.failures += 1,
        }
    }
    outcome
}

/// One connection's schedule.
struct Schedule {
    addr: SocketAddr,
    conn: usize,
    pace: Pace,
    first: Instant,
    start: Instant,
    end: Instant,
}

impl Schedule {
    async fn drive(self, plan: Plan) -> Outcome {
        let Schedule {
            addr,
            conn,
            pace,
            first,
            start,
            end,
        } = self;
        let mut outcome = Outcome::default();
        let mut n = 0u64;
        'connect: while Instant::now() < end {
            let Ok(mut sender) = open(addr).await else {
                if Instant::now() >= start {
                    outcome.failures += 1;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            while Instant::now() < end {
                let due = match pace {
                    Pace::Closed => Instant::now(),
                    Pace::Every(every) => {
                        let due = first + every.mul_f64(n as f64);
                        tokio::time::sleep_until(due.into()).await;
                        due
                    }
                };
                if due >= end {
                    break 'connect;
                }
                let call = plan(conn, n);
                n += 1;
                let request = hyper::Request::builder()
                    .method(call.method)
                    .uri(call.path)
                    .header(hyper::header::HOST, "bench")
                    .header(
                        hyper::header::AUTHORIZATION,
                        format!("Bearer {}", call.token),
                    )
                    .header(hyper::header::CONTENT_TYPE, call.content_type)
                    .body(Full::new(call.body));
                let Ok(request) = request else {
                    outcome.failures += 1;
                    continue;
                };
                let answer = match sender.send_request(request).await {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        response
                            .into_body()
                            .collect()
                            .await
                            .map(|_| status)
                            .map_err(drop)
                    }
                    Err(_) => Err(()),
                };
                let took = due.elapsed();
                let measured = due >= start;
                match answer {
                    Ok(status) => {
                        if measured {
                            outcome
                                .micros
                                .push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
                            *outcome.statuses.entry(status).or_default() += 1;
                        }
                    }
                    Err(()) => {
                        if measured {
                            outcome.failures += 1;
                        }
                        continue 'connect;
                    }
                }
                if sender.ready().await.is_err() {
                    continue 'connect;
                }
            }
        }
        outcome
    }
}

async fn open(addr: SocketAddr) -> anyhow::Result<http1::SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}
