//! The blob side of one attempt: register before the first write, write
//! under the attempt's own prefix, hand the written blobs to the commit.

use std::sync::Arc;

use bytes::Bytes;

use super::{BlobRef, BlobStore, ByteStream, attempt_prefix, write};
use crate::error::HandlerError;
use crate::record::{Loaded, write_record};
use crate::store::Store;

/// What an attempt did with blobs.
pub(crate) struct BlobSession {
    store: Arc<dyn Store>,
    pub blobs: Arc<dyn BlobStore>,
    record_key: String,
    pub attempt: String,
    /// The record as this attempt last wrote or read it; the commit is
    /// conditioned on its version.
    pub loaded: Loaded,
    registered: bool,
    now: u64,
    pub limit: u64,
    /// Blobs written by this attempt: published if it commits.
    pub written: Vec<BlobRef>,
    /// Published blobs the handler asked to delete once it commits.
    pub deleted: Vec<String>,
}

impl BlobSession {
    pub(crate) fn new(
        store: Arc<dyn Store>,
        blobs: Arc<dyn BlobStore>,
        record_key: &str,
        attempt: String,
        loaded: Loaded,
        now: u64,
        limit: u64,
    ) -> Self {
        Self {
            store,
            blobs,
            record_key: record_key.to_owned(),
            attempt,
            loaded,
            registered: false,
            now,
            limit,
            written: Vec::new(),
            deleted: Vec::new(),
        }
    }

    /// Registers this attempt in the entity record before its first blob
    /// write, so no blob it writes is ever unaccounted for
    /// (NoDanglingReference, orphans collected). A lost race means another
    /// attempt got there first: this attempt is superseded.
    async fn register(&mut self) -> Result<(), HandlerError> {
        if self.registered {
            return Ok(());
        }
        let mut record = self.loaded.record.clone();
        record.blob_attempts.insert(self.attempt.clone(), self.now);
        match write_record(self.store.as_ref(), &self.record_key, &self.loaded, &record).await {
            Ok(version) => {
                self.loaded = Loaded {
                    record,
                    version: Some(version),
                };
                self.registered = true;
                Ok(())
            }
            Err(e) if e.is_conflict() => Err(HandlerError::Superseded),
            Err(e) => Err(HandlerError::failed(e)),
        }
    }

    /// Writes a blob named `name` for this attempt.
    pub(crate) async fn write(
        &mut self,
        name: &str,
        content_type: &str,
        data: ByteStream,
    ) -> Result<BlobRef, HandlerError> {
        if name.is_empty() || name.contains('/') || name.chars().any(char::is_control) {
            return Err(HandlerError::failed(format!("invalid blob name {name:?}")));
        }
        self.register().await?;
        let key = format!("{}{name}", attempt_prefix(&self.record_key, &self.attempt));
        let blob = write(self.blobs.as_ref(), key, content_type, data, self.limit)
            .await
            .map_err(HandlerError::failed)?;
        self.written.push(blob.clone());
        Ok(blob)
    }

    pub(crate) async fn write_bytes(
        &mut self,
        name: &str,
        content_type: &str,
        data: Bytes,
    ) -> Result<BlobRef, HandlerError> {
        self.write(name, content_type, super::once(data)).await
    }
}
