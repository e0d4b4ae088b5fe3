//! A [`Store`] layer that counts calls: every call is one round trip to the
//! database, so the counts explain where the time goes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use exactly::store::Capabilities;
use exactly::{
    Colocated, Outgoing, Precondition, Receipt, Store, StoreError, Version, Versioned, Write,
};

use crate::observed::Observed;

/// Calls made through one [`CountingStore`], by kind.
#[derive(Debug, Default)]
pub struct StoreCounts {
    get: AtomicU64,
    put: AtomicU64,
    put_all: AtomicU64,
    delete: AtomicU64,
    list: AtomicU64,
    conflict: AtomicU64,
}

/// A copy of [`StoreCounts`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreOps {
    pub get: u64,
    pub put: u64,
    /// Atomic multi-key writes (`put_all`): one round trip each.
    pub put_all: u64,
    pub delete: u64,
    pub list: u64,
    /// Conditional writes that failed their precondition: commit races and
    /// the finishing steps' bookkeeping races alike (the endpoint's own
    /// `Stats::conflicts` counts only the former).
    pub conflict: u64,
}

impl StoreOps {
    /// Reads: `get` and `list`.
    pub fn reads(&self) -> u64 {
        self.get + self.list
    }

    /// Writes: `put`, `put_all` and `delete`.
    pub fn writes(&self) -> u64 {
        self.put + self.put_all + self.delete
    }

    /// Every round trip.
    pub fn total(&self) -> u64 {
        self.reads() + self.writes()
    }

    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &StoreOps) -> StoreOps {
        StoreOps {
            get: self.get - earlier.get,
            put: self.put - earlier.put,
            put_all: self.put_all - earlier.put_all,
            delete: self.delete - earlier.delete,
            list: self.list - earlier.list,
            conflict: self.conflict - earlier.conflict,
        }
    }
}

impl StoreCounts {
    pub fn snapshot(&self) -> StoreOps {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StoreOps {
            get: get(&self.get),
            put: get(&self.put),
            put_all: get(&self.put_all),
            delete: get(&self.delete),
            list: get(&self.list),
            conflict: get(&self.conflict),
        }
    }
}

/// Wraps a store and counts each call made through it, failed ones too (a
/// conflicting write is still a round trip).
#[derive(Debug)]
pub struct CountingStore {
    inner: Arc<dyn Store>,
    counts: Arc<StoreCounts>,
}

impl CountingStore {
    pub fn new(inner: Arc<dyn Store>) -> Self {
        Self {
            inner,
            counts: Arc::default(),
        }
    }

    /// The counters, readable while the store is in use.
    pub fn counts(&self) -> Arc<StoreCounts> {
        self.counts.clone()
    }
}

impl CountingStore {
    fn count_conflict<T>(&self, result: &Result<T, StoreError>) {
        if result.as_ref().is_err_and(StoreError::is_conflict) {
            bump(&self.counts.conflict);
        }
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

#[async_trait]
impl Store for CountingStore {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        bump(&self.counts.get);
        self.inner.get(key).await
    }

    /// One read where the store does it in one round trip; otherwise
    /// one per key, as it then is.
    async fn get_all(&self, keys: &[&str]) -> Result<Vec<Option<Versioned>>, StoreError> {
        let trips = if self.inner.capabilities().one_trip_get_all {
            1
        } else {
            keys.len() as u64
        };
        self.counts.get.fetch_add(trips, Ordering::Relaxed);
        self.inner.get_all(keys).await
    }

    async fn put(
        &self,
        key: &str,
        value: Bytes,
        precondition: Precondition,
    ) -> Result<Version, StoreError> {
        bump(&self.counts.put);
        let result = self.inner.put(key, value, precondition).await;
        self.count_conflict(&result);
        result
    }

    async fn put_all(&self, writes: Vec<Write>) -> Result<Vec<Version>, StoreError> {
        bump(&self.counts.put_all);
        let result = self.inner.put_all(writes).await;
        self.count_conflict(&result);
        result
    }

    async fn delete(&self, key: &str, version: &Version) -> Result<(), StoreError> {
        bump(&self.counts.delete);
        let result = self.inner.delete(key, version).await;
        self.count_conflict(&result);
        result
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        bump(&self.counts.list);
        self.inner.list(prefix, start_after, limit).await
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use exactly::MemoryStore;

    #[tokio::test]
    async fn counts_every_kind_of_call() {
        let store = CountingStore::new(Arc::new(MemoryStore::new().atomic_multi_key(true)));
        let counts = store.counts();
        let v = store
            .put("k", Bytes::from_static(b"1"), Precondition::Absent)
            .await
            .unwrap();
        // A lost race is still a round trip.
        assert!(
            store
                .put("k", Bytes::from_static(b"2"), Precondition::Absent)
                .await
                .is_err()
        );
        store.get("k").await.unwrap();
        store.list("", None, 10).await.unwrap();
        store.delete("k", &v).await.unwrap();
        let pair = |key: &str| Write {
            key: key.to_owned(),
            value: Bytes::from_static(b"3"),
            precondition: Precondition::Absent,
        };
        store.put_all(vec![pair("a"), pair("b")]).await.unwrap();
        let ops = counts.snapshot();
        assert_eq!(
            ops,
            StoreOps {
                get: 1,
                put: 2,
                put_all: 1,
                delete: 1,
                list: 1,
                conflict: 1,
            }
        );
        assert_eq!((ops.reads(), ops.writes(), ops.total()), (2, 4, 6));
    }
}

/// A [`Colocated`] layer that counts each transaction as one `put_all` of
/// `store` (one round trip) and tells `observed`, if given, of the sends
/// and acks it made: the endpoints' acks complete messages there.
#[derive(Debug)]
pub struct CountingColocated {
    pub inner: Arc<dyn Colocated>,
    pub store: Arc<CountingStore>,
    pub observed: Option<Arc<Observed>>,
}

#[async_trait]
impl Colocated for CountingColocated {
    async fn put_all_with(
        &self,
        writes: Vec<Write>,
        send: Vec<Outgoing>,
        ack: Vec<Receipt>,
    ) -> Result<Vec<Version>, StoreError> {
        bump(&self.store.counts.put_all);
        let sends = send.len();
        let acked = ack.clone();
        let result = self.inner.put_all_with(writes, send, ack).await;
        self.store.count_conflict(&result);
        if let (Ok(_), Some(observed)) = (&result, &self.observed) {
            observed.committed_with(sends, &acked);
        }
        result
    }
}
