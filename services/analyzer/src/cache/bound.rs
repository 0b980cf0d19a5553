//! The in-process cache's bound, from `ANALYZER_CACHE_MAX_BYTES` or the
//! memory limit of the process's cgroup.

/// The in-process cache's bound when `ANALYZER_CACHE_MAX_BYTES` is unset.
pub(super) const DEFAULT_BOUND: usize = 32 * 1024 * 1024;

/// The in-process cache's bound: `explicit` (`ANALYZER_CACHE_MAX_BYTES`)
/// when set, else a sixteenth of the memory limit of the process's cgroup
/// (a container's limit), at most 32 MiB and at least 1 MiB. The cache
/// fills to its bound in seconds under new queries, and it shares the
/// limit with everything else: at 200 MB a 32 MiB cache left the heap under
/// ingest within a few MB of the limit and the server was killed for memory
/// (docs/benchmarks/history.md). From 512 MB up the bound is the full 32 MiB.
pub fn in_process_bound(explicit: Option<usize>) -> usize {
    let limit = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|own| cgroup_memory_limit(&own, |p| std::fs::read_to_string(p).ok()));
    let bound = bound_for(explicit, limit);
    tracing::info!(
        bytes = bound,
        memory_limit = limit,
        source = if explicit.is_some() {
            "ANALYZER_CACHE_MAX_BYTES"
        } else if limit.is_some() {
            "memory limit"
        } else {
            "default"
        },
        "in-process query cache bound"
    );
    bound
}

/// See [`in_process_bound`].
pub(super) fn bound_for(explicit: Option<usize>, memory_limit: Option<u64>) -> usize {
    explicit.unwrap_or_else(|| match memory_limit {
        Some(limit) => usize::try_from(limit / 16)
            .unwrap_or(usize::MAX)
            .clamp(1024 * 1024, DEFAULT_BOUND),
        None => DEFAULT_BOUND,
    })
}

/// The memory limit of the cgroup named in `own` (the text of
/// `/proc/self/cgroup`), read through `read`: cgroup v2's `memory.max`, or
/// v1's `memory.limit_in_bytes`. `None` when there is none (`max`, or v1's
/// "unlimited", a number near 2^63) or it cannot be read.
pub(super) fn cgroup_memory_limit(own: &str, read: impl Fn(&str) -> Option<String>) -> Option<u64> {
    let file = own.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (id, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let path = path.trim_end_matches('/');
        if controllers.split(',').any(|c| c == "memory") {
            Some(format!("/sys/fs/cgroup/memory{path}/memory.limit_in_bytes"))
        } else if id == "0" && controllers.is_empty() {
            Some(format!("/sys/fs/cgroup{path}/memory.max"))
        } else {
            None
        }
    })?;
    // v2's "max" is no number; v1's "unlimited" is one near 2^63.
    read(&file)?
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|&limit| limit < 1 << 62)
}
