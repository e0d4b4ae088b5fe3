use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;

use super::{bump, roll};
use crate::colocated::Colocated;
use crate::env::Random;
use crate::error::StoreError;
use crate::store::{Capabilities, Precondition, Store, Version, Versioned, Write};
use crate::transport::{Outgoing, Receipt};

/// How often a [`FaultyStore`] misbehaves, in parts per million of calls.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreFaults {
    /// Fail with `Unavailable` before the call reaches the store.
    pub unavailable_ppm: u32,
    /// Apply a write, then report `Unavailable` (the ambiguous outcome of a
    /// connection lost after commit).
    pub lost_ack_ppm: u32,
    /// Report `Conflict` for a write without applying it.
    pub spurious_conflict_ppm: u32,
}

/// Wraps a store and injects [`StoreFaults`] on a seeded schedule.
#[derive(Debug)]
pub struct FaultyStore {
    inner: Arc<dyn Store>,
    faults: StoreFaults,
    random: Arc<dyn Random>,
    injected: AtomicU64,
    enabled: AtomicBool,
}

impl FaultyStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Store>, faults: StoreFaults, random: Arc<dyn Random>) -> Self {
        Self {
            inner,
            faults,
            random,
            injected: AtomicU64::new(0),
            enabled: AtomicBool::new(true),
        }
    }

    /// Turns fault injection on or off.
    pub fn set_enabled(&self, enabled: bool) {
        self.enabled.store(enabled, Ordering::Relaxed);
    }

    fn roll(&self, ppm: u32) -> bool {
        self.enabled.load(Ordering::Relaxed) && roll(self.random.as_ref(), ppm)
    }

    /// How many faults were injected so far.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::Relaxed)
    }

    pub(crate) fn before(&self, key: &str, write: bool) -> Result<(), StoreError> {
        if self.roll(self.faults.unavailable_ppm) {
            bump(&self.injected);
            return Err(StoreError::unavailable(format!(
                "injected: store unreachable ({key})"
            )));
        }
        if write && self.roll(self.faults.spurious_conflict_ppm) {
            bump(&self.injected);
            return Err(StoreError::Conflict {
                key: key.to_owned(),
            });
        }
        Ok(())
    }

    /// As [`FaultyStore::before`] for a write of several keys at once: a
    /// spurious conflict names one of them, as a refused precondition
    /// would.
    pub(crate) fn before_all(&self, writes: &[Write]) -> Result<(), StoreError> {
        self.before(&joined_keys(writes), false)?;
        if !writes.is_empty() && self.roll(self.faults.spurious_conflict_ppm) {
            bump(&self.injected);
            let refused = self.random.next_u64() % writes.len() as u64;
            return Err(StoreError::Conflict {
                key: writes[refused as usize].key.clone(),
            });
        }
        Ok(())
    }

    pub(crate) fn after<T>(
        &self,
        key: &str,
        result: Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        if result.is_ok() && self.roll(self.faults.lost_ack_ppm) {
            bump(&self.injected);
            return Err(StoreError::unavailable(format!(
                "injected: connection lost after the write to {key} committed"
            )));
        }
        result
    }
}

/// The keys of `writes`, for an injected error's message.
fn joined_keys(writes: &[Write]) -> String {
    let keys: Vec<&str> = writes.iter().map(|w| w.key.as_str()).collect();
    keys.join(", ")
}

#[async_trait]
impl Store for FaultyStore {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        self.before(key, false)?;
        self.inner.get(key).await
    }

    async fn get_all(&self, keys: &[&str]) -> Result<Vec<Option<Versioned>>, StoreError> {
        self.before(&keys.join(", "), false)?;
        self.inner.get_all(keys).await
    }

    async fn put(
        &self,
        key: &str,
        value: Bytes,
        precondition: Precondition,
    ) -> Result<Version, StoreError> {
        self.before(key, true)?;
        let result = self.inner.put(key, value, precondition).await;
        self.after(key, result)
    }

    async fn put_all(&self, writes: Vec<Write>) -> Result<Vec<Version>, StoreError> {
        let keys = joined_keys(&writes);
        self.before_all(&writes)?;
        let result = self.inner.put_all(writes).await;
        self.after(&keys, result)
    }

    async fn delete(&self, key: &str, version: &Version) -> Result<(), StoreError> {
        self.before(key, true)?;
        let result = self.inner.delete(key, version).await;
        self.after(key, result)
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        self.before(prefix, false)?;
        self.inner.list(prefix, start_after, limit).await
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
}

/// Injects a [`FaultyStore`]'s faults, on its schedule, into a colocated
/// commit: unreachable before it, a spurious conflict, or the connection
/// lost after it committed (written, sent and acked, reported as failed).
#[derive(Debug)]
pub struct FaultyColocated {
    inner: Arc<dyn Colocated>,
    faults: Arc<FaultyStore>,
}

impl FaultyColocated {
    /// Wraps `inner`, drawing faults from `faults` (and counting them there).
    pub fn new(inner: Arc<dyn Colocated>, faults: Arc<FaultyStore>) -> Self {
        Self { inner, faults }
    }
}

#[async_trait]
impl Colocated for FaultyColocated {
    async fn put_all_with(
        &self,
        writes: Vec<Write>,
        send: Vec<Outgoing>,
        ack: Vec<Receipt>,
    ) -> Result<Vec<Version>, StoreError> {
        let keys = joined_keys(&writes);
        self.faults.before_all(&writes)?;
        let result = self.inner.put_all_with(writes, send, ack).await;
        self.faults.after(&keys, result)
    }
}
