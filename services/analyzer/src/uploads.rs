//! Reading uploaded files: their text is extracted by `analyzer extract`,
//! this same binary run as a child process per file, under a memory and
//! CPU limit the child sets on itself and a deadline the parent enforces
//! by killing it. A hostile file (a PDF whose objects recurse, a
//! decompression bomb, a parser bug) can then cost at most one child, never
//! the server: a stack overflow or an abort ends the child, and so does a
//! loop, at the deadline.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use analyzer_extract::{Extracted, Limits, Refusal};
use tokio::sync::Semaphore;

/// Bounds of uploads and of their extraction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadConfig {
    /// Largest file, in bytes.
    pub max_file_bytes: u64,
    /// Largest multipart request (all its files), in bytes.
    pub max_request_bytes: u64,
    /// Most pages of a PDF.
    pub max_pages: u32,
    /// Most bytes a compressed part (a DOCX's XML) may expand to.
    pub max_expanded_bytes: u64,
    /// Longest one file's extraction may take.
    pub timeout: Duration,
    /// Address space of the extracting child, in bytes.
    pub memory_bytes: u64,
    /// Children extracting at once in this process; more files wait.
    pub concurrency: usize,
    /// Longest a file upload (`multipart/form-data` ingest) may take,
    /// transfer and extraction included; other requests have the request
    /// timeout.
    pub request_timeout: Duration,
}

impl UploadConfig {
    /// The defaults: 50 MiB a file, 100 MiB a request, 2,000 pages,
    /// 256 MiB expanded, 30 s and 1 GiB a file, 2 at once, 5 minutes a
    /// request.
    pub const DEFAULT: Self = Self {
        max_file_bytes: 50 * 1024 * 1024,
        max_request_bytes: 100 * 1024 * 1024,
        max_pages: 2000,
        max_expanded_bytes: 256 * 1024 * 1024,
        timeout: Duration::from_secs(30),
        memory_bytes: 1024 * 1024 * 1024,
        concurrency: 2,
        request_timeout: Duration::from_secs(300),
    };
}

/// Runs extractions in child processes, a bounded number at once.
#[derive(Debug, Clone)]
pub struct Extractor {
    config: UploadConfig,
    program: PathBuf,
    temp_dir: PathBuf,
    slots: Arc<Semaphore>,
}

impl Extractor {
    /// Children of `program` (this binary: `std::env::current_exe`), with
    /// uploads and answers kept in `temp_dir` (under the data dir: the one
    /// writable place of a container with a read-only root). Files a
    /// previous run left there are removed.
    pub fn new(config: UploadConfig, program: PathBuf, temp_dir: PathBuf) -> std::io::Result<Self> {
        std::fs::create_dir_all(&temp_dir)?;
        for entry in std::fs::read_dir(&temp_dir)?.flatten() {
            let _ = std::fs::remove_file(entry.path());
        }
        Ok(Self {
            config,
            program,
            temp_dir,
            slots: Arc::new(Semaphore::new(config.concurrency.max(1))),
        })
    }

    /// The bounds in force.
    pub fn config(&self) -> &UploadConfig {
        &self.config
    }

    /// A new temporary file for an upload, removed when dropped.
    pub fn temp_file(&self, prefix: &str) -> std::io::Result<tempfile::NamedTempFile> {
        tempfile::Builder::new()
            .prefix(prefix)
            .tempfile_in(&self.temp_dir)
    }

    /// The text of the file at `path`, uploaded as `name`, of at most
    /// `max_text_bytes`; or why it is refused.
    pub async fn extract(
        &self,
        path: &Path,
        name: &str,
        max_text_bytes: usize,
    ) -> Result<Extracted, Refusal> {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| Refusal::Unreadable("the server is stopping".into()))?;
        let output = self
            .temp_file("answer-")
            .map_err(|e| failed(&format!("no temporary file: {e}")))?;
        let limits = Limits {
            max_pages: self.config.max_pages,
            max_text_bytes,
            max_expanded_bytes: self.config.max_expanded_bytes,
        };
        let cpu_seconds = self.config.timeout.as_secs() + 1;
        let began = std::time::Instant::now();
        let mut child = tokio::process::Command::new(&self.program)
            .arg("extract")
            .arg("--input")
            .arg(path)
            .arg("--name")
            .arg(name)
            .arg("--output")
            .arg(output.path())
            .arg("--limits")
            .arg(serde_json::to_string(&limits).unwrap_or_default())
            .arg("--memory-bytes")
            .arg(self.config.memory_bytes.to_string())
            .arg("--cpu-seconds")
            .arg(cpu_seconds.to_string())
            // The child's own configuration is its arguments: nothing of
            // the server's environment (secrets included) is passed on.
            .env_clear()
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| failed(&format!("could not start the reader: {e}")))?;
        let status = match tokio::time::timeout(self.config.timeout, child.wait()).await {
            Ok(status) => status.map_err(|e| failed(&format!("the reader was lost: {e}")))?,
            Err(_) => {
                let _ = child.kill().await;
                return Err(Refusal::Unreadable(format!(
                    "reading it took longer than {} s",
                    self.config.timeout.as_secs()
                )));
            }
        };
        let written = std::fs::read(output.path()).unwrap_or_default();
        match serde_json::from_slice::<ChildAnswer>(&written) {
            Ok(answer) => {
                let outcome = match &answer.result {
                    Ok(extracted) => extracted.format.name(),
                    Err(_) => "refused",
                };
                tracing::info!(
                    file = name,
                    outcome,
                    pages = answer.result.as_ref().ok().and_then(|e| e.pages),
                    duration_ms = u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX),
                    peak_rss_kb = answer.peak_rss_kb,
                    "{}",
                    analyzer_telemetry::messages::FILE_EXTRACTED
                );
                answer.result
            }
            Err(_) => {
                tracing::warn!(%status, file = name, "the extracting child ended without an answer");
                Err(Refusal::Unreadable(
                    "it could not be read: the reader stopped (out of memory or a malformed file)"
                        .into(),
                ))
            }
        }
    }
}

/// Bound this process's address space and CPU time: past them, an
/// allocation fails (and the child aborts) or the kernel ends it.
#[cfg(target_os = "linux")]
fn limit_self(memory_bytes: u64, cpu_seconds: u64) -> std::io::Result<()> {
    use rustix::process::{Resource, Rlimit, setrlimit};
    for (resource, limit) in [(Resource::As, memory_bytes), (Resource::Cpu, cpu_seconds)] {
        let limit = Rlimit {
            current: Some(limit),
            maximum: Some(limit),
        };
        setrlimit(resource, limit).map_err(std::io::Error::from)?;
    }
    Ok(())
}

/// Elsewhere only the parent's deadline bounds the child.
#[cfg(not(target_os = "linux"))]
fn limit_self(_memory_bytes: u64, _cpu_seconds: u64) -> std::io::Result<()> {
    Ok(())
}

/// What the child writes: the extraction's result and its own peak
/// resident memory (`VmHWM`), for the log line of each file.
#[derive(serde::Serialize, serde::Deserialize)]
struct ChildAnswer {
    result: Result<Extracted, Refusal>,
    peak_rss_kb: Option<u64>,
}

/// This process's peak resident memory, in kB (Linux).
fn peak_rss_kb() -> Option<u64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

fn failed(why: &str) -> Refusal {
    tracing::error!(error = why, "file extraction failed to run");
    Refusal::Unreadable("it could not be read: the reader could not run".into())
}

/// The child's side (`analyzer extract`): limit itself, read, answer in
/// `output` as JSON.
pub fn run_child(
    input: &Path,
    name: &str,
    output: &Path,
    limits: &Limits,
    memory_bytes: u64,
    cpu_seconds: u64,
) -> std::io::Result<()> {
    limit_self(memory_bytes, cpu_seconds)?;
    let bytes = std::fs::read(input)?;
    let result = analyzer_extract::detect(&bytes, name)
        .and_then(|format| analyzer_extract::extract(format, &bytes, limits));
    let answer = ChildAnswer {
        result,
        peak_rss_kb: peak_rss_kb(),
    };
    let json = serde_json::to_vec(&answer).map_err(std::io::Error::other)?;
    std::fs::write(output, json)
}
