//! Once-only records kept by a `Sender`: [`Sender::create`] writes one
//! unless it exists, [`Sender::run_once`] runs a handler against one until
//! a run commits — the state and the captured messages in one conditional
//! write. What the HTTP front's idempotency keys are built on.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use tracing::warn;

use super::{SendError, Sender};
use crate::context::Context;
use crate::error::{HandlerError, StoreError};
use crate::message::MessageId;
use crate::protocol::AttemptError;
use crate::record::{EntityRecord, Loaded, OutboxEntry, read_record, write_record};

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

impl Sender {
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
}
