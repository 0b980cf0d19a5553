//! Edge's write-ahead log: closed segments pruned before the shard opens
//! (docs/decisions/edge-wal-segments.md).

use std::path::{Path, PathBuf};

/// Remove the closed segments of the shard's write-ahead log in `dir` but
/// the newest, before Edge opens it; how many and their bytes.
///
/// Edge appends every write to the log and never truncates it: qdrant-edge
/// 0.7 neither acknowledges what its segments have persisted nor reads the
/// log back on load (the module docs), so its closed segments only grow,
/// with every write ever made (about 150 MiB once the load harness has
/// seeded 100,000 chunks).
/// One must stay: the log numbers its records on from the last closed
/// segment, and Edge versions each point with the number of the write that
/// made it, ignoring a later write numbered lower. Oldest first, so that a
/// crash midway leaves an unbroken run, as the log requires.
pub(super) fn prune_wal(dir: &Path) -> std::io::Result<(usize, u64)> {
    if !dir.exists() {
        return Ok((0, 0));
    }
    // The lock Edge holds on the log while a shard is open: one another
    // process has open is left to fail to open here.
    let lock = std::fs::File::open(dir)?;
    if lock.try_lock().is_err() {
        return Ok((0, 0));
    }
    let closed = prunable(dir)?;
    let mut bytes = 0;
    for segment in &closed {
        bytes += std::fs::metadata(segment)?.len();
        std::fs::remove_file(segment)?;
    }
    if !closed.is_empty() {
        lock.sync_all()?;
    }
    Ok((closed.len(), bytes))
}

/// The log's closed segments in `dir` but the newest, oldest first: what
/// [`prune_wal`] removes and a copy of the shard leaves out.
pub(super) fn prunable(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut closed = Vec::new();
    for entry in entries {
        let entry = entry?;
        let start = entry
            .file_name()
            .to_str()
            .and_then(|name| name.strip_prefix("closed-"))
            .and_then(|start| start.parse::<u64>().ok());
        if let Some(start) = start {
            closed.push((start, entry.path()));
        }
    }
    closed.sort_unstable();
    closed.pop();
    Ok(closed.into_iter().map(|(_, path)| path).collect())
}
