//! Backup and restore of a single host's embedded data (`analyzer backup`,
//! `analyzer restore`): the SQLite database and the Qdrant Edge shard,
//! copied while the server keeps serving, to a directory or to S3.
//!
//! The database is the authority and the shard an index of it (see
//! `analyzer_vectors::edge`), so the two are copied a moment apart rather
//! than under one pause of every write: the shard first (by the server,
//! through the control socket, or from the files when no server runs),
//! then the database, online. The database copy therefore holds every
//! document acknowledged before the backup began, and a restore brings the
//! shard in line with it: chunks of documents stored in between are
//! rebuilt from their text, chunks of documents deleted in between are
//! removed, and every document's metadata is written again
//! (docs/decisions/single-host-backup.md).

use std::path::{Component, Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::app::connect_store;
use crate::config::Config;
use analyzer_store::Db;

mod location;

pub use location::Location;

/// The manifest's name in a backup; written last, so a backup without one
/// did not finish.
pub const MANIFEST: &str = "manifest.json";

/// The version of a backup's layout.
const FORMAT: u32 = 1;

/// The data dir's files a backup holds besides the shard.
const DATABASE: &str = "analyzer.db";
const VECTORS: &str = "vectors";
/// The development signing key, when the server generated one: tokens it
/// signed stay valid after a restore.
const DEV_KEY: &str = "dev-jwt-secret";

/// What a backup holds: written as `manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// The layout's version.
    pub format: u32,
    /// The release that wrote it.
    pub version: String,
    /// When the backup began (RFC 3339): every write acknowledged before
    /// is in it.
    pub started_at: String,
    /// When it was complete (RFC 3339).
    pub finished_at: String,
    /// Whether a serving process copied its vector store (`false`: no
    /// server ran on the data dir and the files were copied as they were).
    pub vectors_from_server: bool,
    /// Every file, its path relative to the backup's root.
    pub files: Vec<BackedUpFile>,
}

/// One file of a backup.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackedUpFile {
    /// Relative, `/`-separated.
    pub path: String,
    /// Its size.
    pub bytes: u64,
    /// SHA-256 of its content, hex: checked on restore.
    pub sha256: String,
}

/// What a restore did.
#[derive(Debug, Clone, Serialize)]
pub struct Restored {
    /// The backup's manifest.
    pub backup: Manifest,
    /// Documents in the restored database.
    pub documents: usize,
    /// Documents whose chunks were rebuilt from their text.
    pub rebuilt: usize,
    /// Chunks no restored document owns, removed.
    pub removed: usize,
    /// How long the restore took.
    pub duration_ms: u64,
}

/// Back up the data dir of `config` to `to` (a directory, new or empty, or
/// `s3://bucket/prefix`) while a server may be serving from it.
pub async fn backup(config: &Config, to: &str) -> anyhow::Result<Manifest> {
    let database = embedded_database(config)?;
    let location: Location = to.parse()?;
    let started_at = now();
    if !database.exists() {
        bail!(
            "no database at {}: nothing to back up (is ANALYZER_DATA_DIR the server's?)",
            database.display()
        );
    }
    // The destination is checked before the server is asked for anything.
    location.check_writable().await?;
    let mut staging = Staging::new(config, &location)?;
    let root = staging.path().to_owned();

    let vectors_from_server = copy_vectors(config, &root.join(VECTORS)).await?;
    let db = analyzer_store::Db::connect(&config.store())
        .await
        .context("opening the database")?;
    let copied = db.copy_into(&root.join(DATABASE)).await;
    db.close().await;
    copied.context("copying the database")?;
    let dev_key = config.data_dir.join(DEV_KEY);
    if dev_key.exists() {
        std::fs::copy(&dev_key, root.join(DEV_KEY))
            .with_context(|| format!("copying {}", dev_key.display()))?;
    }

    let files = tokio::task::spawn_blocking({
        let root = root.clone();
        move || describe(&root)
    })
    .await??;
    let manifest = Manifest {
        format: FORMAT,
        version: env!("CARGO_PKG_VERSION").to_owned(),
        started_at,
        finished_at: now(),
        vectors_from_server,
        files,
    };
    location.store(&root, &manifest).await?;
    staging.done = true;
    Ok(manifest)
}

/// Rebuild the (empty) data dir of `config` from the backup at `from`, then
/// bring its shard in line with its database.
pub async fn restore(config: &Config, from: &str) -> anyhow::Result<Restored> {
    let began = Instant::now();
    embedded_database(config)?;
    let location: Location = from.parse()?;
    let data_dir = &config.data_dir;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("ANALYZER_DATA_DIR: cannot create {}", data_dir.display()))?;
    // Held to the end: no server starts on a half-restored data dir.
    let _lock = analyzer_store::lock_data_dir(data_dir)
        .with_context(|| format!("locking {}", data_dir.display()))?
        .ok_or_else(|| {
            anyhow::anyhow!(
                "a server is running on {}: stop it, and restore into an empty data dir",
                data_dir.display()
            )
        })?;
    for name in [DATABASE, VECTORS] {
        if data_dir.join(name).exists() {
            bail!(
                "{} already holds data ({name}): restore into an empty data dir \
                 (set ANALYZER_DATA_DIR, or move this one aside)",
                data_dir.display()
            );
        }
    }
    let manifest = location.manifest().await?;
    if manifest.format != FORMAT {
        bail!(
            "{from}: backup format {} is not one this release reads ({FORMAT})",
            manifest.format
        );
    }
    let incoming = data_dir.join("restoring");
    if incoming.exists() {
        std::fs::remove_dir_all(&incoming)
            .with_context(|| format!("removing {}", incoming.display()))?;
    }
    for file in &manifest.files {
        let relative = relative_path(&file.path)?;
        let dest = incoming.join(&relative);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        location.fetch(&file.path, &dest).await?;
        let (bytes, sha256) = tokio::task::spawn_blocking({
            let dest = dest.clone();
            move || digest(&dest)
        })
        .await??;
        if bytes != file.bytes || sha256 != file.sha256 {
            bail!(
                "{from}: {} does not match the manifest ({bytes} bytes, expected {}): \
                 the backup is damaged",
                file.path,
                file.bytes
            );
        }
    }
    for name in [DATABASE, VECTORS, DEV_KEY] {
        let from = incoming.join(name);
        if from.exists() {
            std::fs::rename(&from, data_dir.join(name))
                .with_context(|| format!("moving {} into place", from.display()))?;
        }
    }
    std::fs::remove_dir_all(&incoming)
        .with_context(|| format!("removing {}", incoming.display()))?;

    let db = connect_store(config).await?;
    let reconciled = reconcile(config, &db).await;
    db.close().await;
    let reconciled = reconciled?;
    Ok(Restored {
        backup: manifest,
        documents: reconciled.documents,
        rebuilt: reconciled.rebuilt,
        removed: reconciled.removed,
        duration_ms: began.elapsed().as_millis() as u64,
    })
}

/// The SQLite file of an embedded configuration; an error naming what to
/// do instead for any other.
fn embedded_database(config: &Config) -> anyhow::Result<PathBuf> {
    if config.database_url.is_some() {
        bail!(
            "DATABASE_URL is set: `analyzer backup` and `restore` cover the embedded \
             SQLite database in the data dir; a PostgreSQL server is backed up by its own \
             means (docs/operations.md)"
        );
    }
    if config.qdrant.is_some() {
        bail!(
            "QDRANT_URL is set: `analyzer backup` and `restore` cover the embedded vector \
             store; a Qdrant server is backed up by its snapshots (docs/operations.md)"
        );
    }
    Ok(config.data_dir.join(DATABASE))
}

/// Copy the vector store into `dest`: by the server, when one serves from
/// the data dir; from the files otherwise, under the data dir's lock.
/// Whether the server made the copy.
async fn copy_vectors(config: &Config, dest: &Path) -> anyhow::Result<bool> {
    let data_dir = &config.data_dir;
    if crate::control::snapshot_vectors(data_dir, dest).await? {
        return Ok(true);
    }
    let lock = analyzer_store::lock_data_dir(data_dir)
        .with_context(|| format!("locking {}", data_dir.display()))?
        .ok_or_else(|| {
            anyhow::anyhow!(
                "a server holds {} but does not answer on {}: is it a release without \
                 backups, or was its socket removed?",
                analyzer_store::data_dir_lock_path(data_dir).display(),
                data_dir.join(crate::control::SOCKET).display()
            )
        })?;
    let (vectors, dest) = (data_dir.join(VECTORS), dest.to_owned());
    tokio::task::spawn_blocking(move || {
        let _lock = lock;
        copy_shards(&vectors, &dest)
    })
    .await??;
    Ok(false)
}

#[cfg(feature = "edge")]
fn copy_shards(vectors: &Path, dest: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dest).with_context(|| format!("creating {}", dest.display()))?;
    analyzer_vectors::edge::copy_shards(vectors, dest)?;
    Ok(())
}

#[cfg(not(feature = "edge"))]
fn copy_shards(_vectors: &Path, _dest: &Path) -> anyhow::Result<()> {
    bail!("this build has no embedded vector store (cargo feature `edge`)")
}

/// What bringing a restored shard in line with its database did.
struct Mended {
    documents: usize,
    rebuilt: usize,
    removed: usize,
}

/// Bring the restored shard in line with the restored database, and close
/// it cleanly.
#[cfg(feature = "edge")]
async fn reconcile(config: &Config, db: &Db) -> anyhow::Result<Mended> {
    use analyzer_vectors::VectorStore as _;
    let (embedder, _) = crate::app::open_ai(config)?;
    let (model, space) = (embedder.model().to_owned(), embedder.space());
    let dir = config.data_dir.join(VECTORS);
    let store = tokio::task::spawn_blocking(move || {
        analyzer_vectors::edge::EdgeStore::open(&dir, &model, space)
    })
    .await
    .context("opening the vector store")??;
    let report = crate::documents::reconcile(
        db,
        &store,
        embedder.as_ref(),
        config.chunking,
        crate::documents::Payloads::FromDatabase,
    )
    .await
    .context("bringing the vector store in line with the database")?;
    store.flush().await.context("closing the vector store")?;
    Ok(Mended {
        documents: report.documents,
        rebuilt: report.rebuilt,
        removed: report.removed,
    })
}

#[cfg(not(feature = "edge"))]
async fn reconcile(_config: &Config, _db: &Db) -> anyhow::Result<Mended> {
    bail!("this build has no embedded vector store (cargo feature `edge`)")
}

/// Where a backup is put together before it is stored: the destination
/// itself for a directory, a directory in the data dir for S3. Absolute,
/// since the server writes into it. What a failed backup wrote is removed,
/// and so is an S3 backup's staging copy once it is uploaded.
struct Staging {
    path: PathBuf,
    /// An S3 backup's: removed whatever the outcome.
    temporary: bool,
    /// The backup is complete: a directory's copy stays.
    done: bool,
}

impl Staging {
    fn new(config: &Config, location: &Location) -> anyhow::Result<Self> {
        let (path, temporary) = match location {
            // Checked to be new or empty (`Location::check_writable`).
            Location::Dir(dir) => (dir.clone(), false),
            Location::S3 { .. } => (
                config
                    .data_dir
                    .join("backups")
                    .join(format!("staging-{}", std::process::id())),
                true,
            ),
        };
        if temporary && path.exists() {
            std::fs::remove_dir_all(&path)
                .with_context(|| format!("removing {}", path.display()))?;
        }
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        let path = std::fs::canonicalize(&path)
            .with_context(|| format!("resolving {}", path.display()))?;
        Ok(Self {
            path,
            temporary,
            done: false,
        })
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if self.done && !self.temporary {
            return;
        }
        // A directory given as the destination stays, emptied.
        let removed = if self.temporary {
            std::fs::remove_dir_all(&self.path)
        } else {
            std::fs::read_dir(&self.path).and_then(|mut entries| {
                entries.try_for_each(|entry| {
                    let path = entry?.path();
                    if path.is_dir() {
                        std::fs::remove_dir_all(path)
                    } else {
                        std::fs::remove_file(path)
                    }
                })
            })
        };
        if let Err(e) = removed {
            tracing::warn!(error = %e, path = %self.path.display(), "could not remove a backup's partial copy");
        }
    }
}

/// Every file under `root` with its size and digest, sorted by path.
fn describe(root: &Path) -> anyhow::Result<Vec<BackedUpFile>> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<BackedUpFile>) -> anyhow::Result<()> {
        for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let entry = entry?;
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                walk(root, &path, out)?;
                continue;
            }
            let relative = path.strip_prefix(root)?;
            let name: Vec<&str> = relative
                .components()
                .map(|c| c.as_os_str().to_str())
                .collect::<Option<_>>()
                .ok_or_else(|| anyhow::anyhow!("{} is not UTF-8", path.display()))?;
            let (bytes, sha256) = digest(&path)?;
            out.push(BackedUpFile {
                path: name.join("/"),
                bytes,
                sha256,
            });
        }
        Ok(())
    }
    let mut files = Vec::new();
    walk(root, root, &mut files)?;
    files.retain(|f| f.path != MANIFEST);
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

/// Size and SHA-256 (hex) of a file: what a manifest says of it.
fn digest(path: &Path) -> anyhow::Result<(u64, String)> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut hasher = Sha256::new();
    let bytes = std::io::copy(&mut file, &mut hasher)
        .with_context(|| format!("reading {}", path.display()))?;
    Ok((bytes, hex::encode(hasher.finalize())))
}

/// A manifest's path as a relative path that stays inside the backup: a
/// damaged or forged manifest must not write outside the data dir.
fn relative_path(path: &str) -> anyhow::Result<PathBuf> {
    let relative = PathBuf::from(path);
    let inside = !path.is_empty()
        && relative
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
    if !inside {
        bail!("the backup's manifest names {path:?}, not a path inside the backup");
    }
    Ok(relative)
}

fn now() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_path_outside_the_backup_is_refused() {
        for bad in ["", "/etc/passwd", "../x", "vectors/../../x", "./x"] {
            assert!(relative_path(bad).is_err(), "{bad:?} must be refused");
        }
        assert_eq!(
            relative_path("vectors/m/segments/a").expect("inside"),
            PathBuf::from("vectors/m/segments/a")
        );
    }
}
