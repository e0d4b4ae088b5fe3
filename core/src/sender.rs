//! [`Sender`]: sends messages from outside any handler (a web request, a
//! script) with the same guarantees a handler's sends have. Each message is
//! first committed as an *intent record* holding its `OutboxEntry` and its
//! `DedupToken`, then dispatched; the sweeper dispatches it if the sender
//! dies in between. Once dispatched, the entry is left for the receiver:
//! its consume of the token drops it in the same write, so a message costs
//! the sender one store write.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use tracing::warn;

use crate::codec::{Codec, CodecExt, Json};
use crate::colocated::Colocated;
use crate::context::Context;
use crate::env::Env;
use crate::error::{CodecError, HandlerError, InvalidName, StoreError};
use crate::group_commit::{DEFAULT_GROUP_ABOVE, GroupCommit, Target};
use crate::message::{DedupToken, Envelope, Message, MessageId};
use crate::protocol::batch::{Group, put_groups};
use crate::protocol::dispatched::Dispatched;
use crate::protocol::finish::Finisher;
use crate::protocol::{AttemptError, Mutant, Probe, Sweeper};
use crate::record::{
    EntityRecord, INTENT_PREFIX, Loaded, OutboxEntry, read_record, validate_name, write_record,
};
use crate::store::{Precondition, Store, Version, Write};
use crate::transport::{Outgoing, Transport};

/// Why a send was not accepted. Once `send` returns `Ok`, the message is
/// committed and will be delivered even if this process dies right after.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The intent could not be committed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The message could not be encoded.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// A name was refused.
    #[error(transparent)]
    InvalidName(#[from] InvalidName),
    /// A [`Sender::run_once`] handler failed.
    #[error(transparent)]
    Handler(#[from] HandlerError),
}

/// What [`Sender::run_once`] found or did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Once {
    /// No record under that id (never created, or deleted).
    Missing,
    /// The handler said the work was already done; the state as read.
    Done(Bytes),
    /// This call committed; the new state.
    Ran(Bytes),
}

/// What a [`Sender::run_once`] handler decides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OnceStep {
    /// Commit this new state together with the effects captured.
    Commit(Bytes),
    /// Nothing to do.
    Done,
}

/// An intent record as committed by [`Sender::send_with_state`].
#[derive(Clone, Debug)]
pub struct Intent {
    /// Its store key.
    pub key: String,
    /// The state stored with it by the send that committed first.
    pub state: Option<Bytes>,
}

/// Commits and sends messages on behalf of a named source.
#[derive(Clone, Debug)]
pub struct Sender {
    source: String,
    store: Arc<dyn Store>,
    transport: Arc<dyn Transport>,
    codec: Arc<dyn Codec>,
    env: Env,
    retention: Duration,
    dispatched: Arc<Dispatched>,
    colocated: Option<Arc<dyn Colocated>>,
    group: Option<Arc<GroupCommit>>,
    group_above: Duration,
    mutant: Option<Mutant>,
}

/// How long a `Sender` keeps a processed message's intent record by default
/// (see [`Sender::retention`]).
pub const DEFAULT_INTENT_RETENTION: Duration = Duration::from_secs(24 * 60 * 60);

/// The window of intent records a bounded sweeper of a `Sender` reads
/// first, every pass ([`Sweeper::recent`]).
const RECENT_INTENTS: Duration = Duration::from_secs(5 * 60);

impl Sender {
    /// A sender whose intent records live under `i/{source}/`.
    pub fn new(
        source: impl Into<String>,
        store: Arc<dyn Store>,
        transport: Arc<dyn Transport>,
    ) -> Result<Self, InvalidName> {
        let source = source.into();
        validate_name("sender source", &source)?;
        Ok(Self {
            source,
            store,
            transport,
            codec: Arc::new(Json),
            env: Env::system(),
            retention: DEFAULT_INTENT_RETENTION,
            dispatched: Arc::default(),
            colocated: None,
            group: Some(Arc::default()),
            group_above: DEFAULT_GROUP_ABOVE,
            mutant: None,
        })
    }

    /// How long the intent record of a processed message is kept (default
    /// [`DEFAULT_INTENT_RETENTION`], 24 h, counted from the message id's
    /// time). Within it, `send_with_id` with the same id sends nothing
    /// again; after it, this sender's [`sweeper`](Self::sweeper) deletes the
    /// record and the same id would be sent, and processed, anew. Records
    /// whose message is not yet processed are never deleted, nor those
    /// with state (`create` / `run_once`), nor ids that are not UUID v7.
    pub fn retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// Uses another codec (default JSON).
    pub fn codec(mut self, codec: Arc<dyn Codec>) -> Self {
        self.codec = codec;
        self
    }

    /// Injects time and randomness.
    pub fn env(mut self, env: Env) -> Self {
        self.env = env;
        self
    }

    /// Commits through `unit`, whose database holds this sender's store and
    /// queue: an intent record and its message become one transaction, one
    /// round trip (see [`Colocated`]; `unit` MUST commit to the store and
    /// transport this sender was given).
    pub fn colocated(mut self, unit: Arc<dyn Colocated>) -> Self {
        self.colocated = Some(unit);
        self
    }

    /// Whether sends that run at the same time create their intent records
    /// together, in one [`put_all`](crate::Store::put_all) (default: on;
    /// only on stores that write several keys atomically, and only while
    /// writes are slow enough for it to pay, see
    /// [`group_commit_above`](Self::group_commit_above)). One group is
    /// written at a time and the next gathers meanwhile, so under
    /// concurrent sends each costs a fraction of a store write; a send
    /// alone is one plain write, as with it off. Turn it off where a
    /// multi-key write costs more than single ones: DynamoDB bills a
    /// transaction's items at twice a plain write's capacity. Clones share
    /// the groups (and these settings, at the time of cloning).
    pub fn group_commit(mut self, on: bool) -> Self {
        self.group = on.then(|| self.group.take().unwrap_or_default());
        self
    }

    /// Groups intent writes only while this sender's recent writes took at
    /// least `latency` on average (default [`DEFAULT_GROUP_ABOVE`],
    /// 200 µs): a database commit is worth sharing, an in-memory insert is
    /// cheaper than the hand-off between tasks that sharing it costs.
    /// `Duration::ZERO` groups whenever sends meet.
    pub fn group_commit_above(mut self, latency: Duration) -> Self {
        self.group_above = latency;
        self
    }

    /// Selects a deliberately broken protocol variant (harness only).
    #[cfg(feature = "harness")]
    #[doc(hidden)]
    pub fn mutant(mut self, mutant: Option<Mutant>) -> Self {
        self.mutant = mutant;
        self
    }

    /// Intent records this sender (and its clones) created together with
    /// other sends' in one write (group commit, on stores with
    /// [`put_all`](crate::Store::put_all)).
    pub fn grouped_intents(&self) -> u64 {
        self.group.as_ref().map_or(0, |g| g.grouped())
    }

    /// Sends `message` to `destination` under a fresh id.
    pub async fn send<M: Message>(
        &self,
        destination: &str,
        message: &M,
    ) -> Result<MessageId, SendError> {
        self.send_with_id(self.env.new_id(), destination, message)
            .await
    }

    /// Sends `message` under a caller-chosen id. Sending the same id again
    /// is idempotent: the first commit wins and later calls only make sure
    /// it was dispatched.
    pub async fn send_with_id<M: Message>(
        &self,
        id: MessageId,
        destination: &str,
        message: &M,
    ) -> Result<MessageId, SendError> {
        let envelope = self.envelope(id, destination, message)?;
        self.send_envelope(envelope, None).await
    }

    /// The envelope `send_with_id` would commit.
    pub fn envelope<M: Message>(
        &self,
        id: MessageId,
        destination: &str,
        message: &M,
    ) -> Result<Envelope, SendError> {
        validate_name("destination", destination)?;
        Ok(Envelope {
            id,
            message_type: M::TYPE.to_owned(),
            destination: destination.to_owned(),
            headers: BTreeMap::new(),
            correlation_id: Some(id),
            causation_id: None,
            reply_to: None,
            token: Some(DedupToken {
                record: self.record_key(id),
                id,
            }),
            content_type: self.codec.content_type().to_owned(),
            body: self.codec.encode(message)?,
        })
    }

    /// Commits the intent for `envelope` (built by [`Sender::envelope`])
    /// together with `state` — e.g. the answer an HTTP front end must repeat
    /// to retries — then dispatches it. If an earlier send of the same id
    /// committed first, nothing new is written and that first record is
    /// returned: callers compare its state with theirs.
    pub async fn send_with_state(
        &self,
        envelope: Envelope,
        state: Bytes,
    ) -> Result<Intent, SendError> {
        let key = self.record_key(envelope.id);
        let committed = self
            .commit_and_dispatch(envelope, Some(state), None)
            .await?;
        Ok(Intent {
            key,
            state: committed.record.state,
        })
    }

    /// Commits the intent for `envelope` (whose token must point at this
    /// sender's record for its id), then dispatches it.
    pub(crate) async fn send_envelope(
        &self,
        envelope: Envelope,
        probe: Option<&dyn Probe>,
    ) -> Result<MessageId, SendError> {
        let id = envelope.id;
        self.commit_and_dispatch(envelope, None, probe).await?;
        Ok(id)
    }

    /// Sends several messages to `destination`, each under a fresh id, as
    /// [`Sender::send`] would, but together: on a store that writes several
    /// keys atomically, every intent record is created in one `put_all`
    /// and every message goes out in one send. Returns the ids in order.
    pub async fn send_all<M: Message>(
        &self,
        destination: &str,
        messages: &[M],
    ) -> Result<Vec<MessageId>, SendError> {
        let envelopes = messages
            .iter()
            .map(|m| self.envelope(self.env.new_id(), destination, m))
            .collect::<Result<Vec<_>, _>>()?;
        self.send_envelopes(envelopes).await
    }

    /// Sends envelopes built by [`Sender::envelope`] together (see
    /// [`Sender::send_all`]). Each id is its own intent record, so sending
    /// the same envelopes again is idempotent: after an error, some of them
    /// may be committed (and will be delivered), and a retry of the whole
    /// list sends nothing twice.
    pub async fn send_envelopes(
        &self,
        envelopes: Vec<Envelope>,
    ) -> Result<Vec<MessageId>, SendError> {
        self.send_batch(envelopes, None).await
    }

    /// [`Sender::send_envelopes`], pausing at `probe` before each step.
    pub(crate) async fn send_batch(
        &self,
        envelopes: Vec<Envelope>,
        probe: Option<&dyn Probe>,
    ) -> Result<Vec<MessageId>, SendError> {
        for envelope in &envelopes {
            self.check_token(envelope)?;
        }
        let ids: Vec<MessageId> = envelopes.iter().map(|e| e.id).collect();
        // An id listed twice is one intent record: its repeats go after.
        let mut seen = std::collections::HashSet::new();
        let (envelopes, repeats): (Vec<Envelope>, Vec<Envelope>) =
            envelopes.into_iter().partition(|e| seen.insert(e.id));
        if envelopes.len() < 2 || !self.store.capabilities().atomic_multi_key {
            for envelope in envelopes.into_iter().chain(repeats) {
                self.commit_and_dispatch(envelope, None, probe).await?;
            }
            return Ok(ids);
        }
        let finisher = self.finisher(probe);
        let intents: Vec<(String, EntityRecord)> = envelopes
            .iter()
            .map(|e| (self.record_key(e.id), self.intent_record(e.clone(), None)))
            .collect();
        if self.send_colocated(&finisher, &intents).await?.is_some() {
            for envelope in repeats {
                self.commit_and_dispatch(envelope, None, probe).await?;
            }
            return Ok(ids);
        }
        let groups: Vec<Group> = intents
            .iter()
            .map(|(key, record)| Group::from(vec![intent_write(key, record)]))
            .collect();
        finisher.step(crate::Step::Commit).await;
        let all = (0..groups.len()).collect();
        let written = put_groups(
            self.store.as_ref(),
            None,
            &groups,
            all,
            |_| Vec::new(),
            |_| {},
        )
        .await
        .groups;
        // Written in the batch: sent together. Not written (sent before
        // under this id, or the batch write failed): decided one at a time
        // afterwards, with the repeats (a conflict is read, not trusted).
        let (mut fresh, mut alone) = (Vec::with_capacity(envelopes.len()), Vec::new());
        for (envelope, written) in envelopes.into_iter().zip(written) {
            match written {
                Some(_) => fresh.push(Outgoing::new(envelope)),
                None => alone.push(envelope),
            }
        }
        let sent: Vec<(String, MessageId)> = fresh
            .iter()
            .map(|o| (self.record_key(o.envelope.id), o.envelope.id))
            .collect();
        let entry = OutboxEntry {
            messages: fresh,
            committed_at: self.env.now_millis(),
            ..OutboxEntry::default()
        };
        match finisher.dispatch(&entry).await {
            Ok(()) => sent
                .iter()
                .for_each(|(key, id)| self.dispatched.remember(key, *id)),
            Err(e) => {
                warn!(error = ?e, "intents committed but not yet dispatched; the sweeper will");
            }
        }
        for envelope in alone.into_iter().chain(repeats) {
            self.commit_and_dispatch(envelope, None, probe).await?;
        }
        Ok(ids)
    }

    /// Where the queue shares the store's database: creates the intent
    /// records and sends their messages in one transaction, and remembers
    /// them as sent (left for the receivers' consumes, as after a
    /// dispatch); returns their versions. `None` when there is no such
    /// database, or when a record exists already (an earlier send of the
    /// same id: the caller reads it and finishes what it left).
    async fn send_colocated(
        &self,
        finisher: &Finisher<'_>,
        intents: &[(String, EntityRecord)],
    ) -> Result<Option<Vec<Version>>, SendError> {
        let Some(unit) = &self.colocated else {
            return Ok(None);
        };
        let writes: Vec<Write> = intents
            .iter()
            .map(|(key, record)| intent_write(key, record))
            .collect();
        let send: Vec<Outgoing> = intents
            .iter()
            .flat_map(|(_, record)| &record.outbox)
            .flat_map(|entry| entry.messages.iter().cloned())
            .collect();
        // One send: first with the others running (one transaction for
        // all their records and messages), then, if not reported done,
        // alone.
        let mut grouped = None;
        if let (1, Some(group)) = (writes.len(), self.grouping(true)) {
            let target = Target::Colocated(unit.as_ref());
            grouped = self
                .commit_grouped(finisher, group, target, writes[0].clone(), send.clone())
                .await;
        }
        let versions = match grouped {
            Some(version) => vec![version],
            None => {
                finisher.step(crate::Step::Commit).await;
                let started = std::time::Instant::now();
                let written = unit.put_all_with(writes, send, Vec::new()).await;
                self.record_write_time(started);
                match written {
                    Ok(versions) => versions,
                    Err(e) if e.is_conflict() => return Ok(None),
                    Err(e) => return Err(e.into()),
                }
            }
        };
        for (key, record) in intents {
            for entry in &record.outbox {
                self.dispatched.remember(key, entry.incoming);
            }
        }
        Ok(Some(versions))
    }

    /// Refuses an envelope whose token is not this sender's for its id: its
    /// intent record would hold a token no receiver could consume.
    fn check_token(&self, envelope: &Envelope) -> Result<(), InvalidName> {
        let key = self.record_key(envelope.id);
        match &envelope.token {
            Some(token) if token.record == key && token.id == envelope.id => Ok(()),
            _ => Err(InvalidName {
                what: "envelope token",
                value: envelope.id.to_string(),
                reason: "must be this sender's token for the envelope's id (Sender::envelope)",
            }),
        }
    }

    /// The intent record for `envelope`: its token, and an entry that only
    /// sends it.
    fn intent_record(&self, envelope: Envelope, state: Option<Bytes>) -> EntityRecord {
        let id = envelope.id;
        let mut record = EntityRecord {
            state,
            ..EntityRecord::default()
        };
        record.tokens.insert(id);
        record.outbox.push(OutboxEntry {
            incoming: id,
            incoming_token: None,
            committed_at: self.env.now_millis(),
            messages: vec![Outgoing::new(envelope)],
            ..OutboxEntry::default()
        });
        record
    }

    async fn commit_and_dispatch(
        &self,
        envelope: Envelope,
        state: Option<Bytes>,
        probe: Option<&dyn Probe>,
    ) -> Result<Loaded, SendError> {
        let id = envelope.id;
        let key = self.record_key(id);
        let intent = [(key, self.intent_record(envelope, state))];
        let finisher = self.finisher(probe);
        let sent = self.send_colocated(&finisher, &intent).await?;
        let [(key, record)] = intent;
        if let Some(versions) = sent {
            return Ok(Loaded {
                record,
                version: versions.into_iter().next(),
            });
        }
        let mut committed = self.commit_intent(&finisher, &key, record).await?;
        match self
            .dispatch_pending(&finisher, &key, id, &mut committed)
            .await
        {
            Ok(()) => {}
            Err(AttemptError::Retry(reason) | AttemptError::Poison(reason)) => {
                warn!(%id, %reason, "intent committed but not yet dispatched; the sweeper will");
            }
            Err(AttemptError::Conflict) => {}
        }
        Ok(committed)
    }

    /// Sends what the intent record for `id` (at `key`) has pending,
    /// bringing `current` up to date. Its intent entry (the one for `id`,
    /// which only sends a message) is left in place once sent, and
    /// remembered as sent: the receiver's consume of its token drops it,
    /// so this sender does not write again. An entry this sender already
    /// sent is skipped; any other entry (a `run_once` commit's) is finished
    /// in full. On an error, `current` is the record as last written.
    async fn dispatch_pending(
        &self,
        finisher: &Finisher<'_>,
        key: &str,
        id: MessageId,
        current: &mut Loaded,
    ) -> Result<(), AttemptError> {
        let entries: Vec<MessageId> = current.record.outbox.iter().map(|e| e.incoming).collect();
        for incoming in entries {
            let Some(entry) = current.record.entry(incoming) else {
                continue;
            };
            let intent = incoming == id;
            if intent && self.dispatched.contains(key, id) {
                continue;
            }
            if !(intent && entry.sends_only()) {
                let entry = entry.clone();
                *current = finisher.finish_entry(key, current.clone(), &entry).await?;
                continue;
            }
            // Remembered only once sent: the sweeper removes a remembered
            // entry without sending it.
            finisher.dispatch(entry).await?;
            self.dispatched.remember(key, id);
        }
        Ok(())
    }

    /// The group commit, if this send should go through it: on, writes
    /// that can hold several records at once (`atomic`), and recent writes
    /// slow enough for it to pay.
    fn grouping(&self, atomic: bool) -> Option<&GroupCommit> {
        let group = self.group.as_deref()?;
        (atomic && group.write_time() >= self.group_above).then_some(group)
    }

    /// Queues `write` (and `send`) with the sends running at the same time
    /// and waits for the group's write: `Some` once stored, `None` when the
    /// caller must write alone.
    async fn commit_grouped(
        &self,
        finisher: &Finisher<'_>,
        group: &GroupCommit,
        target: Target<'_>,
        write: Write,
        send: Vec<Outgoing>,
    ) -> Option<Version> {
        finisher.step(crate::Step::Group).await;
        let ticket = group.queue(write, send);
        finisher.step(crate::Step::Commit).await;
        group.commit(target, ticket, self.mutant).await
    }

    /// Counts a write that started at `started` into the group commit's
    /// running average.
    fn record_write_time(&self, started: std::time::Instant) {
        if let Some(group) = &self.group {
            group.record_write_time(started.elapsed());
        }
    }

    /// The store key of the intent record for `id`.
    pub fn record_key(&self, id: MessageId) -> String {
        format!("{INTENT_PREFIX}{}/{id}", self.source)
    }

    /// Creates the intent record, or finds the one an earlier send of the
    /// same id created. A conflict counts as "sent before" only once a read
    /// shows the record: trusting the conflict alone would report a message
    /// as accepted that was never committed (a lost message).
    async fn commit_intent(
        &self,
        finisher: &Finisher<'_>,
        key: &str,
        record: EntityRecord,
    ) -> Result<Loaded, SendError> {
        let mut last = None;
        // First with whatever other sends are running (one `put_all`), then,
        // if that write is not reported done, alone.
        let mut group = self.grouping(self.store.capabilities().atomic_multi_key);
        for _ in 0..crate::protocol::finish::CONFLICT_LIMIT {
            if let Some(group) = group.take() {
                let target = Target::Store(self.store.as_ref());
                let write = intent_write(key, &record);
                let grouped = self.commit_grouped(finisher, group, target, write, Vec::new());
                if let Some(version) = grouped.await {
                    return Ok(Loaded {
                        record,
                        version: Some(version),
                    });
                }
            }
            finisher.step(crate::Step::Commit).await;
            let started = std::time::Instant::now();
            let written = self
                .store
                .put(key, record.encode(), Precondition::Absent)
                .await;
            self.record_write_time(started);
            match written {
                Ok(version) => {
                    return Ok(Loaded {
                        record,
                        version: Some(version),
                    });
                }
                Err(e) if e.is_conflict() => {
                    finisher.step(crate::Step::Load).await;
                    let existing = read_record(self.store.as_ref(), key).await?;
                    if existing.version.is_some() {
                        return Ok(existing);
                    }
                    last = Some(e);
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(last
            .unwrap_or_else(|| StoreError::generic("intent commit kept conflicting"))
            .into())
    }

    /// Creates the record for `id` holding `state`, unless it exists; either
    /// way returns the record's state as first written. Nothing is sent.
    pub async fn create(&self, id: MessageId, state: Bytes) -> Result<Intent, SendError> {
        let key = self.record_key(id);
        let record = EntityRecord {
            state: Some(state),
            ..EntityRecord::default()
        };
        let loaded = self
            .commit_intent(&self.finisher(None), &key, record)
            .await?;
        Ok(Intent {
            key,
            state: loaded.record.state,
        })
    }

    /// Runs `handler` against the record for `id` until one run commits or
    /// the handler says the work is done. The handler gets the record's state
    /// and a [`Context`] to capture messages; `OnceStep::Commit` writes the
    /// new state and those messages (with their tokens) in one conditional
    /// write of the record, so of concurrent or stale runs exactly one takes
    /// hold, and none after the record is deleted. Captured HTTP calls are
    /// not supported here.
    pub async fn run_once(
        &self,
        id: MessageId,
        mut handler: impl FnMut(&Bytes, &mut Context) -> Result<OnceStep, HandlerError>,
    ) -> Result<Once, SendError> {
        let key = self.record_key(id);
        let finisher = self.finisher(None);
        for _ in 0..crate::protocol::finish::CONFLICT_LIMIT {
            let mut loaded = read_record(self.store.as_ref(), &key).await?;
            if loaded.version.is_none() {
                return Ok(Once::Missing);
            }
            if !loaded.record.outbox.is_empty() {
                match self
                    .dispatch_pending(&finisher, &key, id, &mut loaded)
                    .await
                {
                    Ok(()) => {}
                    Err(AttemptError::Conflict) => continue,
                    Err(AttemptError::Retry(reason) | AttemptError::Poison(reason)) => {
                        warn!(%id, %reason, "pending effects not yet sent; the sweeper will");
                    }
                }
            }
            let state = loaded.record.state.clone().unwrap_or_default();
            let incoming = crate::context::Incoming {
                id,
                correlation_id: Some(id),
                reply_to: None,
                headers: BTreeMap::new(),
            };
            let mut ctx = Context::new(
                &self.source,
                &key,
                incoming,
                self.env.clone(),
                self.codec.clone(),
                Arc::default(),
            );
            let new_state = match handler(&state, &mut ctx)? {
                OnceStep::Done => return Ok(Once::Done(state)),
                OnceStep::Commit(new_state) => new_state,
            };
            let (messages, calls, _) = ctx.into_effects();
            if !calls.is_empty() {
                return Err(HandlerError::Routing(
                    "HTTP calls cannot be captured by a run_once handler".into(),
                )
                .into());
            }
            let mut record = loaded.record.clone();
            record.state = Some(new_state.clone());
            record.tokens.extend(messages.iter().map(|m| m.envelope.id));
            record.outbox.push(OutboxEntry {
                incoming: self.env.new_id(),
                incoming_token: None,
                committed_at: self.env.now_millis(),
                messages,
                calls,
                ..OutboxEntry::default()
            });
            match write_record(self.store.as_ref(), &key, &loaded, &record).await {
                Ok(version) => {
                    let mut committed = Loaded {
                        record,
                        version: Some(version),
                    };
                    if let Err(AttemptError::Retry(reason) | AttemptError::Poison(reason)) = self
                        .dispatch_pending(&finisher, &key, id, &mut committed)
                        .await
                    {
                        warn!(%id, %reason, "committed; the sweeper will send the rest");
                    }
                    return Ok(Once::Ran(new_state));
                }
                Err(e) if e.is_conflict() => finisher.back_off().await,
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Conflict { key }.into())
    }

    /// A sweeper over this sender's intent records: it sends intents of a
    /// sender that died between commit and dispatch, and deletes the records
    /// of processed messages after the [`retention`](Self::retention). It
    /// shares this sender's memory of what it sent: an intent sent but not
    /// yet consumed after the grace period (a backlog, an error-queued
    /// message) is removed without being sent again; one this process did
    /// not send is sent once more (the receiver drops the copy). Run it, or
    /// intents of a crashed sender wait for the next send of their id and
    /// the records stay.
    pub fn sweeper(&self) -> Sweeper {
        Sweeper::new(self.store.clone(), self.transport.clone())
            .prefix(format!("{INTENT_PREFIX}{}/", self.source))
            .env(self.env.clone())
            .min_age(Duration::from_secs(2))
            .recent(RECENT_INTENTS)
            .expire_finished(self.retention)
            .dispatched(self.dispatched_memory())
    }

    /// The memory of sent intent entries this sender's sweeper shares.
    pub(crate) fn dispatched_memory(&self) -> Arc<Dispatched> {
        self.dispatched.clone()
    }

    fn finisher<'a>(&'a self, probe: Option<&'a dyn Probe>) -> Finisher<'a> {
        Finisher {
            store: self.store.as_ref(),
            transport: self.transport.as_ref(),
            env: &self.env,
            codec: self.codec.as_ref(),
            calls: None,
            blobs: None,
            probe,
            mutant: None,
            stats: None,
        }
    }
}

/// The write that creates the intent record `record` at `key`.
fn intent_write(key: &str, record: &EntityRecord) -> Write {
    Write {
        key: key.to_owned(),
        value: record.encode(),
        precondition: Precondition::Absent,
    }
}
