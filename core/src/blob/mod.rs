//! The [`BlobStore`] seam, blob references, and the blob lifecycle:
//! attempt-scoped writes, publication at commit, cleanup of losing attempts,
//! the claim check for large message bodies, and the [`BlobCollector`].
//!
//! Every blob an attempt writes lives under `b/{owner}/{attempt}/{name}`,
//! where `owner` encodes the entity record's key. Before its first write an
//! attempt *registers* itself in the entity record (a conditional write), so
//! the blob is never unaccounted for: it is referenced by a registration, by
//! committed state (the record's `blobs`), or it is garbage.

mod claim;
mod collector;
mod memory;
pub(crate) mod session;

use std::fmt;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use collector::{BlobCollector, CollectReport};
pub use memory::MemoryBlobStore;

pub(crate) use claim::{CLAIM_HEADER, fetch_claim, offload_large, parse_claim};

use crate::error::BoxError;

/// A stream of blob bytes, read or written chunk by chunk.
pub type ByteStream = BoxStream<'static, Result<Bytes, BlobError>>;

/// A stream of one in-memory buffer.
pub fn once(bytes: Bytes) -> ByteStream {
    futures::stream::once(async move { Ok(bytes) }).boxed()
}

/// Reads a whole stream into memory (for bodies known to be small).
pub async fn collect(mut stream: ByteStream) -> Result<Bytes, BlobError> {
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(Bytes::from(out))
}

/// A committed blob: where it is and what it must contain.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BlobRef {
    /// The blob store key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the content, lower-case hex; checked on every read.
    pub sha256: String,
    /// Media type, e.g. `application/pdf`.
    pub content_type: String,
}

/// One stored blob, as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobInfo {
    /// Its key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// Last write, ms since the epoch.
    pub modified_millis: u64,
}

/// An error from a [`BlobStore`] or a blob read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BlobError {
    /// No blob under this key.
    #[error("blob {key:?} not found")]
    NotFound {
        /// The key.
        key: String,
    },
    /// The content does not match its reference: never handed out silently.
    #[error(
        "blob {key:?} is corrupt: expected sha256 {expected} and {expected_size} bytes, read {actual} and {actual_size} bytes"
    )]
    Corrupt {
        /// The key.
        key: String,
        /// Expected checksum.
        expected: String,
        /// Checksum read.
        actual: String,
        /// Expected size.
        expected_size: u64,
        /// Size read.
        actual_size: u64,
    },
    /// Over the configured hard limit.
    #[error("blob of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Size seen so far.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The blob store could not be reached; a retry may work.
    #[error("blob store unavailable: {source}")]
    Unavailable {
        /// The driver's error.
        #[source]
        source: BoxError,
    },
    /// Anything else.
    #[error("blob store error: {source}")]
    Generic {
        /// The driver's error.
        #[source]
        source: BoxError,
    },
}

impl BlobError {
    /// Whether a retry may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

/// Streams blobs in and out. `exactly-blob` implements it for every
/// `object_store::ObjectStore` (local files, S3, Azure, ...).
///
/// # Contract
///
/// - `put` MUST stream (never require the whole blob in memory), MUST be
///   atomic (a reader sees the old blob or the complete new one) and returns
///   the number of bytes written.
/// - `get` of a missing key MUST fail with [`BlobError::NotFound`].
/// - `delete` of a missing key MUST succeed (deletes are retried).
/// - `list` MUST return every blob whose key starts with `prefix`.
#[async_trait]
pub trait BlobStore: Send + Sync + fmt::Debug + 'static {
    /// Writes `data` under `key`.
    async fn put(&self, key: &str, data: ByteStream) -> Result<u64, BlobError>;
    /// Reads the blob under `key`.
    async fn get(&self, key: &str) -> Result<ByteStream, BlobError>;
    /// Deletes the blob under `key`, if any.
    async fn delete(&self, key: &str) -> Result<(), BlobError>;
    /// Lists blobs under `prefix`.
    async fn list(&self, prefix: &str) -> Result<Vec<BlobInfo>, BlobError>;
}

/// Prefix of every blob the runtime writes.
pub const BLOB_PREFIX: &str = "b/";

/// The key prefix of the blobs of `attempt` for the record at `record_key`.
pub(crate) fn attempt_prefix(record_key: &str, attempt: &str) -> String {
    format!(
        "{BLOB_PREFIX}{}/{attempt}/",
        URL_SAFE_NO_PAD.encode(record_key)
    )
}

/// The owner record key and attempt id of a runtime blob key.
pub(crate) fn parse_key(key: &str) -> Option<(String, String)> {
    let mut parts = key.strip_prefix(BLOB_PREFIX)?.splitn(3, '/');
    let owner = URL_SAFE_NO_PAD.decode(parts.next()?).ok()?;
    let attempt = parts.next()?.to_owned();
    parts.next()?;
    Some((String::from_utf8(owner).ok()?, attempt))
}

/// Writes `data` under `key`, hashing as it streams; returns its reference.
/// Stops with [`BlobError::TooLarge`] past `limit`.
pub(crate) async fn write(
    blobs: &dyn BlobStore,
    key: String,
    content_type: &str,
    data: ByteStream,
    limit: u64,
) -> Result<BlobRef, BlobError> {
    let digest = std::sync::Arc::new(std::sync::Mutex::new((Sha256::new(), 0u64)));
    let tap = digest.clone();
    let hashed = data
        .map(move |chunk| {
            let chunk = chunk?;
            let mut d = tap
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            d.1 += chunk.len() as u64;
            if d.1 > limit {
                return Err(BlobError::TooLarge { size: d.1, limit });
            }
            d.0.update(&chunk);
            Ok(chunk)
        })
        .boxed();
    let size = blobs.put(&key, hashed).await?;
    let (hasher, _) = std::mem::take(
        &mut *digest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    Ok(BlobRef {
        key,
        size,
        sha256: format!("{:x}", hasher.finalize()),
        content_type: content_type.to_owned(),
    })
}

/// Reads the blob `r` refers to, failing with [`BlobError::Corrupt`] at the
/// end of the stream if size or checksum differ.
pub async fn read(blobs: &dyn BlobStore, r: &BlobRef) -> Result<ByteStream, BlobError> {
    let stream = blobs.get(&r.key).await?;
    let expected = r.clone();
    let state = (stream, Sha256::new(), 0u64, false);
    Ok(
        futures::stream::unfold(state, move |(mut s, mut h, mut n, done)| {
            let expected = expected.clone();
            async move {
                if done {
                    return None;
                }
                match s.next().await {
                    Some(Ok(chunk)) => {
                        h.update(&chunk);
                        n += chunk.len() as u64;
                        Some((Ok(chunk), (s, h, n, false)))
                    }
                    Some(Err(e)) => Some((Err(e), (s, h, n, true))),
                    None => {
                        let actual = format!("{:x}", h.finalize_reset());
                        if actual == expected.sha256 && n == expected.size {
                            None
                        } else {
                            let corrupt = BlobError::Corrupt {
                                key: expected.key.clone(),
                                expected: expected.sha256.clone(),
                                actual,
                                expected_size: expected.size,
                                actual_size: n,
                            };
                            Some((Err(corrupt), (s, h, n, true)))
                        }
                    }
                }
            }
        })
        .boxed(),
    )
}
