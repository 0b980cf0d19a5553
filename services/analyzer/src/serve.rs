//! The HTTP server: accepts connections up to a bound, closes connections
//! that are idle or slow to send a request header, and drains without
//! resetting a request that reached the process.
//!
//! hyper's own header timeout also runs while a keep-alive connection waits
//! for its next request, so one setting could not be both a short header
//! timeout and an idle timeout longer than the load balancer's. Each
//! connection therefore has a watchdog that reads what the connection is
//! doing ([`Activity`]): bytes of a request head arriving, requests in
//! progress (from the call until the response body is sent), or nothing.
//!
//! The drain, after the stop signal:
//! 1. For `drain_grace`, everything goes on as before (the listener keeps
//!    accepting), except that every response carries `Connection: close`:
//!    a client whose request was sent just before or after the signal gets
//!    its answer, and then opens its next connection elsewhere.
//! 2. Then the listener closes, and each connection closes as soon as it
//!    has no request in progress and none arriving.
//! 3. The caller bounds the whole by `ANALYZER_SHUTDOWN_TIMEOUT_SECONDS`.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, header};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
use tower::ServiceExt as _;

/// The server's connection settings.
#[derive(Debug, Clone, Copy)]
pub struct ServerConfig {
    /// How long a client may take to send a whole request header, from its
    /// first byte (`ANALYZER_HEADER_READ_TIMEOUT_SECONDS`).
    pub header_read_timeout: Duration,
    /// How long a connection may stay open with no request in progress or
    /// arriving (`ANALYZER_IDLE_TIMEOUT_SECONDS`).
    pub idle_timeout: Duration,
    /// Connections open at once; more wait in the listen backlog
    /// (`ANALYZER_MAX_CONNECTIONS`, lowered to what the descriptor limit
    /// allows).
    pub max_connections: usize,
    /// How long after the stop signal requests are still taken on every
    /// connection (`ANALYZER_DRAIN_GRACE_SECONDS`).
    pub drain_grace: Duration,
}

/// Descriptors kept for everything but client connections: database and
/// Redis pools, the vector store's files, logs.
const RESERVED_DESCRIPTORS: u64 = 512;

/// Raise this process's open-file limit to its hard limit, and bound
/// `wanted` connections by what it then allows; logs both.
pub fn connection_bound(wanted: usize) -> usize {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => limit = raised,
            Err(e) => tracing::warn!(error = %e, "could not raise the open-file limit"),
        }
    }
    let Some(files) = limit.current else {
        return wanted;
    };
    let allowed = usize::try_from(files.saturating_sub(RESERVED_DESCRIPTORS)).unwrap_or(usize::MAX);
    let bound = wanted.min(allowed).max(1);
    if bound < wanted {
        tracing::warn!(
            open_files = files,
            wanted,
            bound,
            "ANALYZER_MAX_CONNECTIONS is above what the open-file limit allows; using the lower bound"
        );
    } else {
        tracing::info!(
            open_files = files,
            max_connections = bound,
            "connection bound"
        );
    }
    bound
}

/// State every connection shares.
#[derive(Debug)]
struct Shared {
    config: ServerConfig,
    /// Set at the stop signal: responses carry `Connection: close`.
    draining: AtomicBool,
    /// Sent at the end of the grace period: connections close once idle.
    close: watch::Sender<bool>,
}

/// Serve `app` on `listener` until `stop` changes, then drain (see the
/// module's documentation). Returns once every connection has closed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    config: ServerConfig,
    mut stop: watch::Receiver<bool>,
) {
    let shared = Arc::new(Shared {
        config,
        draining: AtomicBool::new(false),
        close: watch::channel(false).0,
    });
    let permits = Arc::new(Semaphore::new(config.max_connections));
    let stopped = async {
        let _ = stop.changed().await;
    };
    accept_until(&listener, &permits, &app, &shared, stopped).await;

    shared.draining.store(true, Ordering::Relaxed);
    tracing::info!(
        grace_ms = config.drain_grace.as_millis() as u64,
        "draining: answering with Connection: close"
    );
    accept_until(
        &listener,
        &permits,
        &app,
        &shared,
        tokio::time::sleep(config.drain_grace),
    )
    .await;
    drop(listener);
    let _ = shared.close.send(true);
    let open = config.max_connections - permits.available_permits();
    tracing::info!(
        open_connections = open,
        "listener closed; closing connections as their requests finish"
    );
    // Every connection holds a permit until it has closed.
    let all = u32::try_from(config.max_connections).unwrap_or(u32::MAX);
    let _ = permits.acquire_many(all).await;
}

/// Accept connections until `until` resolves, each under a permit.
async fn accept_until(
    listener: &TcpListener,
    permits: &Arc<Semaphore>,
    app: &Router,
    shared: &Arc<Shared>,
    until: impl Future<Output = ()>,
) {
    tokio::pin!(until);
    let mut at_bound_since: Option<Instant> = None;
    loop {
        let permit = match Arc::clone(permits).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if at_bound_since.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                    tracing::warn!(
                        max_connections = shared.config.max_connections,
                        "connection bound reached; new connections wait in the listen backlog"
                    );
                    at_bound_since = Some(Instant::now());
                }
                tokio::select! {
                    permit = Arc::clone(permits).acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => return,
                    },
                    () = &mut until => return,
                }
            }
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut until => return,
        };
        match accepted {
            Ok((stream, _)) => {
                tokio::spawn(connection(stream, permit, app.clone(), Arc::clone(shared)));
            }
            // A connection reset before it was accepted: nothing to do.
            Err(e) if is_connection_error(&e) => {}
            Err(e) => {
                // Out of descriptors or memory: wait for connections to
                // close rather than spin.
                tracing::error!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

/// What a connection is doing, as its watchdog reads it. Times are
/// milliseconds since the connection opened.
#[derive(Debug)]
struct Activity {
    opened: Instant,
    /// When the first byte of the next request head arrived, plus one;
    /// 0 while no head is arriving.
    head_since: AtomicU64,
    /// Requests called and not yet wholly answered.
    in_flight: AtomicU32,
    /// The last byte read or response finished.
    last: AtomicU64,
    /// Woken when a head begins to arrive or a request finishes, so that
    /// the watchdog's next check is timed from then.
    changed: Notify,
}

/// The watchdog's reading of a connection.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// A request is in progress, or its head is arriving within the bound:
    /// look again after `recheck` (or when the connection's state changes).
    Busy { recheck: Duration },
    /// Nothing in progress or arriving.
    Idle { for_: Duration },
    /// A head has been arriving for longer than allowed.
    HeadTooSlow,
}

impl Activity {
    fn new() -> Self {
        Self {
            opened: Instant::now(),
            head_since: AtomicU64::new(0),
            in_flight: AtomicU32::new(0),
            last: AtomicU64::new(0),
            changed: Notify::new(),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn bytes_read(&self) {
        let now = self.now();
        self.last.store(now, Ordering::Relaxed);
        if self.in_flight.load(Ordering::Relaxed) == 0
            && self
                .head_since
                .compare_exchange(0, now + 1, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.changed.notify_one();
        }
    }

    fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.head_since.store(0, Ordering::Relaxed);
    }

    fn request_finished(&self) {
        self.last.store(self.now(), Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.changed.notify_one();
    }

    fn verdict(&self, config: &ServerConfig) -> Verdict {
        let now = self.now();
        let head = self.head_since.load(Ordering::Relaxed);
        if head != 0 {
            let arriving = Duration::from_millis(now.saturating_sub(head - 1));
            return match config.header_read_timeout.checked_sub(arriving) {
                Some(left) if !left.is_zero() => Verdict::Busy { recheck: left },
                _ => Verdict::HeadTooSlow,
            };
        }
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            // Its end wakes the watchdog; this is only a backstop.
            return Verdict::Busy {
                recheck: config.idle_timeout,
            };
        }
        let last = self.last.load(Ordering::Relaxed);
        Verdict::Idle {
            for_: Duration::from_millis(now.saturating_sub(last)),
        }
    }
}

/// Serve one connection until it closes, under its watchdog.
async fn connection(
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
    app: Router,
    shared: Arc<Shared>,
) {
    let _ = stream.set_nodelay(true);
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: Arc::clone(&activity),
    });
    let service = {
        let (activity, shared) = (Arc::clone(&activity), Arc::clone(&shared));
        hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
            let (app, activity, shared) = (app.clone(), Arc::clone(&activity), Arc::clone(&shared));
            async move {
                activity.request_started();
                let done = Finished(Arc::clone(&activity));
                let mut response = match app.oneshot(request.map(Body::new)).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                };
                if shared.draining.load(Ordering::Relaxed) {
                    response
                        .headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                Ok::<_, std::convert::Infallible>(
                    response.map(|body| Body::new(Tracked { body, _done: done })),
                )
            }
        })
    };
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(io, service);
    tokio::pin!(conn);

    let config = shared.config;
    let mut close = shared.close.subscribe();
    let mut closing = *close.borrow();
    let mut shut = false;
    loop {
        let wait = match activity.verdict(&config) {
            Verdict::HeadTooSlow => {
                tracing::debug!("closing a connection whose request header did not arrive in time");
                return;
            }
            Verdict::Idle { for_ } if closing || for_ >= config.idle_timeout => {
                if !shut {
                    conn.as_mut().graceful_shutdown();
                    shut = true;
                }
                Duration::from_millis(50)
            }
            Verdict::Idle { for_ } => config.idle_timeout - for_,
            Verdict::Busy { .. } if closing => Duration::from_millis(50),
            Verdict::Busy { recheck } => recheck,
        };
        tokio::select! {
            served = conn.as_mut() => {
                if let Err(e) = served {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            () = tokio::time::sleep(wait) => {}
            () = activity.changed.notified() => {}
            changed = close.changed(), if !closing => {
                closing = changed.is_err() || *close.borrow();
            }
        }
    }
}

/// Marks its request finished when dropped: when the response body has
/// been sent, or the connection dropped it.
struct Finished(Arc<Activity>);

impl Drop for Finished {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

/// A response body that marks its request finished when it is dropped.
struct Tracked {
    body: Body,
    _done: Finished,
}

impl http_body::Body for Tracked {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// The connection's socket, reporting the bytes it reads.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.bytes_read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_connection_is_idle_only_with_nothing_in_progress_or_arriving() {
        let activity = Activity::new();
        let config = ServerConfig {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            max_connections: 1,
            drain_grace: Duration::ZERO,
        };
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(
            activity.verdict(&config),
            Verdict::Idle {
                for_: Duration::from_secs(3)
            }
        );
        activity.bytes_read();
        tokio::time::advance(Duration::from_secs(4)).await;
        assert_eq!(
            activity.verdict(&config),
            Verdict::Busy {
                recheck: Duration::from_secs(6)
            },
            "a head is arriving: looked at again when its time is up"
        );
        tokio::time::advance(Duration::from_secs(7)).await;
        assert_eq!(activity.verdict(&config), Verdict::HeadTooSlow);
        let in_progress = Verdict::Busy {
            recheck: Duration::from_secs(75),
        };
        activity.request_started();
        assert_eq!(activity.verdict(&config), in_progress);
        activity.bytes_read();
        assert_eq!(
            activity.verdict(&config),
            in_progress,
            "body bytes are not a new head"
        );
        tokio::time::advance(Duration::from_secs(600)).await;
        assert_eq!(
            activity.verdict(&config),
            in_progress,
            "a long request is not idle"
        );
        activity.request_finished();
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(
            activity.verdict(&config),
            Verdict::Idle {
                for_: Duration::from_secs(2)
            }
        );
    }
}
