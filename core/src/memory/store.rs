use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::StoreError;
use crate::store::{Capabilities, Precondition, Store, Version, Versioned, Write};

/// A [`Store`] in a `BTreeMap` behind a mutex. Versions come from one
/// counter, so they never repeat, not even after a delete.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    max_value_bytes: Option<usize>,
    atomic_multi_key: bool,
}

#[derive(Debug, Default)]
struct Inner {
    next_version: u64,
    entries: BTreeMap<String, (Bytes, u64)>,
}

impl MemoryStore {
    /// An empty store without a size limit.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store refusing values over `limit` bytes.
    pub fn with_max_value_bytes(limit: usize) -> Self {
        Self {
            max_value_bytes: Some(limit),
            ..Self::default()
        }
    }

    /// This store, offering [`Store::put_all`] (and so the protocol's
    /// one-write commit and consume) or not. Default: not.
    pub fn atomic_multi_key(mut self, atomic: bool) -> Self {
        self.atomic_multi_key = atomic;
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Inner {
    /// `Conflict` unless `key` is as `precondition` says.
    fn check(&self, key: &str, precondition: &Precondition) -> Result<(), StoreError> {
        let current = self.entries.get(key).map(|(_, v)| Version::from(*v));
        match (precondition, &current) {
            (Precondition::Absent, None) => Ok(()),
            (Precondition::Matches(expected), Some(actual)) if expected == actual => Ok(()),
            _ => Err(StoreError::conflict(key)),
        }
    }

    /// Writes `value` at a fresh version.
    fn write(&mut self, key: &str, value: Bytes) -> Version {
        self.next_version += 1;
        let version = self.next_version;
        self.entries.insert(key.to_owned(), (value, version));
        Version::from(version)
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        Ok(self.lock().entries.get(key).map(|(value, v)| Versioned {
            value: value.clone(),
            version: Version::from(*v),
        }))
    }

    async fn get_all(&self, keys: &[&str]) -> Result<Vec<Option<Versioned>>, StoreError> {
        // One lock: one snapshot.
        let inner = self.lock();
        Ok(keys
            .iter()
            .map(|key| {
                inner.entries.get(*key).map(|(value, v)| Versioned {
                    value: value.clone(),
                    version: Version::from(*v),
                })
            })
            .collect())
    }

    async fn put(
        &self,
        key: &str,
        value: Bytes,
        precondition: Precondition,
    ) -> Result<Version, StoreError> {
        if let Some(limit) = self.max_value_bytes {
            StoreError::check_size(key, value.len(), limit)?;
        }
        let mut inner = self.lock();
        inner.check(key, &precondition)?;
        Ok(inner.write(key, value))
    }

    async fn put_all(&self, writes: Vec<Write>) -> Result<Vec<Version>, StoreError> {
        if !self.atomic_multi_key {
            return Err(StoreError::NotSupported(
                "this MemoryStore was built without atomic_multi_key".into(),
            ));
        }
        if let Some(limit) = self.max_value_bytes {
            for w in &writes {
                StoreError::check_size(&w.key, w.value.len(), limit)?;
            }
        }
        let mut inner = self.lock();
        for w in &writes {
            inner.check(&w.key, &w.precondition)?;
        }
        Ok(writes
            .into_iter()
            .map(|w| inner.write(&w.key, w.value))
            .collect())
    }

    async fn delete(&self, key: &str, version: &Version) -> Result<(), StoreError> {
        let mut inner = self.lock();
        match inner.entries.get(key) {
            None => Err(StoreError::not_found(key)),
            Some((_, v)) if Version::from(*v) != *version => Err(StoreError::conflict(key)),
            Some(_) => {
                inner.entries.remove(key);
                Ok(())
            }
        }
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let inner = self.lock();
        let lower = match start_after {
            Some(after) if after >= prefix => Bound::Excluded(after.to_owned()),
            _ => Bound::Included(prefix.to_owned()),
        };
        Ok(inner
            .entries
            .range::<String, _>((lower, Bound::Unbounded))
            .map(|(k, _)| k)
            .take_while(|k| k.starts_with(prefix))
            .take(limit)
            .cloned()
            .collect())
    }

    fn capabilities(&self) -> Capabilities {
        // `get_all` reads under one lock.
        let mut caps = Capabilities::default().with_one_trip_get_all();
        if self.atomic_multi_key {
            caps = caps.with_atomic_multi_key();
        }
        match self.max_value_bytes {
            Some(limit) => caps.with_max_value_bytes(limit),
            None => caps,
        }
    }
}
