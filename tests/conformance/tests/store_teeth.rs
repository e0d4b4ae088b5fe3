//! Every store check can fail: each runs here on a store with one flaw
//! and must panic with the clause that flaw breaks.

#[macro_use]
mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use exactly::store::Capabilities;
use exactly::{MemoryStore, Precondition, Store, StoreError, Version, Versioned, Write};
use exactly_conformance::{run_store, store};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flaw {
    /// `get` returns nothing.
    ForgetfulGet,
    /// `Matches` writes whatever the version (a read, a yield, a write).
    BlindMatches,
    /// `Absent` overwrites an existing key.
    CreateOverwrites,
    /// Versions count writes per key, starting over after a delete.
    PerKeyVersions,
    /// `delete` ignores the version.
    BlindDelete,
    /// Reports a limit it does not enforce.
    UnenforcedLimit,
    /// Lists each page in descending order.
    DescendingList,
    /// Treats `%`, `_`, `*`, `?`, `[` in a prefix as wildcards.
    WildcardPrefix,
    /// Trims spaces from keys.
    TrimsKeys,
    /// Claims `atomic_multi_key`, but `put_all` is one `put` after another.
    TornPutAll,
    /// Claims `atomic_multi_key`, but `put_all` ignores `Matches`.
    BlindPutAll,
    /// `get_all` returns the values in reverse order.
    MisorderedGetAll,
    /// `get_all` reads the keys last to first.
    BackwardGetAll,
}

#[derive(Debug)]
struct Flawed {
    inner: MemoryStore,
    flaw: Flaw,
    /// For `PerKeyVersions`: key → (writes since create, inner version).
    counts: Mutex<HashMap<String, (u64, Version)>>,
}

impl Flawed {
    fn has(&self, flaw: Flaw) -> bool {
        self.flaw == flaw
    }

    fn key<'k>(&self, key: &'k str) -> &'k str {
        if self.has(Flaw::TrimsKeys) {
            key.trim()
        } else {
            key
        }
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u64, Version)>> {
        self.counts.lock().expect("counts")
    }

    /// The inner version a `PerKeyVersions` version stands for.
    fn inner_version(&self, key: &str, v: &Version) -> Version {
        match self.counts().get(key) {
            Some((n, inner)) if Version::from(*n) == *v => inner.clone(),
            _ => Version::new("no such version"),
        }
    }
}

#[async_trait]
impl Store for Flawed {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        if self.has(Flaw::ForgetfulGet) {
            return Ok(None);
        }
        let got = self.inner.get(self.key(key)).await?;
        Ok(match (got, self.has(Flaw::PerKeyVersions)) {
            (Some(v), true) => {
                let n = self.counts().get(key).map_or(0, |(n, _)| *n);
                Some(Versioned {
                    value: v.value,
                    version: Version::from(n),
                })
            }
            (got, _) => got,
        })
    }

    async fn put(&self, key: &str, value: Bytes, pre: Precondition) -> Result<Version, StoreError> {
        let key = self.key(key);
        if matches!(self.flaw, Flaw::BlindMatches | Flaw::CreateOverwrites) {
            // Let the others write between the caller's read and ours.
            tokio::task::yield_now().await;
        }
        let current = self.inner.get(key).await?.map(|v| v.version);
        let pre = match (self.flaw, pre, current) {
            (Flaw::BlindMatches, Precondition::Matches(_), Some(now))
            | (Flaw::CreateOverwrites, Precondition::Absent, Some(now)) => {
                Precondition::Matches(now)
            }
            (Flaw::PerKeyVersions, Precondition::Matches(v), _) => {
                Precondition::Matches(self.inner_version(key, &v))
            }
            (_, pre, _) => pre,
        };
        let version = self.inner.put(key, value, pre).await?;
        if !self.has(Flaw::PerKeyVersions) {
            return Ok(version);
        }
        let mut counts = self.counts();
        let entry = counts.entry(key.to_owned()).or_insert((0, version.clone()));
        *entry = (entry.0 + 1, version);
        Ok(Version::from(entry.0))
    }

    async fn put_all(&self, writes: Vec<Write>) -> Result<Vec<Version>, StoreError> {
        let mut versions = Vec::new();
        for w in writes {
            let pre = match (self.flaw, w.precondition) {
                (Flaw::BlindPutAll, Precondition::Matches(_)) => {
                    tokio::task::yield_now().await;
                    Precondition::from_read(
                        self.inner.get(&w.key).await?.map(|v| v.version).as_ref(),
                    )
                }
                (_, pre) => pre,
            };
            versions.push(self.inner.put(&w.key, w.value, pre).await?);
        }
        Ok(versions)
    }

    async fn delete(&self, key: &str, version: &Version) -> Result<(), StoreError> {
        let key = self.key(key);
        let version = match self.flaw {
            Flaw::BlindDelete => match self.inner.get(key).await? {
                Some(v) => v.version,
                None => version.clone(),
            },
            Flaw::PerKeyVersions => self.inner_version(key, version),
            _ => version.clone(),
        };
        self.inner.delete(key, &version).await?;
        self.counts().remove(key);
        Ok(())
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let prefix = match self.flaw {
            Flaw::WildcardPrefix => prefix.split(['%', '_', '*', '?', '[']).next().unwrap_or(""),
            _ => prefix,
        };
        let mut keys = self.inner.list(prefix, start_after, limit).await?;
        if self.has(Flaw::DescendingList) {
            keys.reverse();
        }
        Ok(keys)
    }

    async fn get_all(&self, keys: &[&str]) -> Result<Vec<Option<Versioned>>, StoreError> {
        if !matches!(self.flaw, Flaw::MisorderedGetAll | Flaw::BackwardGetAll) {
            return self.inner.get_all(keys).await;
        }
        let mut values = Vec::with_capacity(keys.len());
        for key in keys.iter().rev() {
            values.push(self.get(key).await?);
            // Let the writer move between the reads.
            tokio::task::yield_now().await;
        }
        if !self.has(Flaw::MisorderedGetAll) {
            values.reverse();
        }
        Ok(values)
    }

    fn capabilities(&self) -> Capabilities {
        let caps = Capabilities::default().with_max_value_bytes(1024);
        match self.flaw {
            Flaw::TornPutAll | Flaw::BlindPutAll => caps.with_atomic_multi_key(),
            _ => caps,
        }
    }
}

/// Runs `check` on a store with `flaw`; the check must panic.
fn flawed<F: std::future::Future<Output = ()>>(
    flaw: Flaw,
    check: impl FnOnce(Arc<dyn Store>, String) -> F,
) {
    let inner = match flaw {
        Flaw::UnenforcedLimit => MemoryStore::new(),
        _ => MemoryStore::with_max_value_bytes(1024),
    };
    let store = Flawed {
        inner,
        flaw,
        counts: Mutex::default(),
    };
    run_store("teeth", |_| async { store }, check);
}

caught!(
    forgetful_get,
    ForgetfulGet,
    store::get_returns_latest,
    "read after create"
);
caught!(
    blind_cas_conflicts,
    BlindMatches,
    store::conditional_put_conflicts,
    "stale version"
);
caught!(
    blind_cas_counter,
    BlindMatches,
    store::cas_counter_is_exact,
    "increments"
);
caught!(
    create_overwrites,
    CreateOverwrites,
    store::create_race_has_one_winner,
    "creates succeeded"
);
caught!(
    per_key_versions,
    PerKeyVersions,
    store::versions_never_repeat,
    "repeated"
);
caught!(
    blind_delete,
    BlindDelete,
    store::delete_checks_version,
    "wrong version"
);
caught!(
    unenforced_limit,
    UnenforcedLimit,
    store::too_large_is_typed,
    "expected TooLarge"
);
caught!(
    descending_list,
    DescendingList,
    store::list_pages_in_byte_order,
    "whole prefix"
);
caught!(
    wildcard_prefix,
    WildcardPrefix,
    store::list_prefix_is_literal,
    "must match itself only"
);
caught!(
    trims_keys,
    TrimsKeys,
    store::odd_keys_round_trip,
    "list by the key itself"
);
caught!(
    torn_put_all,
    TornPutAll,
    store::put_all_is_all_or_nothing,
    "a write of a failed put_all happened"
);
caught!(
    blind_put_all,
    BlindPutAll,
    store::put_all_counters_stay_equal,
    "lost increments"
);
caught!(
    misordered_get_all,
    MisorderedGetAll,
    store::get_all_reads_like_get,
    "get_all of [a, missing, b, a]"
);
caught!(
    backward_get_all,
    BackwardGetAll,
    store::get_all_reads_in_order,
    "behind"
);
