//! Steps 4 and 5: finishing a committed `OutboxEntry` — dispatch its
//! messages, consume the incoming message's `DedupToken`, then remove the
//! entry. Workers, redeliveries and the `Sweeper` all finish entries through
//! this one piece of code, and finishing twice is harmless: dispatch reuses
//! the stable ids and tokens, consuming a gone token is a no-op, and removing
//! a gone entry is a no-op.

use std::time::Duration;

use tracing::{Instrument, debug_span};

use super::{AttemptError, Mutant, Probe, Step, pause};
use crate::call::{CallError, CallExecutor, PendingCall};
use crate::codec::{Codec, CodecExt};
use crate::env::Env;
use crate::message::headers;
use crate::message::{DedupToken, MessageId};
use crate::record::{Loaded, OutboxEntry, read_record, write_record};
use crate::store::Store;
use crate::transport::Outgoing;
use crate::transport::Transport;

/// How many lost races a bookkeeping write tolerates before giving up (the
/// attempt is then retried from step 1).
pub(crate) const CONFLICT_LIMIT: u32 = 64;
/// Longest back-off between two tries of a conflicting bookkeeping write.
pub(crate) const CONFLICT_BACKOFF: Duration = Duration::from_millis(4);
/// Tries of a captured call within one finishing.
const CALL_TRIES: u32 = 3;
/// Back-off unit between tries of a call (doubles each try, jittered).
const CALL_BACKOFF: Duration = Duration::from_millis(100);

/// Everything finishing needs, borrowed from its owner.
pub(crate) struct Finisher<'a> {
    pub store: &'a dyn Store,
    pub transport: &'a dyn Transport,
    pub env: &'a Env,
    /// Encodes call results.
    pub codec: &'a dyn Codec,
    /// Performs captured calls; `None` where no call can be pending.
    pub calls: Option<&'a dyn CallExecutor>,
    pub probe: Option<&'a dyn Probe>,
    pub mutant: Option<Mutant>,
}

impl Finisher<'_> {
    pub(crate) fn is(&self, mutant: Mutant) -> bool {
        self.mutant == Some(mutant)
    }

    pub(crate) async fn step(&self, step: Step) {
        pause(self.probe, step).await;
    }

    /// Finishes every pending entry of the record at `key`, oldest first, and
    /// returns the record as last written.
    pub(crate) async fn finish_pending(
        &self,
        key: &str,
        mut current: Loaded,
    ) -> Result<Loaded, AttemptError> {
        while let Some(entry) = current.record.outbox.first().cloned() {
            current = self.finish_entry(key, current, &entry).await?;
        }
        Ok(current)
    }

    /// Steps 4–5 for one entry.
    pub(crate) async fn finish_entry(
        &self,
        key: &str,
        mut current: Loaded,
        entry: &OutboxEntry,
    ) -> Result<Loaded, AttemptError> {
        let span = debug_span!("exactly.finish", entity = key, message_id = %entry.incoming);
        async {
            if self.is(Mutant::RecreateTokenAtDispatch) {
                current = self.recreate_tokens(key, current, entry).await?;
            }
            self.dispatch(entry).await?;
            for call in &entry.calls {
                self.perform(call).await?;
            }
            if self.is(Mutant::RemoveEntryBeforeConsume) {
                let current = self.remove_entry(key, current, entry.incoming).await?;
                self.consume_token(entry.incoming_token.as_ref()).await?;
                return Ok(current);
            }
            // Consume first, then remove: removing first and crashing leaves
            // the token, and a redelivery would run the handler again
            // (AtMostOneStateChange).
            self.consume_token(entry.incoming_token.as_ref()).await?;
            self.remove_entry(key, current, entry.incoming).await
        }
        .instrument(span)
        .await
    }

    /// Step 4: sends the entry's messages with their stable ids and tokens.
    /// Never creates a token (TokensBounded: tokens are only made by the
    /// commit that made the messages).
    pub(crate) async fn dispatch(&self, entry: &OutboxEntry) -> Result<(), AttemptError> {
        if entry.messages.is_empty() {
            return Ok(());
        }
        self.step(Step::Dispatch).await;
        self.transport
            .send(entry.messages.clone())
            .instrument(debug_span!(
                "exactly.dispatch",
                count = entry.messages.len()
            ))
            .await?;
        Ok(())
    }

    /// Step 4 for a captured call: make it (same idempotency key every time),
    /// then send its result, whose id and token were fixed at the commit.
    /// Transient failures are retried a few times here; after that the entry
    /// stays pending and the next finisher (a redelivery, the sweeper) retries.
    pub(crate) async fn perform(&self, pending: &PendingCall) -> Result<(), AttemptError> {
        let executor = self.calls.ok_or_else(|| {
            AttemptError::Retry("an HTTP call is pending but no CallExecutor is configured".into())
        })?;
        let span = debug_span!("exactly.call", call = %pending.call.name, key = %pending.call.idempotency_key);
        let mut result = async {
            let mut last = String::new();
            for attempt in 0..CALL_TRIES {
                if attempt > 0 {
                    let backoff = CALL_BACKOFF.saturating_mul(1 << attempt);
                    self.env.clock.sleep(self.env.jitter(backoff)).await;
                }
                self.step(Step::Call).await;
                match executor.execute(&pending.call).await {
                    Ok(result) => return Ok(result),
                    Err(CallError::Transient(e)) => last = e,
                    Err(e) => return Err(AttemptError::Retry(e.to_string())),
                }
            }
            Err(AttemptError::Retry(format!(
                "call {:?}: {last}",
                pending.call.name
            )))
        }
        .instrument(span)
        .await?;
        result.entity = pending
            .result
            .header(headers::CALL_ENTITY)
            .unwrap_or_default()
            .to_owned();
        let mut envelope = pending.result.clone();
        envelope.body = self
            .codec
            .encode(&result)
            .map_err(|e| AttemptError::Retry(e.to_string()))?;
        envelope.content_type = self.codec.content_type().to_owned();
        self.step(Step::Dispatch).await;
        self.transport.send(vec![Outgoing::new(envelope)]).await?;
        Ok(())
    }

    /// Step 5a: removes the token from the record that holds it. A token
    /// already gone means another finisher consumed it: nothing to do.
    pub(crate) async fn consume_token(
        &self,
        token: Option<&DedupToken>,
    ) -> Result<(), AttemptError> {
        let Some(token) = token else {
            return Ok(());
        };
        let span = debug_span!("exactly.consume_token", record = %token.record, token = %token.id);
        async {
            for _ in 0..CONFLICT_LIMIT {
                self.step(Step::ConsumeToken).await;
                let holder = read_record(self.store, &token.record).await?;
                if !holder.record.tokens.contains(&token.id) {
                    return Ok(());
                }
                let mut record = holder.record.clone();
                record.tokens.remove(&token.id);
                self.step(Step::ConsumeToken).await;
                match write_record(self.store, &token.record, &holder, &record).await {
                    Ok(_) => return Ok(()),
                    Err(e) if e.is_conflict() => self.back_off().await,
                    Err(e) => return Err(e.into()),
                }
            }
            Err(AttemptError::Conflict)
        }
        .instrument(span)
        .await
    }

    /// Step 5b: writes the record back without the entry for `incoming`.
    pub(crate) async fn remove_entry(
        &self,
        key: &str,
        current: Loaded,
        incoming: MessageId,
    ) -> Result<Loaded, AttemptError> {
        let span = debug_span!("exactly.remove_entry", entity = key, message_id = %incoming);
        self.remove_entry_inner(key, current, incoming)
            .instrument(span)
            .await
    }

    async fn remove_entry_inner(
        &self,
        key: &str,
        mut current: Loaded,
        incoming: MessageId,
    ) -> Result<Loaded, AttemptError> {
        for _ in 0..CONFLICT_LIMIT {
            if current.record.entry(incoming).is_none() {
                return Ok(current);
            }
            let mut record = current.record.clone();
            record.outbox.retain(|e| e.incoming != incoming);
            self.step(Step::RemoveEntry).await;
            match write_record(self.store, key, &current, &record).await {
                Ok(version) => {
                    return Ok(Loaded {
                        record,
                        version: Some(version),
                    });
                }
                Err(e) if e.is_conflict() => {
                    self.back_off().await;
                    self.step(Step::RemoveEntry).await;
                    current = read_record(self.store, key).await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(AttemptError::Conflict)
    }

    /// Mutant `RecreateTokenAtDispatch`: put-if-absent of the entry's tokens
    /// before sending. Kept here, beside the code it breaks, so the
    /// difference is one `if`.
    async fn recreate_tokens(
        &self,
        key: &str,
        mut current: Loaded,
        entry: &OutboxEntry,
    ) -> Result<Loaded, AttemptError> {
        loop {
            let missing: Vec<MessageId> = entry
                .messages
                .iter()
                .map(|m| m.envelope.id)
                .chain(entry.calls.iter().map(|c| c.result.id))
                .filter(|id| !current.record.tokens.contains(id))
                .collect();
            if current.record.entry(entry.incoming).is_none() || missing.is_empty() {
                return Ok(current);
            }
            let mut record = current.record.clone();
            record.tokens.extend(missing);
            self.step(Step::Dispatch).await;
            match write_record(self.store, key, &current, &record).await {
                Ok(version) => {
                    return Ok(Loaded {
                        record,
                        version: Some(version),
                    });
                }
                Err(e) if e.is_conflict() => current = read_record(self.store, key).await?,
                Err(e) => return Err(e.into()),
            }
        }
    }

    pub(crate) async fn back_off(&self) {
        self.env
            .clock
            .sleep(self.env.jitter(CONFLICT_BACKOFF))
            .await;
    }
}
