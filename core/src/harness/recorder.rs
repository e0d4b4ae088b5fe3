//! Observers for the no-ghost and consistent-output checks: every message
//! that committed (in any record's outbox) and every message that was sent.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::colocated::Colocated;
use crate::error::{StoreError, TransportError};
use crate::message::MessageId;
use crate::record::EntityRecord;
use crate::store::{Capabilities as StoreCaps, Precondition, Store, Version, Versioned, Write};
use crate::transport::{Capabilities, Delivery, Outgoing, Receipt, Transport};

/// Message id → body, as committed or as sent.
#[derive(Debug, Default)]
pub(crate) struct Log {
    pub committed: HashMap<MessageId, Bytes>,
    pub sent: Vec<Outgoing>,
    /// Message id → how often the harness received it (any queue).
    pub received: HashMap<MessageId, u32>,
    /// `put_all` calls that succeeded: commits that consumed a token.
    pub one_write_commits: u64,
    /// Colocated commits that succeeded with a send or an ack.
    pub colocated_commits: u64,
}

pub(crate) type SharedLog = Arc<Mutex<Log>>;

pub(crate) fn lock(log: &SharedLog) -> std::sync::MutexGuard<'_, Log> {
    log.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Records the outgoing messages of every record that was written.
#[derive(Debug)]
pub(crate) struct RecordingStore {
    pub inner: Arc<dyn Store>,
    pub log: SharedLog,
}

impl RecordingStore {
    /// Logs the outgoing messages of `records`, just written.
    fn committed(&self, records: &[EntityRecord]) {
        let mut log = lock(&self.log);
        for entry in records.iter().flat_map(|r| &r.outbox) {
            for m in &entry.messages {
                log.committed
                    .entry(m.envelope.id)
                    .or_insert_with(|| m.envelope.body.clone());
            }
            // A call's result is committed once its answer is recorded.
            for r in entry.calls.iter().filter_map(|c| c.result.as_ref()) {
                if !r.body.is_empty() {
                    log.committed.entry(r.id).or_insert_with(|| r.body.clone());
                }
            }
        }
    }
}

#[async_trait]
impl Store for RecordingStore {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        self.inner.get(key).await
    }

    async fn get_all(&self, keys: &[&str]) -> Result<Vec<Option<Versioned>>, StoreError> {
        self.inner.get_all(keys).await
    }

    async fn put(
        &self,
        key: &str,
        value: Bytes,
        precondition: Precondition,
    ) -> Result<Version, StoreError> {
        let record = EntityRecord::decode(key, &value)?;
        let version = self.inner.put(key, value, precondition).await?;
        self.committed(&[record]);
        Ok(version)
    }

    async fn put_all(&self, writes: Vec<Write>) -> Result<Vec<Version>, StoreError> {
        let records = decode_all(&writes)?;
        let versions = self.inner.put_all(writes).await?;
        self.committed(&records);
        lock(&self.log).one_write_commits += 1;
        Ok(versions)
    }

    async fn delete(&self, key: &str, version: &Version) -> Result<(), StoreError> {
        self.inner.delete(key, version).await
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        self.inner.list(prefix, start_after, limit).await
    }

    fn capabilities(&self) -> StoreCaps {
        self.inner.capabilities()
    }
}

fn decode_all(writes: &[Write]) -> Result<Vec<EntityRecord>, StoreError> {
    writes
        .iter()
        .map(|w| EntityRecord::decode(&w.key, &w.value))
        .collect()
}

/// Records what a colocated commit writes and sends, as [`RecordingStore`]
/// and [`RecordingTransport`] do, once it committed: its sends happened
/// only if it did.
#[derive(Debug)]
pub(crate) struct RecordingColocated {
    pub inner: Arc<dyn Colocated>,
    pub store: Arc<RecordingStore>,
}

#[async_trait]
impl Colocated for RecordingColocated {
    async fn put_all_with(
        &self,
        writes: Vec<Write>,
        send: Vec<Outgoing>,
        ack: Vec<Receipt>,
    ) -> Result<Vec<Version>, StoreError> {
        let records = decode_all(&writes)?;
        let versions = self.inner.put_all_with(writes, send.clone(), ack).await?;
        self.store.committed(&records);
        let mut log = lock(&self.store.log);
        log.sent.extend(send);
        log.colocated_commits += 1;
        if versions.len() > 1 {
            log.one_write_commits += 1;
        }
        Ok(versions)
    }
}

/// Records every message handed to the transport.
#[derive(Debug)]
pub(crate) struct RecordingTransport {
    pub inner: Arc<dyn Transport>,
    pub log: SharedLog,
}

#[async_trait]
impl Transport for RecordingTransport {
    async fn send(&self, batch: Vec<Outgoing>) -> Result<(), TransportError> {
        lock(&self.log).sent.extend(batch.iter().cloned());
        self.inner.send(batch).await
    }

    async fn receive(
        &self,
        queue: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>, TransportError> {
        self.inner.receive(queue, max, wait).await
    }

    async fn ack(&self, receipt: &Receipt) -> Result<(), TransportError> {
        self.inner.ack(receipt).await
    }

    async fn nack(&self, receipt: &Receipt, delay: Duration) -> Result<(), TransportError> {
        self.inner.nack(receipt, delay).await
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
}
