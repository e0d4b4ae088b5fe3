//! Steps 1–3 of one attempt: load, dedup check, handler, commit. Then the
//! committed entry is finished (steps 4–5, in [`super::finish`]).

use tracing::{Instrument, debug_span};

use super::{AttemptError, Core, Mutant, Outcome, Probe, Stats, Step};
use crate::call::{CallResult, HttpCall, PendingCall};
use crate::codec::CodecExt;
use crate::context::{Context, Incoming};
use crate::handler::ErasedHandler;
use crate::message::Envelope;
use crate::message::Message;
use crate::record::{EntityRecord, Loaded, OutboxEntry, read_record, write_record};
use crate::store::{Store, Version};

/// Step 1: reads the entity record and its version.
pub(crate) async fn load_entity(store: &dyn Store, key: &str) -> Result<Loaded, AttemptError> {
    Ok(read_record(store, key)
        .instrument(debug_span!("exactly.load", entity = key))
        .await?)
}

/// Step 3's write: state, `OutboxEntry` and new tokens in one conditional
/// write, conditioned on the version read in step 1. A concurrent copy of the
/// same message that also passed step 2 fails here (AtMostOneStateChange).
pub(crate) async fn commit_attempt(
    store: &dyn Store,
    key: &str,
    loaded: &Loaded,
    record: &EntityRecord,
) -> Result<Version, AttemptError> {
    Ok(write_record(store, key, loaded, record)
        .instrument(debug_span!("exactly.commit", entity = key))
        .await?)
}

impl Core {
    /// One attempt at `envelope` for the entity stored at `key`.
    pub(crate) async fn attempt(
        &self,
        envelope: &Envelope,
        handler: &dyn ErasedHandler,
        key: &str,
        probe: Option<&dyn Probe>,
    ) -> Result<Outcome, AttemptError> {
        let finisher = self.finisher(probe);
        if self.is(Mutant::CheckTokenBeforeLoad)
            && !self.is_owed(envelope, key, None, probe).await?
        {
            return Ok(Outcome::Duplicate);
        }

        // Step 1: load, and finish whatever an earlier attempt committed.
        finisher.step(Step::Load).await;
        let mut loaded = load_entity(self.store.as_ref(), key).await?;
        if !loaded.record.outbox.is_empty() {
            let own = loaded.record.entry(envelope.id).is_some();
            loaded = finisher.finish_pending(key, loaded).await?;
            if own {
                return Ok(Outcome::Recovered);
            }
        }

        // Step 2: the dedup check, after the load. Any copy that finishes the
        // message after this load changes the record's version, so our
        // commit below fails and the retry sees the token gone.
        if !self.is(Mutant::CheckTokenBeforeLoad)
            && !self.is_owed(envelope, key, Some(&loaded), probe).await?
        {
            if self.is(Mutant::DropWithoutReread) {
                return Ok(Outcome::Duplicate);
            }
            // Token gone: another worker may have committed this message
            // after our load and died before removing its entry. Re-read, and
            // finish that entry if it is there (NoLostMessage, no leftovers).
            finisher.step(Step::Reread).await;
            let again = load_entity(self.store.as_ref(), key).await?;
            if again.record.entry(envelope.id).is_some() {
                finisher.finish_pending(key, again).await?;
                return Ok(Outcome::Recovered);
            }
            return Ok(Outcome::Duplicate);
        }

        // Step 3: run the handler and commit state + entry + tokens at once.
        finisher.step(Step::Handle).await;
        let mut ctx = Context::new(
            &self.name,
            key,
            Incoming::of(envelope),
            self.env.clone(),
            self.codec.clone(),
            self.routes.clone(),
        );
        let state = handler
            .run(loaded.record.state.as_deref(), &envelope.body, &mut ctx)
            .instrument(debug_span!("exactly.handle", entity = key))
            .await
            .map_err(|e| AttemptError::Retry(e.to_string()))?;
        let (messages, mut calls) = ctx.into_effects();
        if let Some(release) = self.release_after(envelope) {
            calls.push(release);
        }
        self.check_sizes(&messages)?;
        if !calls.is_empty() && self.calls.is_none() {
            return Err(AttemptError::Poison(
                "the handler captured an HTTP call but the endpoint has no CallExecutor \
                 (EndpointBuilder::calls)"
                    .into(),
            ));
        }

        let now = self.env.now_millis();
        let mut record = loaded.record.clone();
        record.state = Some(state);
        if envelope.token.is_none()
            && let Some(retention) = self.config.inbox_retention
        {
            let horizon = now.saturating_sub(retention.as_millis() as u64);
            record.inbox.retain(|_, at| *at >= horizon);
            record.inbox.insert(envelope.id, now);
        }
        if !self.is(Mutant::RecreateTokenAtDispatch) {
            record.tokens.extend(messages.iter().map(|m| m.envelope.id));
            record
                .tokens
                .extend(calls.iter().filter_map(|c| c.result.as_ref().map(|r| r.id)));
        }
        let entry = OutboxEntry {
            incoming: envelope.id,
            incoming_token: envelope.token.clone(),
            committed_at: now,
            messages,
            calls,
        };
        record.outbox.push(entry.clone());
        if self.is(Mutant::DispatchBeforeCommit) {
            finisher.dispatch(&entry).await?;
        }

        finisher.step(Step::Commit).await;
        let version = match commit_attempt(self.store.as_ref(), key, &loaded, &record).await {
            Err(AttemptError::Conflict) => {
                Stats::bump(&self.stats.conflicts);
                return Err(AttemptError::Conflict);
            }
            other => other?,
        };

        // Steps 4–5.
        let committed = Loaded {
            record,
            version: Some(version),
        };
        finisher.finish_entry(key, committed, &entry).await?;
        Ok(Outcome::Processed)
    }

    /// Step 2: is the message still owed processing? With a token: is the
    /// token still in the sender's record. Without one: is the id absent
    /// from the entity's identity inbox (fallback mode).
    async fn is_owed(
        &self,
        envelope: &Envelope,
        key: &str,
        loaded: Option<&Loaded>,
        probe: Option<&dyn Probe>,
    ) -> Result<bool, AttemptError> {
        match (&envelope.token, loaded) {
            // Our own record is the token's holder: the load already read it.
            (Some(token), Some(loaded)) if token.record == key => {
                Ok(loaded.record.tokens.contains(&token.id))
            }
            (Some(token), _) => {
                super::pause(probe, Step::CheckToken).await;
                let holder = read_record(self.store.as_ref(), &token.record)
                    .instrument(debug_span!("exactly.check_token", record = %token.record))
                    .await?;
                Ok(holder.record.tokens.contains(&token.id))
            }
            (None, Some(loaded)) if self.config.inbox_retention.is_some() => {
                Ok(!loaded.record.inbox.contains_key(&envelope.id))
            }
            (None, None) => Ok(true),
            (None, Some(_)) => Err(AttemptError::Poison(
                "the message carries no DedupToken and this endpoint has no identity inbox \
                 (EndpointBuilder::inbox_retention) for tokenless producers"
                    .into(),
            )),
        }
    }

    /// When the message handled is the result of a call to another exactly
    /// service, the request there is released (`DELETE`) once this handling
    /// commits — not before, so a crash in between cannot lose the response.
    fn release_after(&self, envelope: &Envelope) -> Option<PendingCall> {
        if envelope.message_type != CallResult::TYPE {
            return None;
        }
        let result: CallResult = self.codec.decode(&envelope.body).ok()?;
        let mut call = HttpCall::new("exactly.release", "DELETE", result.release?);
        call.idempotency_key = result.idempotency_key;
        Some(PendingCall { call, result: None })
    }

    /// Refuses, before the commit, a captured message the transport could
    /// never carry: once committed, it would be stuck in the outbox.
    fn check_sizes(&self, messages: &[crate::transport::Outgoing]) -> Result<(), AttemptError> {
        let Some(limit) = self.transport.capabilities().max_message_bytes else {
            return Ok(());
        };
        match messages.iter().find(|m| m.envelope.body.len() > limit) {
            Some(big) => Err(AttemptError::Poison(format!(
                "the handler captured a {} message of {} bytes; the transport's limit is {limit} \
                 bytes (send large bodies through the claim check)",
                big.envelope.message_type,
                big.envelope.body.len()
            ))),
            None => Ok(()),
        }
    }
}
