//! The control socket: how `analyzer backup`, run on the same host, asks
//! the server for a consistent copy of the embedded vector store, which
//! only the process that has it open can take (docs/operations.md).
//!
//! A Unix socket in the data dir (`control.sock`, owner-only): whoever may
//! use it can read the data dir anyway. One JSON line asks, one JSON line
//! answers.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

use analyzer_vectors::VectorStore;

/// The socket's name in the data dir.
pub const SOCKET: &str = "control.sock";

/// The longest request line read.
const MAX_REQUEST_BYTES: u64 = 64 * 1024;

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Request {
    /// Copy the vector store into this new directory.
    SnapshotVectors { into: PathBuf },
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Reply {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Listen on the data dir's control socket until `stop` changes. A socket
/// file left by a server that did not stop cleanly is replaced: the caller
/// holds the data dir's lock, so no other server is listening on it.
pub fn listen(
    data_dir: &Path,
    vectors: Arc<dyn VectorStore>,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let path = data_dir.join(SOCKET);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        tracing::warn!(error = %e, "control socket: accept failed");
                        continue;
                    }
                },
                _ = stop.changed() => break,
            };
            tokio::spawn(answer(stream, Arc::clone(&vectors)));
        }
        let _ = std::fs::remove_file(&path);
    });
    Ok(())
}

async fn answer(stream: UnixStream, vectors: Arc<dyn VectorStore>) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let reply = match BufReader::new(read.take(MAX_REQUEST_BYTES))
        .read_line(&mut line)
        .await
    {
        Err(e) => Reply {
            error: Some(format!("reading the request: {e}")),
        },
        Ok(_) => match serde_json::from_str::<Request>(&line) {
            Err(e) => Reply {
                error: Some(format!("not a request: {e}")),
            },
            Ok(Request::SnapshotVectors { into }) => {
                let began = std::time::Instant::now();
                match vectors.snapshot_to(&into).await {
                    Ok(()) => {
                        tracing::info!(
                            duration_ms = began.elapsed().as_millis() as u64,
                            "vector store copied for a backup"
                        );
                        Reply::default()
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "vector store copy for a backup failed");
                        Reply {
                            error: Some(e.to_string()),
                        }
                    }
                }
            }
        },
    };
    let mut out = serde_json::to_vec(&reply).unwrap_or_else(|_| b"{}".to_vec());
    out.push(b'\n');
    if let Err(e) = write.write_all(&out).await {
        tracing::warn!(error = %e, "control socket: the backup went away before the answer");
    }
}

/// Ask the server on `data_dir` to copy its vector store into `into`.
/// `Ok(false)` when no server listens there.
pub async fn snapshot_vectors(data_dir: &Path, into: &Path) -> anyhow::Result<bool> {
    let path = data_dir.join(SOCKET);
    let stream = match UnixStream::connect(&path).await {
        Ok(stream) => stream,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(false);
        }
        Err(e) => return Err(e).with_context(|| format!("connecting to {}", path.display())),
    };
    let (read, mut write) = stream.into_split();
    let mut request = serde_json::to_vec(&Request::SnapshotVectors {
        into: into.to_owned(),
    })?;
    request.push(b'\n');
    write
        .write_all(&request)
        .await
        .with_context(|| format!("writing to {}", path.display()))?;
    let mut line = String::new();
    BufReader::new(read)
        .read_line(&mut line)
        .await
        .with_context(|| format!("reading from {}", path.display()))?;
    let reply: Reply = serde_json::from_str(&line)
        .with_context(|| format!("the server's answer on {}", path.display()))?;
    match reply.error {
        Some(error) => anyhow::bail!("the server could not copy its vector store: {error}"),
        None => Ok(true),
    }
}
