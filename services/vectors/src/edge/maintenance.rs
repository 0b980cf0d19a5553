//! The shard's maintenance thread: it flushes what was written and runs
//! Qdrant's optimizers, one at a time, never beside a flush.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use super::{FLUSH_INTERVAL, Shared, State, internal};
use crate::VectorError;

/// Tell the maintenance thread to stop and wait for it: an optimization
/// under way finishes first (Edge cannot stop one).
pub(super) fn stop_maintenance(
    shared: &Shared,
    maintenance: &Mutex<Option<std::thread::JoinHandle<()>>>,
) -> Result<(), VectorError> {
    shared.state()?.closing = true;
    shared.wake.notify_one();
    let handle = maintenance
        .lock()
        .map_err(|_| VectorError::Internal("maintenance lock poisoned".into()))?
        .take();
    match handle {
        Some(handle) => handle
            .join()
            .map_err(|_| VectorError::Internal("the maintenance thread panicked".into())),
        None => Ok(()),
    }
}

impl Shared {
    pub(super) fn state(&self) -> Result<MutexGuard<'_, State>, VectorError> {
        self.state
            .lock()
            .map_err(|_| VectorError::Internal("store state lock poisoned".into()))
    }

    /// Flush with the shard to itself: Edge's flush must not meet an update.
    pub(super) fn flush(&self) -> Result<(), VectorError> {
        self.shard
            .write()
            .map_err(|_| VectorError::Internal("shard lock poisoned".into()))?
            .flush();
        Ok(())
    }

    /// Have the kernel read the segments' inverted indexes without
    /// read-ahead (see [`super::readahead`]): after opening the shard and
    /// after each optimization, which maps the indexes it builds. A failure
    /// costs only speed, so it is logged, not returned.
    pub(super) fn advise_random_reads(&self) {
        match crate::readahead::advise_random_reads(&self.dir) {
            Ok(mappings) => tracing::debug!(
                target: "analyzer::vectors",
                mappings,
                "inverted indexes advised for random reads"
            ),
            Err(e) => tracing::warn!(
                target: "analyzer::vectors",
                error = %e,
                "could not advise the inverted indexes for random reads"
            ),
        }
    }

    /// Run the optimizers on a thread of the lowest priority (and the
    /// index builders it starts, which inherit it): index builds take only
    /// CPU that requests leave. At normal priority a merge rebuilding a
    /// 150k-point segment under the mixed load took both cores and made
    /// requests wait past their database timeouts (503s, measured).
    pub(super) fn optimize(&self) -> Result<bool, VectorError> {
        std::thread::scope(|scope| {
            std::thread::Builder::new()
                .name("edge-optimizer".into())
                .spawn_scoped(scope, || {
                    analyzer_runtime::lanes::lower_priority();
                    self.shard
                        .read()
                        .map_err(|_| VectorError::Internal("shard lock poisoned".into()))?
                        .optimize()
                        .map_err(internal)
                })
                .map_err(|e| VectorError::Internal(format!("start optimizer thread: {e}")))?
                .join()
                .map_err(|_| VectorError::Internal("the optimizer thread panicked".into()))?
        })
    }
}

/// The maintenance thread: flush what was written, then let the optimizers
/// do what they find to do (a quick no-op when the segments are in shape).
pub(super) fn maintain(shared: &Shared) {
    loop {
        let (flush, optimize) = {
            let Ok(mut state) = shared.state() else {
                return;
            };
            while !state.closing && (state.paused || (!state.unflushed && !state.unoptimized)) {
                state = match shared.wake.wait(state) {
                    Ok(state) => state,
                    Err(_) => return,
                };
            }
            if state.closing {
                return;
            }
            let work = (state.unflushed, state.unoptimized);
            state.unflushed = false;
            state.unoptimized = false;
            state.working = true;
            work
        };
        if optimize {
            let began = std::time::Instant::now();
            match shared.optimize() {
                Ok(true) => {
                    shared.advise_random_reads();
                    let info = shared.shard.read().map(|shard| shard.info()).ok();
                    tracing::info!(
                        target: "analyzer::vectors",
                        duration_ms = began.elapsed().as_millis() as u64,
                        segments = info.as_ref().map(|i| i.segments_count),
                        points = info.as_ref().map(|i| i.points_count),
                        indexed_vectors = info.as_ref().map(|i| i.indexed_vectors_count),
                        "vector segments optimized"
                    );
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(target: "analyzer::vectors", error = %e, "vector segment optimization failed")
                }
            }
        }
        if (flush || optimize)
            && let Err(e) = shared.flush()
        {
            tracing::error!(target: "analyzer::vectors", error = %e, "vector store flush failed");
        }
        // Writes of the next interval share one flush.
        let Ok(mut state) = shared.state() else {
            return;
        };
        state.working = false;
        shared.idle.notify_all();
        let rest = std::time::Instant::now() + FLUSH_INTERVAL;
        while !state.closing {
            let left = rest.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            state = match shared.wake.wait_timeout(state, left) {
                Ok((state, _)) => state,
                Err(_) => return,
            };
        }
    }
}

pub(super) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}
