//! [`Sender`]: sends messages from outside any handler (a web request, a
//! script) with the same guarantees a handler's sends have. Each message is
//! first committed as an *intent record* holding its `OutboxEntry` and its
//! `DedupToken`, then dispatched; the sweeper dispatches it if the sender
//! dies in between.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tracing::warn;

use crate::codec::{Codec, CodecExt, Json};
use crate::env::Env;
use crate::error::{CodecError, InvalidName, StoreError};
use crate::message::{DedupToken, Envelope, Message, MessageId};
use crate::protocol::finish::Finisher;
use crate::protocol::{AttemptError, Probe, Sweeper};
use crate::record::{EntityRecord, INTENT_PREFIX, Loaded, OutboxEntry, read_record, validate_name};
use crate::store::{Precondition, Store};
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
}

/// Commits and sends messages on behalf of a named source.
#[derive(Clone, Debug)]
pub struct Sender {
    source: String,
    store: Arc<dyn Store>,
    transport: Arc<dyn Transport>,
    codec: Arc<dyn Codec>,
    env: Env,
}

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
        })
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

    /// Commits the intent for `envelope` (whose token must point at this
    /// sender's record for its id), then dispatches it.
    pub(crate) async fn send_envelope(
        &self,
        envelope: Envelope,
        probe: Option<&dyn Probe>,
    ) -> Result<MessageId, SendError> {
        let id = envelope.id;
        let key = self.record_key(id);
        let mut record = EntityRecord::default();
        record.tokens.insert(id);
        record.outbox.push(OutboxEntry {
            incoming: id,
            incoming_token: None,
            committed_at: self.env.now_millis(),
            messages: vec![Outgoing::new(envelope)],
            calls: Vec::new(),
        });
        let finisher = self.finisher(probe);
        let committed = self.commit_intent(&finisher, &key, record).await?;
        match finisher.finish_pending(&key, committed).await {
            Ok(_) => {}
            Err(AttemptError::Retry(reason) | AttemptError::Poison(reason)) => {
                warn!(%id, %reason, "intent committed but not yet dispatched; the sweeper will");
            }
            Err(AttemptError::Conflict) => {}
        }
        Ok(id)
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
        for _ in 0..crate::protocol::finish::CONFLICT_LIMIT {
            finisher.step(crate::Step::Commit).await;
            match self
                .store
                .put(key, record.encode(), Precondition::Absent)
                .await
            {
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

    /// A sweeper over this sender's intent records (run it, or intents of a
    /// sender that died between commit and dispatch wait for the next send).
    pub fn sweeper(&self) -> Sweeper {
        Sweeper::new(self.store.clone(), self.transport.clone())
            .prefix(format!("{INTENT_PREFIX}{}/", self.source))
            .env(self.env.clone())
            .min_age(Duration::from_secs(2))
    }

    fn record_key(&self, id: MessageId) -> String {
        format!("{INTENT_PREFIX}{}/{id}", self.source)
    }

    fn finisher<'a>(&'a self, probe: Option<&'a dyn Probe>) -> Finisher<'a> {
        Finisher {
            store: self.store.as_ref(),
            transport: self.transport.as_ref(),
            env: &self.env,
            codec: self.codec.as_ref(),
            calls: None,
            probe,
            mutant: None,
        }
    }
}
