//! Steps 4 and 5: finishing a committed `OutboxEntry` — dispatch its
//! messages, consume the incoming message's `DedupToken`, then remove the
//! entry. Workers, redeliveries and the `Sweeper` all finish entries through
//! this one piece of code, and finishing twice is harmless: dispatch reuses
//! the stable ids and tokens, consuming a gone token is a no-op, and removing
//! a gone entry is a no-op.

use std::time::Duration;

use tracing::{Instrument, debug_span};

use super::stats::{Counter, Stats};
use super::{AttemptError, Mutant, Probe, Step, pause};
use crate::blob::BlobStore;
use crate::call::{CallError, CallExecutor, CallResult, PendingCall};
use crate::codec::{Codec, CodecExt};
use crate::env::Env;
use crate::message::headers;
use crate::message::{DedupToken, Envelope, MessageId};
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
    /// Deletes released and doomed blobs; `None` leaves them to the collector.
    pub blobs: Option<&'a dyn BlobStore>,
    pub probe: Option<&'a dyn Probe>,
    pub mutant: Option<Mutant>,
    /// Where lost bookkeeping races are counted; `None` counts nowhere.
    pub stats: Option<&'a Stats>,
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
            for index in 0..entry.calls.len() {
                current = self.perform(key, current, entry.incoming, index).await?;
            }
            let token = entry.incoming_token.as_ref();
            if self.is(Mutant::RemoveEntryBeforeConsume) {
                let current = self.remove_entry(key, current, entry.incoming).await?;
                self.consume_token(token).await?;
                return Ok(current);
            }
            // Consume first, then remove: removing first and crashing leaves
            // the token, and a redelivery would run the handler again
            // (AtMostOneStateChange).
            self.consume_token(token).await?;
            self.clean_blobs(key, entry).await?;
            let current = self.remove_entry(key, current, entry.incoming).await?;
            // Only now the claim-check body: "body gone" must imply "entry
            // gone", because a copy that finds the body missing (and the
            // token consumed) drops itself without knowing the entity.
            self.release_claim(token, entry.incoming_claim.as_deref())
                .await?;
            Ok(current)
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
        let lag = self.env.now_millis().saturating_sub(entry.committed_at);
        metrics::histogram!("exactly_outbox_dispatch_lag_seconds").record(lag as f64 / 1000.0);
        self.transport
            .send(entry.messages.clone())
            .instrument(debug_span!(
                "exactly.dispatch",
                count = entry.messages.len()
            ))
            .await?;
        Ok(())
    }

    /// Step 4 for a captured call: make it (the same idempotency key every
    /// time), record the first answer in the entry, then send the result
    /// message built from that recorded answer. Recording first means every
    /// copy of the result carries the same bytes (ConsistentOutput), and a
    /// later finisher reuses the answer instead of calling again. Transient
    /// failures are retried a few times here; after that the entry stays
    /// pending and the next finisher (a redelivery, the sweeper) retries.
    async fn perform(
        &self,
        key: &str,
        current: Loaded,
        incoming: MessageId,
        index: usize,
    ) -> Result<Loaded, AttemptError> {
        let Some(pending) = recorded_call(&current, incoming, index).cloned() else {
            // The entry is gone: whoever removed it sent the result first.
            return Ok(current);
        };
        let (current, result) = match &pending.result {
            // Nobody waits for the answer (a release): making the call is all.
            None => {
                self.execute(&pending).await?;
                (current, None)
            }
            Some(result) if result.body.is_empty() => {
                let answer = self.execute(&pending).await?;
                self.record_answer(key, current, incoming, index, answer)
                    .await?
            }
            Some(result) => (current, Some(result.clone())),
        };
        if let Some(result) = result {
            self.step(Step::Dispatch).await;
            self.transport.send(vec![Outgoing::new(result)]).await?;
        }
        Ok(current)
    }

    async fn execute(&self, pending: &PendingCall) -> Result<CallResult, AttemptError> {
        let executor = self.calls.ok_or_else(|| {
            AttemptError::Retry("an HTTP call is pending but no CallExecutor is configured".into())
        })?;
        let call = &pending.call;
        let span = debug_span!("exactly.call", call = %call.name, key = %call.idempotency_key);
        async {
            let mut last = String::new();
            for attempt in 0..CALL_TRIES {
                if attempt > 0 {
                    let backoff = CALL_BACKOFF.saturating_mul(1 << attempt);
                    self.env.clock.sleep(self.env.jitter(backoff)).await;
                }
                self.step(Step::Call).await;
                match executor.execute(call).await {
                    Ok(mut result) => {
                        result.entity = pending
                            .result
                            .as_ref()
                            .and_then(|r| r.header(headers::CALL_ENTITY))
                            .unwrap_or_default()
                            .to_owned();
                        return Ok(result);
                    }
                    Err(CallError::Transient(e)) => last = e,
                    Err(e) => return Err(AttemptError::Retry(e.to_string())),
                }
            }
            Err(AttemptError::Retry(format!("call {:?}: {last}", call.name)))
        }
        .instrument(span)
        .await
    }

    /// Writes `answer` into call `index` of the entry for `incoming`, unless
    /// another finisher recorded one first (then that one wins). Returns the
    /// result message to send, or `None` if the entry is already gone.
    async fn record_answer(
        &self,
        key: &str,
        mut current: Loaded,
        incoming: MessageId,
        index: usize,
        answer: CallResult,
    ) -> Result<(Loaded, Option<Envelope>), AttemptError> {
        let body = self
            .codec
            .encode(&answer)
            .map_err(|e| AttemptError::Retry(e.to_string()))?;
        for _ in 0..CONFLICT_LIMIT {
            let Some(pending) = recorded_call(&current, incoming, index) else {
                return Ok((current, None));
            };
            match &pending.result {
                Some(result) if !result.body.is_empty() => {
                    let result = result.clone();
                    return Ok((current, Some(result)));
                }
                Some(_) => {}
                None => return Ok((current, None)),
            }
            let mut record = current.record.clone();
            let Some(slot) = record
                .outbox
                .iter_mut()
                .find(|e| e.incoming == incoming)
                .and_then(|e| e.calls.get_mut(index))
                .and_then(|c| c.result.as_mut())
            else {
                return Ok((current, None));
            };
            slot.body = body.clone();
            let result = slot.clone();
            self.step(Step::Call).await;
            match write_record(self.store, key, &current, &record).await {
                Ok(version) => {
                    let written = Loaded {
                        record,
                        version: Some(version),
                    };
                    return Ok((written, Some(result)));
                }
                Err(e) if e.is_conflict() => {
                    self.back_off().await;
                    current = read_record(self.store, key).await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(AttemptError::Conflict)
    }

    /// Step 5a: removes the token from the record that holds it. A token
    /// already gone means another finisher consumed it: nothing to do.
    pub(crate) async fn consume_token(
        &self,
        token: Option<&DedupToken>,
    ) -> Result<(), AttemptError> {
        self.consume_token_from(token, None).await
    }

    /// Step 5a, starting from `prefetched`, the holder as read in step 2
    /// when there is one: the write conditioned on that version saves a
    /// read, and if the holder changed since, it is read again.
    pub(crate) async fn consume_token_from(
        &self,
        token: Option<&DedupToken>,
        mut prefetched: Option<Loaded>,
    ) -> Result<(), AttemptError> {
        let Some(token) = token else {
            return Ok(());
        };
        let span = debug_span!("exactly.consume_token", record = %token.record, token = %token.id);
        async {
            for _ in 0..CONFLICT_LIMIT {
                self.step(Step::ConsumeToken).await;
                let fresh = prefetched.is_none();
                let holder = match prefetched.take() {
                    Some(holder) => holder,
                    None => read_record(self.store, &token.record).await?,
                };
                if !holder.record.tokens.contains(&token.id) {
                    return Ok(());
                }
                let mut record = holder.record.clone();
                if self.is(Mutant::ForgetWholeEntry) {
                    let lists =
                        |e: &OutboxEntry| e.messages.iter().any(|m| m.envelope.id == token.id);
                    record.outbox.retain(|e| !lists(e));
                }
                record.consume_token(token.id);
                self.step(Step::ConsumeToken).await;
                match write_record(self.store, &token.record, &holder, &record).await {
                    Ok(_) => return Ok(()),
                    // A holder read in step 2 changed since: read it now.
                    Err(e) if e.is_conflict() && !fresh => self.count_conflict(),
                    Err(e) if e.is_conflict() => self.back_off().await,
                    Err(e) => return Err(e.into()),
                }
            }
            Err(AttemptError::Conflict)
        }
        .instrument(span)
        .await
    }

    /// Releases a processed message's claim-check body: removes its
    /// reference from the sender's record, then deletes it. Idempotent.
    pub(crate) async fn release_claim(
        &self,
        token: Option<&DedupToken>,
        claim: Option<&str>,
    ) -> Result<(), AttemptError> {
        let (Some(token), Some(claim)) = (token, claim) else {
            return Ok(());
        };
        for _ in 0..CONFLICT_LIMIT {
            self.step(Step::ConsumeToken).await;
            let holder = read_record(self.store, &token.record).await?;
            if !holder.record.blobs.contains(claim) {
                break;
            }
            let mut record = holder.record.clone();
            record.blobs.remove(claim);
            match write_record(self.store, &token.record, &holder, &record).await {
                Ok(_) => break,
                Err(e) if e.is_conflict() => self.back_off().await,
                Err(e) => return Err(e.into()),
            }
        }
        if let Some(blobs) = self.blobs {
            self.step(Step::RemoveEntry).await;
            blobs
                .delete(claim)
                .await
                .map_err(|e| AttemptError::Retry(e.to_string()))?;
        }
        Ok(())
    }

    /// Cleanup: deletes the blobs this entry released — those of attempts
    /// that lost to this commit, and published blobs the state dropped. Deletes are idempotent; a crash here is redone by the next
    /// finisher, and anything missed is the collector's.
    async fn clean_blobs(&self, key: &str, entry: &OutboxEntry) -> Result<(), AttemptError> {
        let Some(blobs) = self.blobs else {
            return Ok(());
        };
        let transient = |e: crate::blob::BlobError| AttemptError::Retry(e.to_string());
        let mut doomed = Vec::new();
        for attempt in &entry.doomed {
            let prefix = crate::blob::attempt_prefix(key, attempt);
            doomed.extend(
                blobs
                    .list(&prefix)
                    .await
                    .map_err(transient)?
                    .into_iter()
                    .map(|b| b.key),
            );
        }
        for blob in entry.delete_blobs.iter().chain(&doomed) {
            self.step(Step::RemoveEntry).await;
            blobs.delete(blob).await.map_err(transient)?;
        }
        Ok(())
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
                .chain(
                    entry
                        .calls
                        .iter()
                        .filter_map(|c| c.result.as_ref().map(|r| r.id)),
                )
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
                Err(e) if e.is_conflict() => {
                    self.count_conflict();
                    current = read_record(self.store, key).await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Counts a lost bookkeeping race.
    fn count_conflict(&self) {
        if let Some(stats) = self.stats {
            stats.add(Counter::BookkeepingConflicts);
        }
    }

    /// Counts a lost bookkeeping race and waits a jittered moment before
    /// the retry.
    pub(crate) async fn back_off(&self) {
        self.count_conflict();
        self.env
            .clock
            .sleep(self.env.jitter(CONFLICT_BACKOFF))
            .await;
    }
}

/// Call `index` of the pending entry for `incoming`, as last read.
fn recorded_call(current: &Loaded, incoming: MessageId, index: usize) -> Option<&PendingCall> {
    current.record.entry(incoming)?.calls.get(index)
}
