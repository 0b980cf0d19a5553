//! Copies of the shard for a single host's backup (`analyzer backup`):
//! taken from the serving store, or from a data dir no server holds.
//!
//! A copy is consistent when no write, optimization or flush changes the
//! files under it: the serving store's copy holds the writers' turn (writes
//! wait, in arrival order) and pauses the maintenance thread, flushes, and
//! copies the files while searches go on (they only read the mappings).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::wal::prunable;
use super::{CLEAN_STOP, EdgeStore, Shared, WAL_DIR, internal, sync_dir};
use crate::VectorError;

impl EdgeStore {
    /// Copy the shard, flushed, into `dest/<the shard's directory name>`;
    /// `dest` is created.
    pub(super) async fn snapshot(&self, dest: &Path) -> Result<(), VectorError> {
        let _turn = self.turn().await?;
        let shared = Arc::clone(&self.shared);
        let src = self.path.clone();
        let dest = dest.to_owned();
        tokio::task::spawn_blocking(move || {
            let _paused = Paused::wait(&shared)?;
            shared.flush()?;
            copy_shard(&src, &dest)
        })
        .await
        .map_err(|e| VectorError::Internal(format!("blocking task: {e}")))?
    }
}

/// Copy every shard under `vectors_dir` (one per embedding model) into
/// `dest/<model>`, as they are on disk: for a data dir no server runs on
/// (the caller holds the data dir's lock). A shard that was not stopped
/// cleanly is copied as such, and is reconciled where it is restored.
pub fn copy_shards(vectors_dir: &Path, dest: &Path) -> Result<usize, VectorError> {
    let entries = match std::fs::read_dir(vectors_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io(vectors_dir, e)),
    };
    let mut copied = 0;
    for entry in entries {
        let entry = entry.map_err(|e| io(vectors_dir, e))?;
        if entry.file_type().map_err(|e| io(vectors_dir, e))?.is_dir() {
            copy_shard(&entry.path(), dest)?;
            copied += 1;
        }
    }
    Ok(copied)
}

/// The maintenance thread held still (no flush, no optimization) until
/// this is dropped.
struct Paused<'a>(&'a Shared);

impl<'a> Paused<'a> {
    fn wait(shared: &'a Shared) -> Result<Self, VectorError> {
        let mut state = shared.state()?;
        if state.closing {
            return Err(VectorError::Unavailable(
                "the vector store is closed".into(),
            ));
        }
        state.paused = true;
        while state.working {
            state = shared
                .idle
                .wait(state)
                .map_err(|_| VectorError::Internal("store state lock poisoned".into()))?;
        }
        Ok(Self(shared))
    }
}

impl Drop for Paused<'_> {
    fn drop(&mut self) {
        if let Ok(mut state) = self.0.state() {
            state.paused = false;
        }
        self.0.wake.notify_one();
    }
}

/// Copy the shard directory `src` into `dest/<its name>`, leaving out the
/// clean-stop marker (a restored shard is always reconciled) and the
/// write-ahead log's closed segments but the newest, which the next open
/// would prune anyway (see `wal`).
fn copy_shard(src: &Path, dest: &Path) -> Result<(), VectorError> {
    let name = src
        .file_name()
        .ok_or_else(|| internal(format!("{} has no name", src.display())))?;
    let wal = src.join(WAL_DIR);
    let mut skip: HashSet<PathBuf> = prunable(&wal)
        .map_err(|e| io(&wal, e))?
        .into_iter()
        .collect();
    skip.insert(src.join(CLEAN_STOP));
    copy_tree(src, &dest.join(name), &skip)
}

/// Copy a directory tree, each file synced, then each directory.
fn copy_tree(src: &Path, dest: &Path, skip: &HashSet<PathBuf>) -> Result<(), VectorError> {
    std::fs::create_dir_all(dest).map_err(|e| io(dest, e))?;
    for entry in std::fs::read_dir(src).map_err(|e| io(src, e))? {
        let entry = entry.map_err(|e| io(src, e))?;
        let path = entry.path();
        if skip.contains(&path) {
            continue;
        }
        let target = dest.join(entry.file_name());
        let kind = entry.file_type().map_err(|e| io(&path, e))?;
        if kind.is_dir() {
            copy_tree(&path, &target, skip)?;
        } else if kind.is_file() {
            std::fs::copy(&path, &target).map_err(|e| io(&target, e))?;
            std::fs::File::open(&target)
                .and_then(|f| f.sync_all())
                .map_err(|e| io(&target, e))?;
        }
    }
    sync_dir(dest).map_err(|e| io(dest, e))
}

fn io(path: &Path, e: std::io::Error) -> VectorError {
    VectorError::Internal(format!("{}: {e}", path.display()))
}
