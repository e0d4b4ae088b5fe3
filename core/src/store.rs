//! The [`Store`] seam: single-key reads with a [`Version`] and conditional
//! writes. That is all the protocol asks of a database.

use std::fmt;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::StoreError;

/// An opaque version of a stored value (a counter, an ETag, ...). Any write
/// to a key gives it a new version that differs from every earlier one.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Version(String);

impl Version {
    /// Wraps a backend's version string.
    pub fn new(v: impl Into<String>) -> Self {
        Self(v.into())
    }

    /// The backend's version string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<u64> for Version {
    fn from(v: u64) -> Self {
        Self(v.to_string())
    }
}

/// A stored value with the version it was read at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versioned {
    /// The value.
    pub value: Bytes,
    /// Its version.
    pub version: Version,
}

/// The condition a write is made under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Precondition {
    /// The key must not exist (create).
    Absent,
    /// The key must exist with exactly this version (compare-and-swap).
    Matches(Version),
}

impl Precondition {
    /// `Matches(v)` when a version was read, `Absent` when the key was missing.
    pub fn from_read(version: Option<&Version>) -> Self {
        version.map_or(Self::Absent, |v| Self::Matches(v.clone()))
    }
}

/// What a store can do, reported by the backend.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// Largest value the store accepts, in bytes, if it has a limit.
    pub max_value_bytes: Option<usize>,
    /// Longest key the store accepts, in bytes, if it has a limit.
    pub max_key_bytes: Option<usize>,
    /// Whether the store can write several keys atomically
    /// ([`Store::put_all`]). The protocol then consumes the incoming
    /// message's token in the commit itself (`docs/protocol.md`).
    pub atomic_multi_key: bool,
    /// Whether [`Store::get_all`] reads all its keys in one round trip (a
    /// snapshot), rather than one `get` after another. Informative: the
    /// protocol calls `get_all` either way.
    pub one_trip_get_all: bool,
}

impl Capabilities {
    /// Capabilities with the given value size limit and nothing else.
    pub fn with_max_value_bytes(mut self, limit: usize) -> Self {
        self.max_value_bytes = Some(limit);
        self
    }

    /// Capabilities with the given key length limit.
    pub fn with_max_key_bytes(mut self, limit: usize) -> Self {
        self.max_key_bytes = Some(limit);
        self
    }

    /// Capabilities that include [`Store::put_all`].
    pub fn with_atomic_multi_key(mut self) -> Self {
        self.atomic_multi_key = true;
        self
    }

    /// Capabilities with a one-round-trip [`Store::get_all`].
    pub fn with_one_trip_get_all(mut self) -> Self {
        self.one_trip_get_all = true;
        self
    }
}

/// One conditional write of [`Store::put_all`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Write {
    /// The key written.
    pub key: String,
    /// Its new value.
    pub value: Bytes,
    /// What the key must be for the write to happen.
    pub precondition: Precondition,
}

/// The smallest byte string above every key that starts with `prefix`
/// (UTF-8 never contains the byte 0xFF): `prefix <= key < prefix_end(prefix)`
/// selects a prefix as a range of an ordered byte key, for SQL backends
/// whose `LIKE` would treat `%` and `_` in keys as wildcards.
pub fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = Vec::with_capacity(prefix.len() + 1);
    end.extend_from_slice(prefix.as_bytes());
    end.push(0xff);
    end
}

/// Puts the rows one query read for `keys` — (key bytes, value, version) —
/// back in the order of `keys`, `None` where a key has no row (repeated
/// keys get the same row): for SQL stores' [`Store::get_all`].
pub fn in_key_order<V>(
    keys: &[&str],
    rows: Vec<(Vec<u8>, Vec<u8>, V)>,
    version: impl Fn(V) -> Version,
) -> Vec<Option<Versioned>> {
    let found: std::collections::HashMap<Vec<u8>, Versioned> = rows
        .into_iter()
        .map(|(key, value, v)| {
            let stored = Versioned {
                value: Bytes::from(value),
                version: version(v),
            };
            (key, stored)
        })
        .collect();
    keys.iter()
        .map(|key| found.get(key.as_bytes()).cloned())
        .collect()
}

/// A key-value store with single-key conditional writes.
///
/// # Contract
///
/// - `get` MUST return the latest committed value and its version, or `None`
///   if the key does not exist. (`get_returns_latest`)
/// - `put` with [`Precondition::Absent`] MUST fail with
///   [`StoreError::Conflict`] if the key exists; of several concurrent
///   creates of one key exactly one MUST succeed. (`create_race_has_one_winner`)
/// - `put` with [`Precondition::Matches`] MUST fail with
///   [`StoreError::Conflict`] unless the key's current version equals the
///   given one, and MUST be atomic: N tasks incrementing one counter through
///   get + conditional put end at exactly N. (`cas_counter_is_exact`)
/// - Every successful write MUST return a version different from every
///   earlier version of that key, including versions from before a delete.
///   (`versions_never_repeat`)
/// - `delete` MUST fail with [`StoreError::Conflict`] when the version does
///   not match and with [`StoreError::NotFound`] when the key is missing.
/// - A value over the backend's limit MUST fail with
///   [`StoreError::TooLarge`] and leave the key unchanged. (`too_large_is_typed`)
/// - `list` MUST return the keys starting with `prefix`, in ascending byte
///   order, strictly after `start_after`, at most `limit` of them.
/// - `get_all` MUST return what `get` of each key would, in the order asked,
///   reading each key no earlier than the keys before it (one after
///   another, or all in one snapshot). (`get_all_reads_like_get`)
/// - Errors that may succeed on retry (connection lost, throttled, timeout)
///   MUST be reported as [`StoreError::Unavailable`].
/// - Keys are UTF-8 strings of up to 512 bytes and MAY contain any
///   character except control characters. (`odd_keys_round_trip`)
/// - A store whose [`Capabilities::atomic_multi_key`] is set MUST implement
///   `put_all` atomically: every write happens or none does, and a refused
///   precondition is [`StoreError::Conflict`] naming that key.
///   (`put_all_is_all_or_nothing`, `put_all_counters_stay_equal`)
#[async_trait]
pub trait Store: Send + Sync + fmt::Debug + 'static {
    /// Reads a key.
    async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError>;

    /// Reads several keys; returns their values in the order asked. Each
    /// key is read no earlier than the keys before it: the default reads
    /// them one after another with `get`; SQL stores read them in one
    /// statement, one snapshot. The protocol reads an entity's record and
    /// its incoming message's token holder this way: one round trip where
    /// the store can.
    async fn get_all(&self, keys: &[&str]) -> Result<Vec<Option<Versioned>>, StoreError> {
        let mut values = Vec::with_capacity(keys.len());
        for key in keys {
            values.push(self.get(key).await?);
        }
        Ok(values)
    }

    /// Writes a key under a precondition; returns the new version.
    async fn put(
        &self,
        key: &str,
        value: Bytes,
        precondition: Precondition,
    ) -> Result<Version, StoreError>;

    /// Deletes a key if it still has `version`.
    async fn delete(&self, key: &str, version: &Version) -> Result<(), StoreError>;

    /// Lists keys that start with `prefix`, in ascending order.
    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError>;

    /// Writes several distinct keys atomically, each under its
    /// precondition; returns their new versions in order. Only for stores
    /// whose [`Capabilities::atomic_multi_key`] is set; the default refuses
    /// with [`StoreError::NotSupported`].
    async fn put_all(&self, writes: Vec<Write>) -> Result<Vec<Version>, StoreError> {
        let _ = writes;
        Err(StoreError::NotSupported(format!(
            "{self:?} cannot write several keys atomically"
        )))
    }

    /// What this backend can do.
    fn capabilities(&self) -> Capabilities;
}
