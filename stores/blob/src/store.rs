//! [`ObjectBlobStore`]: the `exactly::BlobStore` seam over `object_store`.

use std::path::Path as FsPath;
use std::sync::Arc;

use async_trait::async_trait;
use exactly::blob::{BlobError, BlobInfo, BlobStore, ByteStream};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};

/// Streams blobs through any `object_store` backend. Uploads go in parts
/// (multipart on object stores, a temporary file renamed on completion on
/// local disk), so memory holds a few parts at most, whatever the size.
#[derive(Clone, Debug)]
pub struct ObjectBlobStore {
    inner: Arc<dyn ObjectStore>,
    part_bytes: usize,
}

impl ObjectBlobStore {
    /// Wraps any object store.
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        Self {
            inner,
            part_bytes: 8 << 20,
        }
    }

    /// Blobs as files under `dir` (created if missing).
    pub fn local(dir: &FsPath) -> Result<Self, BlobError> {
        std::fs::create_dir_all(dir).map_err(generic)?;
        let fs = object_store::local::LocalFileSystem::new_with_prefix(dir).map_err(generic)?;
        Ok(Self::new(Arc::new(fs)))
    }

    /// Blobs in memory (tests).
    pub fn memory() -> Self {
        Self::new(Arc::new(object_store::memory::InMemory::new()))
    }

    /// Blobs in an S3 bucket. `endpoint` is for S3-compatible servers
    /// (path-style addressing, plain HTTP allowed); credentials and region
    /// come from the usual `AWS_*` environment variables.
    pub fn s3(bucket: &str, endpoint: Option<&str>) -> Result<Self, BlobError> {
        let mut builder = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
        if let Some(endpoint) = endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(true)
                .with_virtual_hosted_style_request(false);
        }
        Ok(Self::new(Arc::new(builder.build().map_err(generic)?)))
    }

    /// Upload part size (default 8 MiB; S3 needs at least 5 MiB).
    pub fn part_bytes(mut self, bytes: usize) -> Self {
        self.part_bytes = bytes.max(1);
        self
    }
}

/// Maps a driver error in one place: missing → `NotFound`, network and
/// server trouble → `Unavailable`, anything else `Generic`.
fn map(key: &str, e: object_store::Error) -> BlobError {
    match e {
        object_store::Error::NotFound { .. } => BlobError::NotFound {
            key: key.to_owned(),
        },
        object_store::Error::Generic { .. } => BlobError::Unavailable { source: e.into() },
        other => generic(other),
    }
}

fn generic(e: impl Into<exactly::BoxError>) -> BlobError {
    BlobError::Generic { source: e.into() }
}

#[async_trait]
impl BlobStore for ObjectBlobStore {
    async fn put(&self, key: &str, mut data: ByteStream) -> Result<u64, BlobError> {
        let path = Path::from(key);
        let upload = self
            .inner
            .put_multipart(&path)
            .await
            .map_err(|e| map(key, e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, self.part_bytes);
        let mut size = 0u64;
        while let Some(chunk) = data.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(e);
                }
            };
            // At most two parts in flight: memory stays bounded.
            writer.wait_for_capacity(2).await.map_err(|e| map(key, e))?;
            size += chunk.len() as u64;
            writer.put(chunk);
        }
        writer.finish().await.map_err(|e| map(key, e))?;
        Ok(size)
    }

    async fn get(&self, key: &str) -> Result<ByteStream, BlobError> {
        let found = self
            .inner
            .get(&Path::from(key))
            .await
            .map_err(|e| map(key, e))?;
        let key = key.to_owned();
        Ok(found.into_stream().map_err(move |e| map(&key, e)).boxed())
    }

    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        match self.inner.delete(&Path::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(map(key, e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<BlobInfo>, BlobError> {
        let path = Path::from(prefix);
        self.inner
            .list(Some(&path))
            .map_ok(|meta| BlobInfo {
                key: meta.location.to_string(),
                size: meta.size,
                modified_millis: meta.last_modified.timestamp_millis().max(0) as u64,
            })
            .map_err(|e| map(prefix, e))
            .try_collect()
            .await
    }
}
