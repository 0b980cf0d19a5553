//! What a single host's backup needs of the store: the lock a server holds
//! on its data dir, and an online copy of the SQLite database.

use std::path::Path;

use crate::{Backend, Db, StoreError};

/// The file a server on SQLite holds an exclusive lock on while it runs.
const SERVE_LOCK: &str = "serve.lock";

/// Take the lock a server on SQLite holds on `data_dir` (see
/// [`Db::with_context_cache`]); `None` while another process holds it.
/// Released when the file is dropped.
pub fn lock_data_dir(data_dir: &Path) -> std::io::Result<Option<std::fs::File>> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(data_dir.join(SERVE_LOCK))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

/// The path of the lock file in `data_dir`, for messages.
pub fn data_dir_lock_path(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join(SERVE_LOCK)
}

impl Db {
    /// Write a consistent copy of the SQLite database to the new file
    /// `dest`, while other connections (a serving process) go on reading
    /// and writing: `VACUUM INTO` copies what one read transaction sees, so
    /// the copy holds every transaction committed before it began and
    /// nothing of a later one (docs/decisions/single-host-backup.md says
    /// why this rather than the page-by-page backup API).
    pub async fn copy_into(&self, dest: &Path) -> Result<(), StoreError> {
        if self.backend != Backend::Sqlite {
            return Err(StoreError::Database(sqlx::Error::Configuration(
                "an online copy is made of the SQLite database only".into(),
            )));
        }
        let dest = dest.to_str().ok_or_else(|| {
            StoreError::Database(sqlx::Error::Configuration(
                format!("{} is not UTF-8", dest.display()).into(),
            ))
        })?;
        sqlx::query("VACUUM INTO $1")
            .bind(dest)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
