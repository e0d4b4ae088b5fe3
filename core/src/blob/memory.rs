//! [`MemoryBlobStore`]: blobs in a map, for tests and examples.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;

use super::{BlobError, BlobInfo, BlobStore, ByteStream, once};
use crate::env::{Clock, SystemClock};

/// A [`BlobStore`] in memory. `put` still consumes its stream chunk by
/// chunk, so limits and hashing behave as with a real store.
#[derive(Debug)]
pub struct MemoryBlobStore {
    blobs: Mutex<BTreeMap<String, (Bytes, u64)>>,
    clock: Arc<dyn Clock>,
}

impl Default for MemoryBlobStore {
    fn default() -> Self {
        Self::with_clock(Arc::new(SystemClock))
    }
}

impl MemoryBlobStore {
    /// An empty store on the system clock.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store stamping writes with `clock`.
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        Self {
            blobs: Mutex::default(),
            clock,
        }
    }

    /// Replaces a blob's bytes without any check (to simulate corruption).
    pub fn tamper(&self, key: &str, bytes: Bytes) {
        if let Some(slot) = self.lock().get_mut(key) {
            slot.0 = bytes;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, (Bytes, u64)>> {
        self.blobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl BlobStore for MemoryBlobStore {
    async fn put(&self, key: &str, mut data: ByteStream) -> Result<u64, BlobError> {
        let mut buf = Vec::new();
        while let Some(chunk) = data.next().await {
            buf.extend_from_slice(&chunk?);
        }
        let size = buf.len() as u64;
        self.lock()
            .insert(key.to_owned(), (Bytes::from(buf), self.clock.now_millis()));
        Ok(size)
    }

    async fn get(&self, key: &str) -> Result<ByteStream, BlobError> {
        let found = self.lock().get(key).map(|(b, _)| b.clone());
        found.map(once).ok_or_else(|| BlobError::NotFound {
            key: key.to_owned(),
        })
    }

    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        self.lock().remove(key);
        Ok(())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<BlobInfo>, BlobError> {
        Ok(self
            .lock()
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, (b, at))| BlobInfo {
                key: k.clone(),
                size: b.len() as u64,
                modified_millis: *at,
            })
            .collect())
    }
}
