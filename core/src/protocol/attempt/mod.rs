//! Steps 1–3 of one attempt: load, dedup check, handler, commit. Then the
//! committed entry is finished (steps 4–5, in [`super::finish`]).
//!
//! The attempt's flow is here; its parts are beside it: the reads of steps
//! 1 and 2 ([`owed`]), step 3 short of the write ([`prepare`]), the write
//! ([`commit`]), and the at-least-once baseline ([`at_least_once`]).

mod at_least_once;
mod commit;
mod owed;
mod prepare;

pub(crate) use commit::{Along, Queued};
pub(crate) use prepare::{Job, Prepared, consumed_holder, consumed_write};

use tracing::{Instrument, debug_span};

use super::finish::Finisher;
use super::stats::Counter;
use super::{AttemptError, Core, Mutant, Outcome, Probe, Step};
use crate::handler::ErasedHandler;
use crate::message::Envelope;
use crate::record::{EntityRecord, Loaded, OutboxEntry, read_record, record_write, write_record};
use crate::store::{Store, Version};
use prepare::Consume;

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
        probe: Option<&dyn Probe>,
        along: Option<&Along<'_>>,
    ) -> Result<Outcome, AttemptError> {
        // A claim-checked body is needed to name the entity. If it is gone,
        // the message was processed completely: the body is released only
        // after the token is consumed and the entry removed.
        let Some((body, incoming_claim)) = self.incoming_body(envelope, probe).await? else {
            return Ok(Outcome::Duplicate);
        };
        let key = &self.entity_of(handler, envelope, &body)?;
        if self.config.guarantee == crate::endpoint::Guarantee::AtLeastOnce {
            return self
                .at_least_once(envelope, handler, key, &body, along)
                .await;
        }
        let finisher = self.finisher(probe);
        if self.is(Mutant::CheckTokenBeforeLoad)
            && self.owed(envelope, key, None, None, probe).await?.is_none()
        {
            return Ok(Outcome::Duplicate);
        }

        // Step 1: load, and finish whatever an earlier attempt committed.
        finisher.step(Step::Load).await;
        let (mut loaded, mut holder) = self.load(envelope, key, probe).await?;
        self.dispatched.forget_gone(key, &loaded.record);
        if !loaded.record.outbox.is_empty() {
            let own = self.own_entry(key, &loaded, envelope);
            let (finished, wrote) = self.finish_unremembered(&finisher, key, loaded).await?;
            loaded = finished;
            if let Some(outcome) = own {
                return Ok(outcome);
            }
            if wrote {
                // Finishing wrote the record, maybe after retries that read
                // a newer version: the token must be read after that.
                holder = None;
            }
        }

        // Step 2: the dedup check, after the load. Any copy that finishes the
        // message after this load changes the record's version, so our
        // commit below fails and the retry sees the token gone.
        let owed = if self.is(Mutant::CheckTokenBeforeLoad) {
            Some(None)
        } else {
            self.owed(envelope, key, Some(&loaded), holder, probe)
                .await?
        };
        let Some(holder) = owed else {
            if self.is(Mutant::DropWithoutReread) {
                return Ok(Outcome::Duplicate);
            }
            // Token gone: another worker may have committed this message
            // after our load and died before removing its entry. Re-read, and
            // finish that entry if it is there (NoLostMessage, no leftovers).
            finisher.step(Step::Reread).await;
            let again = load_entity(self.store.as_ref(), key).await?;
            if let Some(outcome) = self.own_entry(key, &again, envelope) {
                self.finish_unremembered(&finisher, key, again).await?;
                return Ok(outcome);
            }
            // A finisher that died between removing the entry and releasing
            // the claim-check body left it to us.
            finisher
                .release_claim(envelope.token.as_ref(), incoming_claim.as_deref())
                .await?;
            return Ok(Outcome::Duplicate);
        };

        // Step 3: run the handler and commit state + entry + tokens at once.
        finisher.step(Step::Handle).await;
        let job = Job {
            envelope,
            handler,
            key,
            body: &body,
            claim: incoming_claim,
        };
        let Prepared {
            base,
            record,
            entry,
            pending,
            consume,
            holder,
        } = self.prepare(&job, loaded, holder).await?;
        if self.is(Mutant::DispatchBeforeCommit) {
            finisher.dispatch(&entry).await?;
        }

        let queued = along.and_then(|a| self.queued_with_commit(&entry, pending, a.receipt));
        // A one-write commit queues for its holder's group before its step:
        // while it waits there, another commit may write it with theirs.
        let consuming = match consume {
            Some(Consume::Holder(holder, token)) => {
                let entity = record_write(key, &base, &record);
                let ticket = self.current_paths().then(|| {
                    self.consumes
                        .queue(&token.record, entity.clone(), token.id, queued.clone())
                });
                Some((entity, *holder, token, ticket))
            }
            _ => None,
        };
        finisher.step(Step::Commit).await;
        let committed = match consuming {
            Some((entity, holder, token, ticket)) => {
                self.commit_consuming(entity, &token, holder, queued.as_ref(), ticket)
                    .await
            }
            None => self.commit(key, &base, &record, queued.as_ref()).await,
        };
        let version = match committed {
            Err(AttemptError::Conflict) => {
                self.stats.add(Counter::Conflicts);
                return Err(AttemptError::Conflict);
            }
            other => other?,
        };
        if let (Some(along), Some(_)) = (along, &queued) {
            // Steps 4 and 6 were part of the commit.
            along.acked();
            self.sent_in_commit(key, &entry);
            return Ok(Outcome::Processed);
        }

        // Steps 4–5.
        if pending {
            let committed = Loaded {
                record,
                version: Some(version),
            };
            self.finish_committed(&finisher, key, committed, &entry, holder)
                .await?;
        }
        Ok(Outcome::Processed)
    }

    /// Whether this endpoint leaves `entry`, once done, in the record
    /// instead of removing it with a write of its own: an entry whose
    /// finishing is sending its messages and consuming the incoming token.
    /// The receivers' consumes drop it once nothing is left in it
    /// (`EntityRecord::consume_token`), and the next commit to the record
    /// drops it if it is still there. The protocol's broken variants remove
    /// every entry, as they were written to.
    pub(crate) fn leaves(&self, entry: &OutboxEntry) -> bool {
        entry.sends_and_consumes_only() && self.current_paths()
    }

    /// Whether `entry` of the record at `key` is one this endpoint left,
    /// done: a load skips it, a commit drops it.
    pub(crate) fn remembered(&self, key: &str, entry: &OutboxEntry) -> bool {
        self.leaves(entry) && self.dispatched.contains(key, entry.incoming)
    }

    /// What finding `envelope`'s own entry in the record at `key` makes of
    /// it: `Recovered` once the entry is finished, or `Duplicate` when the
    /// endpoint left it done; `None` when there is no such entry.
    fn own_entry(&self, key: &str, loaded: &Loaded, envelope: &Envelope) -> Option<Outcome> {
        let entry = loaded.record.entry(envelope.id)?;
        Some(if self.remembered(key, entry) {
            Outcome::Duplicate
        } else {
            Outcome::Recovered
        })
    }

    /// Steps 4–5 for the entry this attempt committed. One the endpoint
    /// leaves is sent, its token consumed (starting from `holder`, the
    /// holder as read in step 2), and then remembered: a load, a commit or
    /// a sweeper that remembers it will not do it again. Any other is
    /// finished.
    pub(crate) async fn finish_committed(
        &self,
        finisher: &Finisher<'_>,
        key: &str,
        committed: Loaded,
        entry: &OutboxEntry,
        holder: Option<Loaded>,
    ) -> Result<(), AttemptError> {
        if !self.leaves(entry) {
            finisher.finish_entry(key, committed, entry).await?;
            return Ok(());
        }
        if self.is(Mutant::LeaveUnsent) {
            self.dispatched.remember(key, entry.incoming);
        }
        finisher.dispatch(entry).await?;
        if self.is(Mutant::LeaveUnconsumed) {
            self.dispatched.remember(key, entry.incoming);
        }
        finisher
            .consume_token_from(entry.incoming_token.as_ref(), holder)
            .await?;
        self.dispatched.remember(key, entry.incoming);
        Ok(())
    }

    /// Finishes the record's pending entries, oldest first, but those this
    /// endpoint left, sent (`tla/ExactlyOnce.tla`: a load skips a `Left`
    /// entry). Returns the record as last written, and whether anything
    /// was written.
    async fn finish_unremembered(
        &self,
        finisher: &Finisher<'_>,
        key: &str,
        mut current: Loaded,
    ) -> Result<(Loaded, bool), AttemptError> {
        let mut wrote = false;
        // Until none is left in the record as last written: finishing one
        // may re-read the record and find entries committed meanwhile.
        while let Some(entry) = current
            .record
            .outbox
            .iter()
            .find(|e| !self.remembered(key, e))
            .cloned()
        {
            current = finisher.finish_entry(key, current, &entry).await?;
            wrote = true;
        }
        Ok((current, wrote))
    }
}
