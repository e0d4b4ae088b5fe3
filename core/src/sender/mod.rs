//! [`Sender`]: sends messages from outside any handler (a web request, a
//! script) with the same guarantees a handler's sends have. Each message is
//! first committed as an *intent record* holding its `OutboxEntry` and its
//! `DedupToken`, then dispatched; the sweeper dispatches it if the sender
//! dies in between. Once dispatched, the entry is left for the receiver:
//! its consume of the token drops it in the same write, so a message costs
//! the sender one store write.
//!
//! Here: the `Sender` and its send calls. Beside it: how intents are
//! committed and dispatched ([`intent`]), and the once-only records of
//! [`Sender::create`] and [`Sender::run_once`] ([`once`]).

mod intent;
mod once;

pub use once::{Intent, Once, OnceStep};

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::codec::{Codec, CodecExt, Json};
use crate::colocated::Colocated;
use crate::env::Env;
use crate::error::{CodecError, HandlerError, InvalidName, StoreError};
use crate::group_commit::{DEFAULT_GROUP_ABOVE, GroupCommit};
use crate::message::{DedupToken, Envelope, Message, MessageId};
use crate::protocol::dispatched::Dispatched;
use crate::protocol::finish::Finisher;
use crate::protocol::{Mutant, Probe, Sweeper};
use crate::record::{INTENT_PREFIX, validate_name};
use crate::store::Store;
use crate::transport::Transport;

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

    /// The store key of the intent record for `id`.
    pub fn record_key(&self, id: MessageId) -> String {
        format!("{INTENT_PREFIX}{}/{id}", self.source)
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

    pub(super) fn finisher<'a>(&'a self, probe: Option<&'a dyn Probe>) -> Finisher<'a> {
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
