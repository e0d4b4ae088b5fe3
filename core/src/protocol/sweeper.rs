//! The recovery `Sweeper`: finds `OutboxEntry`s that no redelivery will
//! revisit (an HTTP intent whose caller went away, a message error-queued
//! after its commit) and finishes them. No intent is ever stranded.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tracing::{debug, warn};

use super::dispatched::Dispatched;
use super::finish::Finisher;
use super::stats::Counter;
use super::{AttemptError, Mutant, Probe, Stats, Step, pause};
use crate::blob::BlobStore;
use crate::call::CallExecutor;
use crate::codec::{Codec, Json};
use crate::env::Env;
use crate::error::StoreError;
use crate::message::MessageId;
use crate::record::{Loaded, OutboxEntry, read_record};
use crate::store::Store;
use crate::transport::Transport;

const PAGE: usize = 256;

/// How long a sweeper leaves an entry it remembers as done, by default.
const DEFAULT_LEFT_AGE: Duration = Duration::from_secs(60);

/// Finishes pending outbox entries under some key prefixes.
///
/// Finishing is idempotent, so a sweeper racing a live worker only costs a
/// duplicate send, which the receiver drops; `min_age` keeps it off entries
/// a live worker is about to finish anyway.
#[derive(Clone, Debug)]
pub struct Sweeper {
    store: Arc<dyn Store>,
    transport: Arc<dyn Transport>,
    env: Env,
    prefixes: Vec<String>,
    min_age: Duration,
    left_age: Duration,
    stats: Arc<Stats>,
    mutant: Option<Mutant>,
    codec: Arc<dyn Codec>,
    calls: Option<Arc<dyn CallExecutor>>,
    blobs: Option<Arc<dyn BlobStore>>,
    expire_after: Option<Duration>,
    dispatched: Option<Arc<Dispatched>>,
    /// At most this many records per pass, and where the next pass goes on.
    bounded: Option<(usize, Arc<Mutex<Cursor>>)>,
    /// With a bound, the records of this age or younger are read first.
    recent: Option<Duration>,
}

/// Where a bounded pass stopped: a prefix (by index) and the last key read.
#[derive(Debug, Default)]
struct Cursor {
    prefix: usize,
    after: Option<String>,
}

impl Sweeper {
    /// A sweeper over no prefixes yet, with a 2 s grace period (60 s for
    /// entries it remembers as done: [`Sweeper::left_age`]).
    pub fn new(store: Arc<dyn Store>, transport: Arc<dyn Transport>) -> Self {
        Self {
            store,
            transport,
            env: Env::system(),
            prefixes: Vec::new(),
            min_age: Duration::from_secs(2),
            left_age: DEFAULT_LEFT_AGE,
            stats: Arc::default(),
            mutant: None,
            codec: Arc::new(Json),
            calls: None,
            blobs: None,
            expire_after: None,
            dispatched: None,
            bounded: None,
            recent: None,
        }
    }

    /// With [`Sweeper::records_per_pass`], each pass first reads every
    /// record created in the last `window`: those whose key ends in a UUID
    /// v7 id (a `Sender`'s intent records), which sort by creation time
    /// from a key built from the time `window` ago. A stranded intent is
    /// then found in the next pass, not after a round of every record; a
    /// key of another kind waits for the round. Without a bound every pass
    /// reads every record anyway, and this does nothing; a zero window
    /// turns it off.
    pub fn recent(mut self, window: Duration) -> Self {
        self.recent = Some(window);
        self
    }

    /// Reads at most `records` records per pass (at least 1), each pass
    /// going on where the last one stopped and starting over after the last
    /// prefix: a pass then costs a bounded number of reads however many
    /// records there are, and a stranded entry waits at most as many passes
    /// as it takes to go round. Default: every record, every pass.
    pub fn records_per_pass(mut self, records: usize) -> Self {
        self.bounded = Some((records.max(1), Arc::default()));
        self
    }

    /// Also deletes *finished* records older than `after`: records named by
    /// a UUID v7 message id (the key's last `/` segment) whose id time is
    /// more than `after` ago, and which hold nothing any more (no state, no
    /// outbox entry, no unconsumed token, no inbox, no blob). That is the
    /// `Sender`'s intent records once their message was processed; an id of
    /// another UUID version never expires. The delete is conditional on the
    /// version read, so a concurrent write keeps the record.
    pub fn expire_finished(mut self, after: Duration) -> Self {
        self.expire_after = Some(after);
        self
    }

    /// Shares a `Sender`'s memory of the intent entries it sent: those are
    /// removed, when due, without being sent again.
    pub(crate) fn dispatched(mut self, dispatched: Arc<Dispatched>) -> Self {
        self.dispatched = Some(dispatched);
        self
    }

    /// Deletes released and doomed blobs with this store while finishing.
    pub fn blobs(mut self, blobs: Option<Arc<dyn BlobStore>>) -> Self {
        self.blobs = blobs;
        self
    }

    /// Encodes call results with this codec (default JSON).
    pub fn codec(mut self, codec: Arc<dyn Codec>) -> Self {
        self.codec = codec;
        self
    }

    /// Performs pending third-party calls with this executor.
    pub fn calls(mut self, calls: Option<Arc<dyn CallExecutor>>) -> Self {
        self.calls = calls;
        self
    }

    /// Also sweeps records whose key starts with `prefix`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefixes.push(prefix.into());
        self
    }

    /// Leaves entries younger than `age` to the worker that committed them.
    pub fn min_age(mut self, age: Duration) -> Self {
        self.min_age = age;
        self
    }

    /// Leaves entries it remembers as done (sent, their token consumed:
    /// left in place by this process's workers or `Sender`) younger than
    /// `age` (at least the grace period) to the writes that drop them for
    /// free: the receivers' consumes and the record's next commit. Past
    /// it, the sweeper removes them with a write of its own. Default 60 s.
    pub fn left_age(mut self, age: Duration) -> Self {
        self.left_age = age;
        self
    }

    /// Uses this clock and randomness.
    pub fn env(mut self, env: Env) -> Self {
        self.env = env;
        self
    }

    pub(crate) fn with_stats(mut self, stats: Arc<Stats>, mutant: Option<Mutant>) -> Self {
        self.stats = stats;
        self.mutant = mutant;
        self
    }

    /// The sweeper's counters (`swept`).
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// One pass over every record; returns how many entries it finished.
    pub async fn sweep_once(&self) -> Result<usize, StoreError> {
        self.sweep_with(None).await
    }

    pub(crate) async fn sweep_with(&self, probe: Option<&dyn Probe>) -> Result<usize, StoreError> {
        let finisher = Finisher {
            store: self.store.as_ref(),
            transport: self.transport.as_ref(),
            env: &self.env,
            codec: self.codec.as_ref(),
            calls: self.calls.as_deref(),
            blobs: self.blobs.as_deref(),
            probe,
            mutant: self.mutant,
            stats: Some(&self.stats),
        };
        if let Some((budget, cursor)) = &self.bounded {
            let recent = match self.recent {
                Some(window) if !window.is_zero() => self.sweep_recent(&finisher, window).await?,
                _ => 0,
            };
            return Ok(recent + self.sweep_bounded(&finisher, *budget, cursor).await?);
        }
        let mut finished = 0;
        for prefix in &self.prefixes {
            finished += self.sweep_after(&finisher, prefix, None).await?;
        }
        Ok(finished)
    }

    /// Every record under `prefix` whose key sorts after `after` (from the
    /// first if `None`), a page at a time.
    async fn sweep_after(
        &self,
        finisher: &Finisher<'_>,
        prefix: &str,
        mut after: Option<String>,
    ) -> Result<usize, StoreError> {
        let mut finished = 0;
        loop {
            let keys = self.store.list(prefix, after.as_deref(), PAGE).await?;
            for key in &keys {
                finished += self.sweep_key(finisher, key).await?;
            }
            match keys.last() {
                Some(last) if keys.len() == PAGE => after = Some(last.clone()),
                _ => return Ok(finished),
            }
        }
    }

    /// Every record whose key sorts after the UUID v7 of `window` ago.
    async fn sweep_recent(
        &self,
        finisher: &Finisher<'_>,
        window: Duration,
    ) -> Result<usize, StoreError> {
        let since = self
            .env
            .now_millis()
            .saturating_sub(window.as_millis() as u64);
        // The least UUID v7 of that millisecond.
        let floor = uuid::Builder::from_unix_timestamp_millis(since, &[0; 10]).into_uuid();
        let mut finished = 0;
        for prefix in &self.prefixes {
            let after = format!("{prefix}{floor}");
            finished += self.sweep_after(finisher, prefix, Some(after)).await?;
        }
        Ok(finished)
    }

    /// One pass of at most `budget` records, from `cursor` on.
    async fn sweep_bounded(
        &self,
        finisher: &Finisher<'_>,
        mut budget: usize,
        cursor: &Mutex<Cursor>,
    ) -> Result<usize, StoreError> {
        let lock = || cursor.lock().unwrap_or_else(PoisonError::into_inner);
        let mut finished = 0;
        // Each prefix's end is reached at most once per pass.
        let mut ends = 0;
        while budget > 0 && ends < self.prefixes.len() {
            let (index, after) = {
                let at = lock();
                (at.prefix % self.prefixes.len(), at.after.clone())
            };
            let asked = budget.min(PAGE);
            let keys = self
                .store
                .list(&self.prefixes[index], after.as_deref(), asked)
                .await?;
            for key in &keys {
                finished += self.sweep_key(finisher, key).await?;
            }
            budget -= keys.len();
            let mut at = lock();
            match keys.last() {
                Some(last) if keys.len() == asked => {
                    *at = Cursor {
                        prefix: index,
                        after: Some(last.clone()),
                    };
                }
                _ => {
                    *at = Cursor {
                        prefix: (index + 1) % self.prefixes.len(),
                        after: None,
                    };
                    ends += 1;
                }
            }
        }
        Ok(finished)
    }

    async fn sweep_key(&self, finisher: &Finisher<'_>, key: &str) -> Result<usize, StoreError> {
        pause(finisher.probe, Step::Sweep).await;
        let loaded = read_record(self.store.as_ref(), key).await?;
        self.forget_consumed(key, &loaded);
        let now = self.env.now_millis();
        let horizon = now.saturating_sub(self.min_age.as_millis() as u64);
        let left_horizon = now.saturating_sub(self.min_age.max(self.left_age).as_millis() as u64);
        let due = loaded.record.outbox.iter().any(|e| {
            let left = self.remembered(key, e);
            e.committed_at <= if left { left_horizon } else { horizon }
        });
        if !due {
            self.expire(key, &loaded).await?;
            return Ok(0);
        }
        let count = loaded.record.outbox.len();
        // Recoveries: entries left done by this process are only removed.
        let recovered = loaded
            .record
            .outbox
            .iter()
            .filter(|e| !self.remembered(key, e))
            .count();
        match self.finish_due(finisher, key, loaded).await {
            Ok(_) => {
                debug!(key, count, recovered, "sweeper finished outbox entries");
                for _ in 0..recovered {
                    self.stats.add(Counter::Swept);
                }
                Ok(count)
            }
            // Someone else is finishing it right now.
            Err(AttemptError::Conflict) => Ok(0),
            Err(AttemptError::Retry(reason) | AttemptError::Poison(reason)) => {
                warn!(key, %reason, "sweeper could not finish an entry; will retry");
                Ok(0)
            }
        }
    }

    /// Finishes the record's entries; those remembered as sent (by the
    /// `Sender` or endpoint whose memory this sweeper shares) are only
    /// removed.
    async fn finish_due(
        &self,
        finisher: &Finisher<'_>,
        key: &str,
        mut loaded: Loaded,
    ) -> Result<Loaded, AttemptError> {
        if let Some(dispatched) = &self.dispatched {
            let sent: Vec<MessageId> = loaded
                .record
                .outbox
                .iter()
                .filter(|e| self.remembered(key, e))
                .map(|e| e.incoming)
                .collect();
            for id in sent {
                loaded = finisher.remove_entry(key, loaded, id).await?;
                dispatched.forget(key, id);
            }
        }
        finisher.finish_pending(key, loaded).await
    }

    /// Whether `entry` of the record at `key` is one this sweeper's
    /// process remembers leaving, done.
    fn remembered(&self, key: &str, entry: &OutboxEntry) -> bool {
        self.dispatched.as_ref().is_some_and(|dispatched| {
            entry.sends_and_consumes_only() && dispatched.contains(key, entry.incoming)
        })
    }

    /// Forgets the sent entries the receivers' consumes have dropped.
    fn forget_consumed(&self, key: &str, loaded: &Loaded) {
        if let Some(dispatched) = &self.dispatched {
            dispatched.forget_gone(key, &loaded.record);
        }
    }

    /// Deletes `key` if it is a finished record past its expiry.
    async fn expire(&self, key: &str, loaded: &Loaded) -> Result<(), StoreError> {
        let (Some(after), Some(version)) = (self.expire_after, &loaded.version) else {
            return Ok(());
        };
        let r = &loaded.record;
        let finished = r.state.is_none()
            && r.outbox.is_empty()
            && r.tokens.is_empty()
            && r.inbox.is_empty()
            && r.blobs.is_empty()
            && r.blob_attempts.is_empty();
        let born = key
            .rsplit('/')
            .next()
            .and_then(|id| uuid::Uuid::parse_str(id).ok())
            .filter(|id| id.get_version_num() == 7)
            .and_then(|id| id.get_timestamp())
            .map(|t| {
                let (secs, nanos) = t.to_unix();
                secs * 1000 + u64::from(nanos / 1_000_000)
            });
        let Some(born) = born else {
            return Ok(());
        };
        let expired = born.saturating_add(after.as_millis() as u64) <= self.env.now_millis();
        if !finished || !expired {
            return Ok(());
        }
        match self.store.delete(key, version).await {
            Ok(()) => {
                debug!(key, "sweeper deleted an expired finished record");
                self.stats.add(Counter::Expired);
                Ok(())
            }
            // Written or deleted meanwhile: the next pass looks again.
            Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Sweeps every `interval` until `shutdown` completes.
    pub async fn run(&self, interval: Duration, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            if let Err(e) = self.sweep_once().await {
                warn!(error = %e, "sweep failed");
            }
            tokio::select! {
                () = &mut shutdown => return,
                () = self.env.clock.sleep(interval) => {}
            }
        }
    }
}
