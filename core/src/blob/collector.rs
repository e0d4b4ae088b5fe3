//! The [`BlobCollector`]: deletes, after a grace period, every blob that no
//! registration and no committed record references — the leftovers of a
//! crash mid-cleanup, and of stale attempts that wrote after cleanup ran.
//! Orphaned blobs may hold personal data: leaving them is a defect.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::{BLOB_PREFIX, BlobError, BlobInfo, BlobStore, parse_key};
use crate::env::Env;
use crate::record::{EntityRecord, read_record, write_record};
use crate::store::Store;

/// What one collection pass saw and did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CollectReport {
    /// Blobs looked at.
    pub scanned: usize,
    /// Blobs deleted as garbage.
    pub deleted: usize,
    /// Unreferenced blobs younger than the grace period, left for later.
    pub young: usize,
}

/// Collects unreferenced blobs. Safe to run at any time, on any number of
/// instances: a blob is live while its attempt is registered in its owner
/// record (the attempt may still commit) or the owner record lists it as
/// published; a blob is only ever written after its attempt registered.
#[derive(Clone, Debug)]
pub struct BlobCollector {
    store: Arc<dyn Store>,
    blobs: Arc<dyn BlobStore>,
    env: Env,
    grace: Duration,
    mutant: Option<crate::protocol::Mutant>,
}

impl BlobCollector {
    /// A collector with a 10-minute grace period.
    pub fn new(store: Arc<dyn Store>, blobs: Arc<dyn BlobStore>) -> Self {
        Self {
            store,
            blobs,
            env: Env::system(),
            grace: Duration::from_secs(600),
            mutant: None,
        }
    }

    #[cfg(feature = "harness")]
    pub(crate) fn mutant(mut self, mutant: Option<crate::protocol::Mutant>) -> Self {
        self.mutant = mutant;
        self
    }

    /// Leaves unreferenced blobs younger than `grace` alone.
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Uses this clock.
    pub fn env(mut self, env: Env) -> Self {
        self.env = env;
        self
    }

    /// One pass over every runtime blob.
    pub async fn collect_once(&self) -> Result<CollectReport, BlobError> {
        let horizon = self
            .env
            .now_millis()
            .saturating_sub(self.grace.as_millis() as u64);
        let mut by_owner: HashMap<String, Vec<BlobInfo>> = HashMap::new();
        let mut report = CollectReport::default();
        for blob in self.blobs.list(BLOB_PREFIX).await? {
            report.scanned += 1;
            let owner = parse_key(&blob.key).map_or_else(String::new, |(owner, _)| owner);
            by_owner.entry(owner).or_default().push(blob);
        }
        for (owner, blobs) in by_owner {
            let record = if owner.is_empty() {
                None
            } else {
                self.expire_registrations(&owner, horizon).await?
            };
            for blob in blobs {
                let checking = self.mutant != Some(crate::protocol::Mutant::CollectWithoutChecking);
                let live = checking
                    && record.as_ref().is_some_and(|r| {
                        r.blobs.contains(&blob.key)
                            || parse_key(&blob.key)
                                .is_some_and(|(_, a)| r.blob_attempts.contains_key(&a))
                    });
                if live {
                    continue;
                }
                if blob.modified_millis > horizon {
                    report.young += 1;
                    continue;
                }
                self.blobs.delete(&blob.key).await?;
                report.deleted += 1;
            }
        }
        Ok(report)
    }

    /// Removes registrations older than the grace period from the owner
    /// record (an attempt that registered and then died, or was dropped,
    /// and that no later commit cleared), with a conditional write: an
    /// attempt still running that late then fails its commit and retries,
    /// so its blobs can go. Returns the record as it now stands.
    async fn expire_registrations(
        &self,
        owner: &str,
        horizon: u64,
    ) -> Result<Option<EntityRecord>, BlobError> {
        let unavailable = |e: crate::error::StoreError| BlobError::Unavailable { source: e.into() };
        for _ in 0..64 {
            let loaded = read_record(self.store.as_ref(), owner)
                .await
                .map_err(unavailable)?;
            if loaded.version.is_none() {
                return Ok(None);
            }
            let mut record = loaded.record.clone();
            record.blob_attempts.retain(|_, at| *at > horizon);
            if record.blob_attempts.len() == loaded.record.blob_attempts.len() {
                return Ok(Some(record));
            }
            match write_record(self.store.as_ref(), owner, &loaded, &record).await {
                Ok(_) => return Ok(Some(record)),
                Err(e) if e.is_conflict() => continue,
                Err(e) => return Err(unavailable(e)),
            }
        }
        Err(BlobError::Unavailable {
            source: format!("record {owner:?} kept changing").into(),
        })
    }
}
