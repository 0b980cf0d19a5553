//! `--memory-limit`: the server in a memory cgroup of its own, as a
//! container runtime (ECS, Docker, Kubernetes) would run it. The group's
//! usage counts what the task's limit counts: the heap and the page cache
//! of the files the server reads and writes, which the kernel reclaims
//! before it kills anything. Needs root and the memory controller (cgroup
//! v1 or v2).

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

/// Which cgroup hierarchy the memory controller is in.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Version {
    V1,
    V2,
}

/// A memory cgroup made for one run and removed after it.
pub struct MemoryCgroup {
    dir: PathBuf,
    version: Version,
    limit_bytes: u64,
}

impl MemoryCgroup {
    /// A new group holding its processes to `limit_bytes` of memory.
    pub fn create(limit_bytes: u64) -> anyhow::Result<Self> {
        let name = format!("analyzer-load-{}", std::process::id());
        let root = Path::new("/sys/fs/cgroup");
        let (version, dir) = if root.join("cgroup.controllers").exists() {
            let enabled =
                std::fs::read_to_string(root.join("cgroup.subtree_control")).unwrap_or_default();
            if !enabled.split_whitespace().any(|c| c == "memory") {
                bail!(
                    "--memory-limit: the memory controller is not enabled for child groups \
                     of /sys/fs/cgroup (cgroup.subtree_control: {:?})",
                    enabled.trim()
                );
            }
            (Version::V2, root.join(name))
        } else if root.join("memory").is_dir() {
            (Version::V1, root.join("memory").join(name))
        } else {
            bail!("--memory-limit: no cgroup memory controller under /sys/fs/cgroup");
        };
        std::fs::create_dir(&dir).with_context(|| {
            format!(
                "--memory-limit: create {} (needs root and a writable cgroupfs)",
                dir.display()
            )
        })?;
        let group = Self {
            dir,
            version,
            limit_bytes,
        };
        match version {
            Version::V1 => group.write("memory.limit_in_bytes", &limit_bytes.to_string())?,
            Version::V2 => {
                group.write("memory.max", &limit_bytes.to_string())?;
                // No swap to spill into, as on Fargate.
                let _ = group.write("memory.swap.max", "0");
            }
        }
        Ok(group)
    }

    /// The group's directory: [`analyzer_tests::Options::cgroup`].
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// "200 MB, 191 MiB (cgroup v1, /sys/fs/cgroup/memory/analyzer-load-…)".
    pub fn describe(&self) -> String {
        let version = match self.version {
            Version::V1 => "v1",
            Version::V2 => "v2",
        };
        format!(
            "{} MB, {:.0} MiB (cgroup {version}, {})",
            self.limit_bytes / 1_000_000,
            self.limit_bytes as f64 / 1_048_576.0,
            self.dir.display()
        )
    }

    fn write(&self, file: &str, value: &str) -> anyhow::Result<()> {
        std::fs::write(self.dir.join(file), value)
            .with_context(|| format!("write {value} to {}", self.dir.join(file).display()))
    }

    fn read_u64(&self, file: &str) -> Option<u64> {
        std::fs::read_to_string(self.dir.join(file))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// A `key value` line of a flat-keyed file (memory.events,
    /// memory.oom_control).
    fn keyed(&self, file: &str, key: &str) -> Option<u64> {
        std::fs::read_to_string(self.dir.join(file))
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
    }

    /// Start a new peak. cgroup v1 only: v2 resets memory.peak for the
    /// file descriptor that wrote it alone, so there a scenario's peak is
    /// the largest since the group was made.
    pub fn reset_peak(&self) {
        if self.version == Version::V1 {
            let _ = std::fs::write(self.dir.join("memory.max_usage_in_bytes"), "0");
        }
    }

    /// The group's largest usage since the last reset, MiB: heap and page
    /// cache together.
    pub fn peak_mib(&self) -> f64 {
        let file = match self.version {
            Version::V1 => "memory.max_usage_in_bytes",
            Version::V2 => "memory.peak",
        };
        self.read_u64(file).unwrap_or(0) as f64 / 1_048_576.0
    }

    /// How often usage reached the limit (and the kernel reclaimed), and
    /// how many processes it killed for memory, since the group was made.
    pub fn pressure(&self) -> (u64, u64) {
        match self.version {
            Version::V1 => (
                self.read_u64("memory.failcnt").unwrap_or(0),
                self.keyed("memory.oom_control", "oom_kill").unwrap_or(0),
            ),
            Version::V2 => (
                self.keyed("memory.events", "max").unwrap_or(0),
                self.keyed("memory.events", "oom_kill").unwrap_or(0),
            ),
        }
    }
}

impl Drop for MemoryCgroup {
    /// Remove the group once its processes are gone (the servers are
    /// killed and waited for before this runs). Says so if the kernel
    /// killed the server for memory: a run that stops on a refused
    /// connection then has its cause (this runs while a panic unwinds too).
    fn drop(&mut self) {
        let (hits, kills) = self.pressure();
        if kills > 0 {
            eprintln!(
                "the memory limit ({}) was reached {hits} times and the kernel killed {kills} \
                 process(es) in the group for memory",
                self.describe()
            );
        }
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        eprintln!("could not remove the cgroup {}", self.dir.display());
    }
}
