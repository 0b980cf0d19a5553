//! A backup's objects in S3, through the AWS SDK with the default
//! credential chain (the instance's or task's role, the environment, a
//! profile). With `AWS_ENDPOINT_URL` (an S3-compatible server, moto in the
//! tests) keys are addressed path-style: such servers rarely resolve a
//! bucket as a host name.

use std::path::Path;

use anyhow::Context as _;
use aws_sdk_s3::error::{DisplayErrorContext, SdkError};
use aws_sdk_s3::primitives::ByteStream;

/// One bucket and the prefix a backup is under.
pub(super) struct Bucket {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
}

impl Bucket {
    pub(super) async fn new(bucket: &str, prefix: &str) -> Self {
        let shared = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let custom_endpoint = ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"]
            .iter()
            .any(|name| std::env::var_os(name).is_some());
        let config = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(custom_endpoint)
            .build();
        Self {
            client: aws_sdk_s3::Client::from_conf(config),
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        }
    }

    fn key(&self, path: &str) -> String {
        if self.prefix.is_empty() {
            path.to_owned()
        } else {
            format!("{}/{path}", self.prefix)
        }
    }

    fn url(&self, path: &str) -> String {
        format!("s3://{}/{}", self.bucket, self.key(path))
    }

    /// The bucket exists and these credentials reach it.
    pub(super) async fn check(&self) -> anyhow::Result<()> {
        self.client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot write the backup to s3://{}: {}",
                    self.bucket,
                    DisplayErrorContext(&e)
                )
            })?;
        Ok(())
    }

    /// Upload the file at `file` as `path` (one request: up to 5 GB).
    pub(super) async fn upload(&self, path: &str, file: &Path) -> anyhow::Result<()> {
        let body = ByteStream::from_path(file)
            .await
            .with_context(|| format!("reading {}", file.display()))?;
        self.put_body(path, body).await
    }

    /// Write `body` as `path`.
    pub(super) async fn put(&self, path: &str, body: Vec<u8>) -> anyhow::Result<()> {
        self.put_body(path, ByteStream::from(body)).await
    }

    async fn put_body(&self, path: &str, body: ByteStream) -> anyhow::Result<()> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(self.key(path))
            .body(body)
            .send()
            .await
            .map_err(|e| {
                anyhow::anyhow!("uploading {}: {}", self.url(path), DisplayErrorContext(&e))
            })?;
        Ok(())
    }

    /// The object `path`, `None` if there is none.
    async fn object(
        &self,
        path: &str,
    ) -> anyhow::Result<Option<aws_sdk_s3::operation::get_object::GetObjectOutput>> {
        match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.key(path))
            .send()
            .await
        {
            Ok(object) => Ok(Some(object)),
            Err(SdkError::ServiceError(e)) if e.err().is_no_such_key() => Ok(None),
            Err(e) => anyhow::bail!("reading {}: {}", self.url(path), DisplayErrorContext(&e)),
        }
    }

    /// The content of the object `path`, `None` if there is none.
    pub(super) async fn get(&self, path: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let Some(object) = self.object(path).await? else {
            return Ok(None);
        };
        let bytes = object
            .body
            .collect()
            .await
            .with_context(|| format!("reading {}", self.url(path)))?;
        Ok(Some(bytes.to_vec()))
    }

    /// Download the object `path` into the new file `dest`, streamed.
    pub(super) async fn download(&self, path: &str, dest: &Path) -> anyhow::Result<()> {
        let object = self
            .object(path)
            .await?
            .ok_or_else(|| anyhow::anyhow!("{} is missing from the backup", self.url(path)))?;
        let mut body = object.body.into_async_read();
        let mut file = tokio::fs::File::create(dest)
            .await
            .with_context(|| format!("creating {}", dest.display()))?;
        tokio::io::copy(&mut body, &mut file)
            .await
            .with_context(|| format!("downloading {}", self.url(path)))?;
        file.sync_all().await?;
        Ok(())
    }
}
