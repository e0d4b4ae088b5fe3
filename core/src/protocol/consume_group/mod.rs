//! Grouped consumes: an endpoint's commits that consume tokens held by the
//! same record are written together.
//!
//! A commit whose incoming token lives in another record (the sender's)
//! writes its entity and that record, without the token, in one `put_all`
//! (the one-write commit). The receivers of a fan-out all consume from the
//! one sender's record: one at a time, they race for it, all but one lose
//! each round, read it again and write again. Instead, a commit queues its
//! write under the holder's key, and whoever gets that holder's writer
//! writes every commit queued there in one `put_all`: their entities, and
//! the holder once, without all their tokens. While one group is written
//! the next one gathers; a commit alone is written alone, as before.
//!
//! A group is the same as its commits one after another: each entity is
//! written under the version its attempt read, the holder under the
//! version last read or written, with exactly the group's tokens removed,
//! each checked present first. A holder written by someone else meanwhile
//! is read again. A commit whose token is gone from a holder read after it
//! queued lost to another copy of its message, as does one whose entity
//! changed since its attempt read it: both are answered `Lost` (the attempt
//! starts again from its load). A group never holds two commits of one
//! entity or one token. When a group's write fails otherwise, it may or
//! may not have happened: a commit alone gets the error, as it would have;
//! the commits of a larger group are answered `Alone` and write on their
//! own, where a write that did happen shows as a conflict.
//!
//! A batch consumes the tokens its members share from one holder in its
//! own `put_all`; across batches (and against the commits queued here) it
//! takes part through the same writers: it watches its holders before it
//! reads them ([`ConsumeGroups::watch`]), holds their writers, in key order,
//! while it writes ([`Watch::lock`]), starts from a holder this endpoint
//! wrote since its read ([`Writers::written_since`]) and leaves the holder
//! as it wrote it for whoever writes next ([`Writers::wrote`]). Two workers'
//! batches with copies of one sender's messages then write its record one
//! after the other instead of racing for it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;
use tokio::sync::oneshot::error::TryRecvError;
use tracing::{Instrument, debug_span};

use super::attempt::Queued;
use super::finish::CONFLICT_LIMIT;
use super::stats::Counter;
use super::{AttemptError, Core, Mutant};
use crate::error::StoreError;
use crate::message::MessageId;
use crate::record::{Loaded, read_record, record_write};
use crate::store::{Version, Write};

/// Most commits written in one group (DynamoDB takes 100 items per
/// transaction; larger groups gain little).
const MAX_GROUP: usize = 32;

/// The holders with commits queued or being written, by key.
#[derive(Default)]
pub(crate) struct ConsumeGroups {
    holders: Mutex<HashMap<String, Arc<Holder>>>,
}

/// One holder's queued commits and its writer.
#[derive(Default)]
struct Holder {
    queue: Mutex<Vec<Member>>,
    /// The writer, keeping the holder's record as it last wrote it.
    writer: tokio::sync::Mutex<Option<Loaded>>,
    /// How many times the writer's record was set: a batch that saw this
    /// before its read knows whether the record was written since.
    writes: AtomicU64,
}

/// One user's share of a holder's entry in the map: the entry is
/// forgotten when the last share goes.
struct Share<'a> {
    groups: &'a ConsumeGroups,
    key: String,
    holder: Arc<Holder>,
}

/// A queued commit: its entity's write, the token it consumes, what a
/// colocated commit takes along, and where its answer goes.
struct Member {
    entity: Write,
    token: MessageId,
    queued: Option<Queued>,
    answer: oneshot::Sender<Answer>,
}

/// What became of a queued commit.
pub(crate) enum Answer {
    /// Written, at this version of the entity.
    Written(Version),
    /// Not written: another copy of its message consumed the token, or
    /// its entity changed since its attempt read it.
    Lost,
    /// Not written, alone in its group: the write failed with this.
    Failed(AttemptError),
    /// Not known to be written: write it alone.
    Alone,
}

/// A queued commit's claim on its answer.
pub(crate) struct Ticket<'a> {
    share: Share<'a>,
    answer: oneshot::Receiver<Answer>,
}

/// A batch's watch on the holders its members consume from, taken before
/// it reads them, in key order.
pub(crate) struct Watch<'a> {
    shares: Vec<(Share<'a>, u64)>,
}

/// The writers of a batch's holders, held while it writes them.
pub(crate) struct Writers<'a> {
    held: Vec<Held<'a>>,
}

/// One held writer: the holder as last written by this endpoint, and
/// whether that was after the batch read it.
struct Held<'a> {
    key: &'a str,
    holder: &'a Holder,
    seen: u64,
    last: tokio::sync::MutexGuard<'a, Option<Loaded>>,
}

impl ConsumeGroups {
    /// Queues the commit writing `entity` and consuming `token` from the
    /// record at `holder` (with `queued` along, where colocated).
    pub(crate) fn queue(
        &self,
        holder: &str,
        entity: Write,
        token: MessageId,
        queued: Option<Queued>,
    ) -> Ticket<'_> {
        let (answer, receiver) = oneshot::channel();
        let share = self.share(holder);
        lock(&share.holder.queue).push(Member {
            entity,
            token,
            queued,
            answer,
        });
        Ticket {
            share,
            answer: receiver,
        }
    }

    /// Watches the holders at `keys` for a batch about to read them.
    pub(crate) fn watch<'k>(&self, keys: impl IntoIterator<Item = &'k str>) -> Watch<'_> {
        let mut keys: Vec<&str> = keys.into_iter().collect();
        keys.sort_unstable();
        keys.dedup();
        let shares = keys
            .into_iter()
            .map(|key| {
                let share = self.share(key);
                let seen = share.holder.writes.load(Ordering::Acquire);
                (share, seen)
            })
            .collect();
        Watch { shares }
    }

    fn share(&self, key: &str) -> Share<'_> {
        let holder = lock(&self.holders)
            .entry(key.to_owned())
            .or_default()
            .clone();
        Share {
            groups: self,
            key: key.to_owned(),
            holder,
        }
    }
}

impl Drop for Share<'_> {
    fn drop(&mut self) {
        let mut holders = lock(&self.groups.holders);
        // Shares are taken under this lock: the map's and this one's are
        // the last, so nobody waits on this holder any more.
        if Arc::strong_count(&self.holder) == 2
            && holders
                .get(&self.key)
                .is_some_and(|h| Arc::ptr_eq(h, &self.holder))
        {
            holders.remove(&self.key);
        }
    }
}

impl Watch<'_> {
    /// Takes every watched holder's writer, in key order (so batches that
    /// share holders never wait on each other in a cycle): commits to
    /// them from this endpoint wait until the batch has written.
    pub(crate) async fn lock(&self) -> Writers<'_> {
        let mut held = Vec::with_capacity(self.shares.len());
        for (share, seen) in &self.shares {
            held.push(Held {
                key: &share.key,
                holder: &share.holder,
                seen: *seen,
                last: share.holder.writer.lock().await,
            });
        }
        Writers { held }
    }
}

impl Writers<'_> {
    /// The holder at `key` as this endpoint wrote it after the batch began
    /// to read it: newer than the batch's read, unless someone else wrote
    /// it in between.
    pub(crate) fn written_since(&self, key: &str) -> Option<&Loaded> {
        let held = self.held.iter().find(|h| h.key == key)?;
        let written = held.holder.writes.load(Ordering::Acquire) != held.seen;
        held.last.as_ref().filter(|_| written)
    }

    /// Whether the batch holds the writer of the holder at `key`.
    pub(crate) fn holds(&self, key: &str) -> bool {
        self.held.iter().any(|h| h.key == key)
    }

    /// Keeps `record` as the holder at `key` was just written.
    pub(crate) fn wrote(&mut self, key: &str, record: Loaded) {
        if let Some(held) = self.held.iter_mut().find(|h| h.key == key) {
            set(&mut held.last, held.holder, Some(record));
        }
    }
}

/// Sets the holder's record as last written, counting the write.
fn set(last: &mut Option<Loaded>, holder: &Holder, record: Option<Loaded>) {
    *last = record;
    holder.writes.fetch_add(1, Ordering::AcqRel);
}

impl Core {
    /// Waits until the commit behind `ticket` was written or refused,
    /// writing the holder's queued groups itself when it gets the writer
    /// first. `read` is the holder as this commit's attempt read it.
    pub(crate) async fn commit_queued(&self, mut ticket: Ticket<'_>, read: Loaded) -> Answer {
        let mut read = Some(read);
        // Whichever comes first: the answer (another commit wrote this
        // one) or the writer.
        let holder = ticket.share.holder.clone();
        let mut last = tokio::select! {
            biased;
            answer = &mut ticket.answer => return answer.unwrap_or(Answer::Alone),
            writer = holder.writer.lock() => writer,
        };
        loop {
            match ticket.answer.try_recv() {
                Ok(answer) => return answer,
                Err(TryRecvError::Closed) => return Answer::Alone,
                Err(TryRecvError::Empty) => {}
            }
            let group = take_group(&holder);
            // Holding the writer, an unanswered commit is still queued; an
            // empty queue here would be a bug, and writing alone is safe.
            if group.is_empty() {
                return Answer::Alone;
            }
            let copy = last.take().or_else(|| read.take());
            let written = self.write_group(&ticket.share.key, group, copy).await;
            set(&mut last, &holder, written);
        }
    }

    /// Writes `group` in one `put_all` with the holder at `key`, starting
    /// from `known` (its record as last read or written; read first if
    /// unknown); answers every member. Returns the holder as written, for
    /// the next group.
    async fn write_group(
        &self,
        key: &str,
        mut group: Vec<Member>,
        known: Option<Loaded>,
    ) -> Option<Loaded> {
        let span = debug_span!("exactly.commit", consumes = key, group = group.len());
        // Whether `holder` was read after every member queued: then a
        // token missing from it was consumed, not created since.
        let (mut holder, mut fresh) = match known {
            Some(known) => (known, false),
            None => match read_record(self.store.as_ref(), key).await {
                Ok(read) => (read, true),
                Err(e) => return answer_failed(group, e),
            },
        };
        for _ in 0..CONFLICT_LIMIT {
            if group
                .iter()
                .any(|m| !holder.record.tokens.contains(&m.token))
            {
                if !fresh {
                    match read_record(self.store.as_ref(), key).await {
                        Ok(read) => (holder, fresh) = (read, true),
                        Err(e) => return answer_failed(group, e),
                    }
                    continue;
                }
                let (kept, lost) = group
                    .into_iter()
                    .partition(|m| holder.record.tokens.contains(&m.token));
                answer_all(lost, || Answer::Lost);
                group = kept;
            }
            if group.is_empty() {
                return Some(holder);
            }
            let ids: Vec<MessageId> = group.iter().map(|m| m.token).collect();
            let consumed = holder.record.consumed(&ids);
            let mut writes: Vec<Write> = group.iter().map(|m| m.entity.clone()).collect();
            writes.push(record_write(key, &holder, &consumed));
            let queued = along(&group);
            match self
                .put_all(writes, queued.as_ref())
                .instrument(span.clone())
                .await
            {
                Ok(mut versions) => {
                    let written = versions.pop();
                    if group.len() > 1 {
                        for _ in &group {
                            self.stats.add(Counter::SharedConsumes);
                        }
                    }
                    for (member, version) in group.into_iter().zip(versions) {
                        let _ = member.answer.send(Answer::Written(version));
                    }
                    return Some(Loaded {
                        record: consumed,
                        version: written,
                    });
                }
                Err(StoreError::Conflict { key: lost }) if lost == key => {
                    self.stats.add(Counter::BookkeepingConflicts);
                    match read_record(self.store.as_ref(), key).await {
                        Ok(read) => (holder, fresh) = (read, true),
                        Err(e) => return answer_failed(group, e),
                    }
                }
                Err(StoreError::Conflict { key: lost })
                    if group.iter().any(|m| m.entity.key == lost) =>
                {
                    let (changed, kept) = group.into_iter().partition(|m| m.entity.key == lost);
                    answer_all(changed, || Answer::Lost);
                    group = kept;
                }
                Err(_) if self.is(Mutant::ConsumeGroupTrustsFailedWrite) => {
                    answer_all(group, || Answer::Written(Version::new("unwritten")));
                    return None;
                }
                Err(e) => return answer_failed(group, e),
            }
        }
        answer_all(group, || Answer::Lost);
        None
    }
}

/// The next group: queued commits, oldest first, at most one per entity
/// and per token; the others stay queued. A commit whose attempt stopped
/// waiting (a cancelled task) is dropped, not written, as if it had
/// stopped before its commit.
fn take_group(holder: &Holder) -> Vec<Member> {
    let mut queue = lock(&holder.queue);
    queue.retain(|m| !m.answer.is_closed());
    let mut group: Vec<Member> = Vec::new();
    let mut rest = Vec::new();
    for member in queue.drain(..) {
        let clashes = group
            .iter()
            .any(|m| m.entity.key == member.entity.key || m.token == member.token);
        if clashes || group.len() == MAX_GROUP {
            rest.push(member);
        } else {
            group.push(member);
        }
    }
    *queue = rest;
    group
}

/// The sends and acks the members' colocated commits take along, together.
fn along(group: &[Member]) -> Option<Queued> {
    let mut all: Option<Queued> = None;
    for queued in group.iter().filter_map(|m| m.queued.as_ref()) {
        let all = all.get_or_insert_with(Queued::default);
        all.send.extend(queued.send.iter().cloned());
        all.ack.extend(queued.ack.iter().cloned());
    }
    all
}

/// A failed group write: its error for a commit alone; a larger group's
/// members write alone (the write may have happened).
fn answer_failed(group: Vec<Member>, error: StoreError) -> Option<Loaded> {
    match <[Member; 1]>::try_from(group) {
        Ok([alone]) => {
            let _ = alone.answer.send(Answer::Failed(error.into()));
        }
        Err(group) => answer_all(group, || Answer::Alone),
    }
    None
}

fn answer_all(group: Vec<Member>, mut answer: impl FnMut() -> Answer) {
    for member in group {
        // A commit that stopped waiting (a cancelled task) needs no answer.
        let _ = member.answer.send(answer());
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests;
