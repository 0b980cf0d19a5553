//! Where a backup is kept: a directory, or a prefix in an S3 bucket.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

use super::{MANIFEST, Manifest};

#[cfg(feature = "s3")]
mod s3;

/// A backup's place, as given to `--to` and `--from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A directory on this host.
    Dir(PathBuf),
    /// `s3://bucket/prefix`: objects `prefix/<path>`, through the AWS SDK
    /// and its default credential chain.
    S3 {
        /// The bucket.
        bucket: String,
        /// The key prefix, without its slashes at either end (may be empty).
        prefix: String,
    },
}

impl std::str::FromStr for Location {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(rest) = s.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                bail!("{s:?}: expected s3://BUCKET/PREFIX");
            }
            return Ok(Self::S3 {
                bucket: bucket.to_owned(),
                prefix: prefix.trim_matches('/').to_owned(),
            });
        }
        if s.is_empty() || s.contains("://") {
            bail!("{s:?}: expected a directory or s3://BUCKET/PREFIX");
        }
        Ok(Self::Dir(PathBuf::from(s)))
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Dir(dir) => write!(f, "{}", dir.display()),
            Self::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

impl Location {
    /// Fail now, before any copy is made, if a backup cannot be written
    /// here: a directory that holds something already or cannot be written,
    /// a bucket that cannot be reached.
    pub(super) async fn check_writable(&self) -> anyhow::Result<()> {
        match self {
            Self::Dir(dir) => {
                let not_writable = |e: std::io::Error| {
                    anyhow::anyhow!("cannot write the backup to {}: {e}", dir.display())
                };
                match std::fs::read_dir(dir) {
                    Ok(mut entries) => {
                        if entries.next().is_some() {
                            bail!(
                                "{} is not empty: a backup goes into a new or empty directory",
                                dir.display()
                            );
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        std::fs::create_dir_all(dir).map_err(not_writable)?;
                    }
                    Err(e) => return Err(not_writable(e)),
                }
                let probe = dir.join(".probe");
                std::fs::write(&probe, b"")
                    .and_then(|()| std::fs::remove_file(&probe))
                    .map_err(not_writable)
            }
            Self::S3 { bucket, prefix } => s3_client(bucket, prefix).await?.check().await,
        }
    }

    /// Store the backup put together in `root` (for a directory, `root` is
    /// the directory already) and its manifest, last.
    pub(super) async fn store(&self, root: &Path, manifest: &Manifest) -> anyhow::Result<()> {
        let json = serde_json::to_vec_pretty(manifest)?;
        match self {
            Self::Dir(dir) => {
                let partial = dir.join(format!("{MANIFEST}.partial"));
                std::fs::write(&partial, &json)
                    .and_then(|()| std::fs::File::open(&partial)?.sync_all())
                    .and_then(|()| std::fs::rename(&partial, dir.join(MANIFEST)))
                    .and_then(|()| std::fs::File::open(dir)?.sync_all())
                    .with_context(|| format!("writing the manifest in {}", dir.display()))
            }
            Self::S3 { bucket, prefix } => {
                let client = s3_client(bucket, prefix).await?;
                for file in &manifest.files {
                    client.upload(&file.path, &root.join(&file.path)).await?;
                }
                client.put(MANIFEST, json).await
            }
        }
    }

    /// The backup's manifest.
    pub(super) async fn manifest(&self) -> anyhow::Result<Manifest> {
        let missing = || {
            anyhow::anyhow!(
                "no backup at {self}: it has no {MANIFEST} (not a backup, or one that did not finish)"
            )
        };
        let json = match self {
            Self::Dir(dir) => match std::fs::read(dir.join(MANIFEST)) {
                Ok(json) => json,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(missing()),
                Err(e) => return Err(e).with_context(|| format!("reading {self}")),
            },
            Self::S3 { bucket, prefix } => s3_client(bucket, prefix)
                .await?
                .get(MANIFEST)
                .await?
                .ok_or_else(missing)?,
        };
        serde_json::from_slice(&json)
            .with_context(|| format!("{self}: {MANIFEST} is not a manifest"))
    }

    /// Copy the backup's file `path` to `dest`.
    pub(super) async fn fetch(&self, path: &str, dest: &Path) -> anyhow::Result<()> {
        match self {
            Self::Dir(dir) => {
                let source = dir.join(path);
                tokio::fs::copy(&source, dest)
                    .await
                    .with_context(|| format!("copying {}", source.display()))?;
                Ok(())
            }
            Self::S3 { bucket, prefix } => {
                s3_client(bucket, prefix).await?.download(path, dest).await
            }
        }
    }
}

#[cfg(feature = "s3")]
async fn s3_client(bucket: &str, prefix: &str) -> anyhow::Result<s3::Bucket> {
    Ok(s3::Bucket::new(bucket, prefix).await)
}

#[cfg(not(feature = "s3"))]
async fn s3_client(_bucket: &str, _prefix: &str) -> anyhow::Result<Unavailable> {
    bail!("this build has no S3 client (cargo feature `s3`)")
}

/// What `s3_client` would return in a build without S3: never made.
#[cfg(not(feature = "s3"))]
enum Unavailable {}

#[cfg(not(feature = "s3"))]
impl Unavailable {
    async fn check(&self) -> anyhow::Result<()> {
        match *self {}
    }
    async fn upload(&self, _path: &str, _file: &Path) -> anyhow::Result<()> {
        match *self {}
    }
    async fn put(&self, _path: &str, _body: Vec<u8>) -> anyhow::Result<()> {
        match *self {}
    }
    async fn get(&self, _path: &str) -> anyhow::Result<Option<Vec<u8>>> {
        match *self {}
    }
    async fn download(&self, _path: &str, _dest: &Path) -> anyhow::Result<()> {
        match *self {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_location_is_a_directory_or_an_s3_prefix() {
        assert_eq!(
            "s3://bucket/a/b/".parse::<Location>().expect("s3"),
            Location::S3 {
                bucket: "bucket".into(),
                prefix: "a/b".into()
            }
        );
        assert_eq!(
            "s3://bucket".parse::<Location>().expect("s3"),
            Location::S3 {
                bucket: "bucket".into(),
                prefix: String::new()
            }
        );
        assert_eq!(
            "/backups/x".parse::<Location>().expect("dir"),
            Location::Dir(PathBuf::from("/backups/x"))
        );
        for bad in ["", "s3://", "s3:///x", "gs://bucket/x"] {
            assert!(bad.parse::<Location>().is_err(), "{bad:?} must be refused");
        }
    }
}
