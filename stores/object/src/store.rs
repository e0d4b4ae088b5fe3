//! [`ObjectStoreStore`]: the `Store` contract on conditional PUTs.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use exactly::store::Capabilities;
use exactly::{Precondition, Store, StoreError, Version, Versioned};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{GetOptions, ObjectStore, ObjectStoreExt, PutMode, PutPayload, UpdateVersion};

use crate::body::{self, Content};
use crate::error::map_err;
use crate::key;

/// Default largest value accepted: 16 MiB. Entity records are meant to be
/// small; large payloads belong in a blob store behind a claim check.
pub const DEFAULT_MAX_VALUE_BYTES: usize = 16 * 1024 * 1024;

/// Longest object name S3 and Azure Blob accept, in bytes.
pub const MAX_NAME_BYTES: usize = 1024;

/// A [`Store`] on any [`ObjectStore`] that honours conditional writes.
///
/// Each key is one object under `{root}/kv/` ([`crate::key`] has the
/// name encoding). [`Precondition::Absent`] is a `PutMode::Create`
/// (`If-None-Match: *`); [`Precondition::Matches`] a `PutMode::Update`
/// at the ETag (and object version) the [`Version`] holds (`If-Match`).
/// `delete` overwrites the object with a tombstone by the same
/// conditional update — object_store has no conditional delete, and an
/// unconditional one could remove a value a concurrent writer just put
/// there — and a later create replaces the tombstone, again conditionally.
/// Tombstones are invisible to `get` and `list` (see `docs/stores.md` for
/// what they cost).
///
/// Built by [`ObjectStoreStore::builder`] or a constructor in
/// [`crate::backends`], all of which first probe that the backend really
/// refuses a second create and a stale update.
#[derive(Clone)]
pub struct ObjectStoreStore {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) kv: Path,
    pub(crate) max_value_bytes: usize,
    pub(crate) sorted_listing: bool,
}

impl fmt::Debug for ObjectStoreStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The backend's Display (e.g. `AmazonS3(bucket)`), never its
        // configuration, which may hold credentials.
        f.debug_struct("ObjectStoreStore")
            .field("backend", &self.store.to_string())
            .field("root", &self.kv.as_ref())
            .field("max_value_bytes", &self.max_value_bytes)
            .finish_non_exhaustive()
    }
}

/// A failed conditional put is a conflict, whatever the backend calls it
/// (S3 answers a missing object's `If-Match` with 404, Azure with 412).
fn put_err(error: object_store::Error, key: &str) -> StoreError {
    use object_store::Error as E;
    match error {
        E::NotFound { .. } | E::AlreadyExists { .. } | E::Precondition { .. } => {
            StoreError::conflict(key)
        }
        e => map_err(e, key),
    }
}

impl ObjectStoreStore {
    /// The object name of `key`; refuses keys whose name is too long.
    fn path(&self, key: &str) -> Result<Path, StoreError> {
        let path = key::join(&self.kv, &key::encode(key, false));
        if path.as_ref().len() > MAX_NAME_BYTES {
            return Err(StoreError::InvalidKey {
                key: key.chars().take(80).collect(),
                reason: "longer than the object store's 1024-byte name limit once encoded",
            });
        }
        Ok(path)
    }

    async fn put_mode(
        &self,
        key: &str,
        path: &Path,
        payload: PutPayload,
        mode: PutMode,
    ) -> Result<Version, StoreError> {
        let result = self
            .store
            .put_opts(path, payload, mode.into())
            .await
            .map_err(|e| put_err(e, key))?;
        Ok(body::version(result.e_tag, result.version))
    }

    /// `Absent`: create, or replace a tombstone still at the version read.
    async fn create(
        &self,
        key: &str,
        path: &Path,
        payload: PutPayload,
    ) -> Result<Version, StoreError> {
        match self
            .put_mode(key, path, payload.clone(), PutMode::Create)
            .await
        {
            Err(StoreError::Conflict { .. }) => {}
            done => return done,
        }
        let meta = match self.store.head(path).await {
            Ok(meta) => meta,
            Err(object_store::Error::NotFound { .. }) => return Err(StoreError::conflict(key)),
            Err(e) => return Err(map_err(e, key)),
        };
        if !body::is_tombstone(&meta) {
            return Err(StoreError::conflict(key));
        }
        let at = UpdateVersion {
            e_tag: meta.e_tag,
            version: meta.version,
        };
        self.put_mode(key, path, payload, PutMode::Update(at)).await
    }

    /// A conditional update at `version`; `Conflict` if it cannot match.
    async fn update(
        &self,
        key: &str,
        path: &Path,
        payload: PutPayload,
        version: &Version,
    ) -> Result<Version, StoreError> {
        let at = body::update_version(version);
        if at.e_tag.is_none() && at.version.is_none() {
            return Err(StoreError::conflict(key));
        }
        self.put_mode(key, path, payload, PutMode::Update(at)).await
    }
}

#[async_trait]
impl Store for ObjectStoreStore {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        let path = self.path(key)?;
        let result = match self.store.get_opts(&path, GetOptions::default()).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(map_err(e, key)),
        };
        let meta = result.meta.clone();
        let bytes = result.bytes().await.map_err(|e| map_err(e, key))?;
        match body::parse(bytes) {
            Some(Content::Live(value)) => Ok(Some(Versioned {
                value,
                version: body::version(meta.e_tag, meta.version),
            })),
            Some(Content::Tombstone) => Ok(None),
            None => Err(StoreError::generic(format!(
                "the object {path} is not an exactly record"
            ))),
        }
    }

    async fn put(
        &self,
        key: &str,
        value: Bytes,
        precondition: Precondition,
    ) -> Result<Version, StoreError> {
        StoreError::check_size(key, value.len(), self.max_value_bytes)?;
        let path = self.path(key)?;
        let payload = body::live(&value);
        match precondition {
            Precondition::Absent => self.create(key, &path, payload).await,
            Precondition::Matches(v) => self.update(key, &path, payload, &v).await,
        }
    }

    async fn delete(&self, key: &str, version: &Version) -> Result<(), StoreError> {
        let path = self.path(key)?;
        match self.update(key, &path, body::tombstone(), version).await {
            Ok(_) => Ok(()),
            // Say why: missing (or already a tombstone), or another version.
            Err(StoreError::Conflict { .. }) => match self.get(key).await? {
                Some(_) => Err(StoreError::conflict(key)),
                None => Err(StoreError::not_found(key)),
            },
            Err(e) => Err(e),
        }
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let dir = key::list_dir(&self.kv, prefix);
        let after = start_after.filter(|after| *after >= prefix);
        let mut objects = match after {
            // Names sort like keys, so the offset skips what came before.
            Some(after) => self
                .store
                .list_with_offset(Some(&dir), &key::join(&self.kv, &key::encode(after, false))),
            None => self.store.list(Some(&dir)),
        };
        let mut keys = Vec::new();
        while let Some(meta) = objects.try_next().await.map_err(|e| map_err(e, prefix))? {
            let name = meta.location.as_ref();
            let Some(key) = name
                .strip_prefix(self.kv.as_ref())
                .and_then(|n| n.strip_prefix('/'))
                .and_then(key::decode)
            else {
                continue; // not one of ours
            };
            if self.sorted_listing && key.as_str() > prefix && !key.starts_with(prefix) {
                break; // past the prefix
            }
            if body::is_tombstone(&meta)
                || !key.starts_with(prefix)
                || after.is_some_and(|a| key.as_str() <= a)
            {
                continue;
            }
            keys.push(key);
            if self.sorted_listing && keys.len() == limit {
                break;
            }
        }
        keys.sort_unstable();
        keys.truncate(limit);
        Ok(keys)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::default().with_max_value_bytes(self.max_value_bytes)
    }
}
