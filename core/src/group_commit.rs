//! Group commit of a [`Sender`](crate::Sender)'s intent records: sends that
//! run at the same time create their records together, in one
//! [`Store::put_all`], instead of one write each. Where the queue shares the
//! store's database ([`Colocated`]), the group is one transaction holding
//! every record and every message.
//!
//! One group is written at a time. A send queues its write, then waits for
//! the writer; whoever gets it writes everything queued (its own write and
//! the others', up to [`MAX_GROUP`] per `put_all`) and tells each send
//! what became of its write. While one group is written the next one
//! gathers, so the more sends run at once, the fewer store writes each
//! costs; a send alone is written alone, with a plain `put`.
//!
//! Grouping costs a send a hand-off between tasks; it pays only when
//! writes take long enough for other sends to gather meanwhile. So a
//! [`Sender`](crate::Sender) groups only while its recent writes take at
//! least [`DEFAULT_GROUP_ABOVE`] (a database's commit, not an in-memory
//! map's insert; `Sender::group_commit_above`): [`GroupCommit::write_time`]
//! is a running average over its writes, alone or grouped.
//!
//! Creating several records in one atomic write is the same as creating
//! them one after another: each is its own key, written only if absent.
//! A send whose group write failed (a conflict on one key fails them all),
//! or whose write was taken by a task that was cancelled before it could
//! answer, is not told "written": it writes on its own afterwards, as a send
//! alone does, and a conflict there is read, not trusted. Only a write the
//! store acknowledged is reported as written.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tokio::sync::oneshot::error::TryRecvError;

use crate::colocated::Colocated;
use crate::error::StoreError;
use crate::protocol::Mutant;
use crate::store::{Store, Version, Write};
use crate::transport::Outgoing;

/// Most intent records created in one `put_all` (DynamoDB takes 100 items
/// per transaction; larger groups gain little).
pub(crate) const MAX_GROUP: usize = 32;

/// A `Sender` groups its intent writes while they take at least this long
/// on average (`Sender::group_commit_above`).
pub const DEFAULT_GROUP_ABOVE: Duration = Duration::from_micros(200);

/// Intent writes waiting for the writer, and the writer.
#[derive(Debug, Default)]
pub(crate) struct GroupCommit {
    queue: Mutex<Vec<Queued>>,
    writer: tokio::sync::Mutex<()>,
    grouped: AtomicU64,
    /// Running average of a write's duration, in microseconds.
    write_micros: AtomicU64,
}

/// Where a group is written.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Target<'a> {
    /// The store: a write alone with `put`, a group with `put_all`.
    Store(&'a dyn Store),
    /// The store's database with the queue: the records and their messages
    /// in one transaction.
    Colocated(&'a dyn Colocated),
}

/// A queued write, the messages that go with it (colocated only), and
/// where its outcome goes.
#[derive(Debug)]
struct Queued {
    write: Write,
    send: Vec<Outgoing>,
    outcome: oneshot::Sender<Option<Version>>,
}

/// A queued write's claim on its outcome.
#[derive(Debug)]
pub(crate) struct Ticket(oneshot::Receiver<Option<Version>>);

impl GroupCommit {
    /// Queues `write`, and the messages to send with it where the target
    /// is [`Target::Colocated`], for the next group.
    pub(crate) fn queue(&self, write: Write, send: Vec<Outgoing>) -> Ticket {
        let (outcome, ticket) = oneshot::channel();
        self.lock().push(Queued {
            write,
            send,
            outcome,
        });
        Ticket(ticket)
    }

    /// Waits until the write behind `ticket` was tried, writing the queued
    /// groups itself when it gets the writer first. `Some` once the store
    /// acknowledged it; `None` when the caller must write on its own.
    pub(crate) async fn commit(
        &self,
        target: Target<'_>,
        mut ticket: Ticket,
        mutant: Option<Mutant>,
    ) -> Option<Version> {
        // Whichever comes first: the answer (another send wrote this one)
        // or the writer. Waiting for the writer alone would make every
        // answered send queue up for it, one after another, only to learn
        // it was done.
        let _writer = tokio::select! {
            biased;
            outcome = &mut ticket.0 => return outcome.ok().flatten(),
            writer = self.writer.lock() => writer,
        };
        loop {
            match ticket.0.try_recv() {
                Ok(version) => return version,
                Err(TryRecvError::Closed) => return None,
                Err(TryRecvError::Empty) => {}
            }
            let group = self.take_group();
            // Holding the writer, an unanswered write is still queued; an
            // empty queue here would be a bug, and writing alone is safe.
            if group.is_empty() {
                return None;
            }
            self.write(target, group, mutant).await;
        }
    }

    /// The next writes to commit, oldest first. A write whose send stopped
    /// waiting (a cancelled task) is dropped, not written: written later,
    /// at the next send, possibly after the message's retention, it would
    /// create the record of a message long processed, token and all.
    fn take_group(&self) -> Vec<Queued> {
        let mut queue = self.lock();
        queue.retain(|q| !q.outcome.is_closed());
        let n = queue.len().min(MAX_GROUP);
        queue.drain(..n).collect()
    }

    /// How long this sender's intent writes took lately (a running
    /// average of the last few, alone or grouped; zero before the first).
    pub(crate) fn write_time(&self) -> Duration {
        Duration::from_micros(self.write_micros.load(Ordering::Relaxed))
    }

    /// Adds a write that took `took` to the running average (weight 1/8).
    pub(crate) fn record_write_time(&self, took: Duration) {
        let sample = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let old = self.write_micros.load(Ordering::Relaxed);
        let new = if old == 0 {
            sample
        } else {
            old - old / 8 + sample / 8
        };
        self.write_micros.store(new.max(1), Ordering::Relaxed);
    }

    /// Intent records created together with others so far.
    pub(crate) fn grouped(&self) -> u64 {
        self.grouped.load(Ordering::Relaxed)
    }

    async fn write(&self, target: Target<'_>, mut group: Vec<Queued>, mutant: Option<Mutant>) {
        let started = Instant::now();
        let written: Result<Vec<Version>, StoreError> = match target {
            Target::Store(store) if group.len() == 1 => {
                let write = &mut group[0].write;
                let value = std::mem::take(&mut write.value);
                store
                    .put(&write.key, value, write.precondition.clone())
                    .await
                    .map(|version| vec![version])
            }
            Target::Store(store) => {
                let writes = group.iter().map(|q| q.write.clone()).collect();
                store.put_all(writes).await
            }
            Target::Colocated(unit) => {
                let writes = group.iter().map(|q| q.write.clone()).collect();
                let send = group.iter_mut().flat_map(|q| q.send.drain(..)).collect();
                unit.put_all_with(writes, send, Vec::new()).await
            }
        };
        self.record_write_time(started.elapsed());
        let versions: Vec<Option<Version>> = match written {
            Ok(versions) => {
                if group.len() > 1 {
                    let n = group.len() as u64;
                    metrics::counter!("exactly_intents_grouped_total").increment(n);
                    self.grouped.fetch_add(n, Ordering::Relaxed);
                }
                versions.into_iter().map(Some).collect()
            }
            Err(_) if mutant == Some(Mutant::GroupTrustsFailedWrite) => group
                .iter()
                .map(|_| Some(Version::new("unwritten")))
                .collect(),
            Err(_) => vec![None; group.len()],
        };
        for (queued, version) in group.into_iter().zip(versions) {
            // A send that stopped waiting (a cancelled task) needs no answer.
            let _ = queued.outcome.send(version);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Queued>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;
    use crate::memory::MemoryStore;
    use crate::store::Precondition;

    impl GroupCommit {
        fn queue_write(&self, write: Write) -> Ticket {
            self.queue(write, Vec::new())
        }

        async fn on(&self, store: &MemoryStore, ticket: Ticket) -> Option<Version> {
            self.commit(Target::Store(store), ticket, None).await
        }
    }

    fn create(key: &str) -> Write {
        Write {
            key: key.to_owned(),
            value: Bytes::from_static(b"intent"),
            precondition: Precondition::Absent,
        }
    }

    #[tokio::test]
    async fn a_write_alone_is_a_put_and_reports_a_conflict_as_not_written() {
        let store = MemoryStore::new().atomic_multi_key(true);
        let group = GroupCommit::default();
        let first = group.queue_write(create("i/a"));
        assert!(group.on(&store, first).await.is_some());
        let again = group.queue_write(create("i/a"));
        assert_eq!(group.on(&store, again).await, None);
        assert_eq!(group.grouped(), 0);
    }

    #[tokio::test]
    async fn queued_writes_go_in_one_put_all_and_each_gets_its_version() {
        let store = MemoryStore::new().atomic_multi_key(true);
        let group = GroupCommit::default();
        let tickets: Vec<Ticket> = ["i/a", "i/b", "i/c"]
            .iter()
            .map(|k| group.queue_write(create(k)))
            .collect();
        let mut versions = Vec::new();
        for ticket in tickets {
            versions.push(group.on(&store, ticket).await);
        }
        assert_eq!(group.grouped(), 3);
        for (key, version) in ["i/a", "i/b", "i/c"].iter().zip(versions) {
            let stored = store.get(key).await.unwrap().expect("written");
            assert_eq!(Some(stored.version), version);
        }
    }

    #[tokio::test]
    async fn one_conflict_in_a_group_leaves_every_write_to_its_sender() {
        let store = MemoryStore::new().atomic_multi_key(true);
        store
            .put("i/b", Bytes::from_static(b"earlier"), Precondition::Absent)
            .await
            .unwrap();
        let group = GroupCommit::default();
        let (a, b) = (
            group.queue_write(create("i/a")),
            group.queue_write(create("i/b")),
        );
        assert_eq!(group.on(&store, a).await, None);
        assert_eq!(group.on(&store, b).await, None);
        assert_eq!(store.get("i/a").await.unwrap(), None, "all or nothing");
        assert_eq!(group.grouped(), 0);
    }

    #[tokio::test]
    async fn a_write_taken_by_a_cancelled_writer_is_left_to_its_sender() {
        let store = MemoryStore::new().atomic_multi_key(true);
        let group = GroupCommit::default();
        let (a, b) = (
            group.queue_write(create("i/a")),
            group.queue_write(create("i/b")),
        );
        // The writer for `a` takes both writes and is dropped before it
        // answers (a cancelled task): `b` must not wait for ever.
        let taken: Vec<Queued> = group.lock().drain(..).collect();
        drop(taken);
        drop(a);
        assert_eq!(group.on(&store, b).await, None);
    }

    #[test]
    fn the_write_time_follows_recent_writes() {
        let group = GroupCommit::default();
        assert_eq!(group.write_time(), Duration::ZERO);
        group.record_write_time(Duration::from_millis(2));
        assert_eq!(group.write_time(), Duration::from_millis(2));
        for _ in 0..40 {
            group.record_write_time(Duration::from_micros(5));
        }
        assert!(
            group.write_time() < DEFAULT_GROUP_ABOVE,
            "{:?}",
            group.write_time()
        );
        for _ in 0..40 {
            group.record_write_time(Duration::from_millis(1));
        }
        assert!(
            group.write_time() > DEFAULT_GROUP_ABOVE,
            "{:?}",
            group.write_time()
        );
    }

    #[tokio::test]
    async fn a_write_whose_send_was_cancelled_is_not_written_later() {
        let store = MemoryStore::new().atomic_multi_key(true);
        let group = GroupCommit::default();
        drop(group.queue_write(create("i/gone")));
        let next = group.queue_write(create("i/next"));
        assert!(group.on(&store, next).await.is_some());
        assert_eq!(store.get("i/gone").await.unwrap(), None);
        assert!(group.lock().is_empty());
    }

    #[tokio::test]
    async fn a_colocated_group_is_one_transaction_of_records_and_messages() {
        use crate::message::Envelope;
        use crate::transport::Transport;

        let store = Arc::new(MemoryStore::new().atomic_multi_key(true));
        let transport = Arc::new(crate::memory::MemoryTransport::new());
        let unit = crate::memory::MemoryColocated::new(store.clone(), transport.clone());
        let message = |n: u128| {
            Outgoing::new(Envelope {
                id: crate::message::MessageId::from_uuid(uuid::Uuid::from_u128(n)),
                message_type: "Order".into(),
                destination: "orders".into(),
                headers: Default::default(),
                correlation_id: None,
                causation_id: None,
                reply_to: None,
                token: None,
                content_type: "application/json".into(),
                body: Bytes::from_static(b"{}"),
            })
        };
        let group = GroupCommit::default();
        let a = group.queue(create("i/a"), vec![message(1)]);
        let b = group.queue(create("i/b"), vec![message(2)]);
        assert!(
            group
                .commit(Target::Colocated(&unit), a, None)
                .await
                .is_some()
        );
        assert!(
            group
                .commit(Target::Colocated(&unit), b, None)
                .await
                .is_some()
        );
        assert_eq!(group.grouped(), 2);
        assert!(store.get("i/b").await.unwrap().is_some());
        let got = transport
            .receive("orders", 10, std::time::Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(got.len(), 2);

        // A refused record sends nothing, for any send of the group.
        let c = group.queue(create("i/c"), vec![message(3)]);
        let again = group.queue(create("i/a"), vec![message(4)]);
        assert_eq!(group.commit(Target::Colocated(&unit), c, None).await, None);
        assert_eq!(
            group.commit(Target::Colocated(&unit), again, None).await,
            None
        );
        assert_eq!(store.get("i/c").await.unwrap(), None);
        let got = transport
            .receive("orders", 10, std::time::Duration::ZERO)
            .await
            .unwrap();
        assert!(got.is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_sends_are_all_written() {
        // Whether they meet depends on the scheduler (the in-memory store
        // answers at once): this checks that none is lost or left waiting;
        // that sends which meet share a write is checked above and in the
        // fault harness (`grouped intents`).
        let store = Arc::new(MemoryStore::new().atomic_multi_key(true));
        let group = Arc::new(GroupCommit::default());
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..200 {
            let (store, group) = (store.clone(), group.clone());
            tasks.spawn(async move {
                let ticket = group.queue_write(create(&format!("i/{i}")));
                group
                    .commit(Target::Store(store.as_ref()), ticket, None)
                    .await
            });
        }
        while let Some(version) = tasks.join_next().await {
            assert!(version.unwrap().is_some());
        }
        for i in 0..200 {
            assert!(store.get(&format!("i/{i}")).await.unwrap().is_some());
        }
    }
}
