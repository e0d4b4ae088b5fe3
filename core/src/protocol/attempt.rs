//! Steps 1–3 of one attempt: load, dedup check, handler, commit. Then the
//! committed entry is finished (steps 4–5, in [`super::finish`]).

use std::sync::atomic::{AtomicBool, Ordering};

use tracing::{Instrument, debug_span};

use super::consume_group::{Answer, Ticket};
use super::finish::Finisher;
use super::stats::Counter;
use super::{AttemptError, Core, Mutant, Outcome, Probe, Step};
use bytes::Bytes;

use crate::blob::session::BlobSession;
use crate::blob::{BlobError, CLAIM_HEADER, fetch_claim, offload_large};
use crate::call::{CallResult, HttpCall, PendingCall};
use crate::codec::CodecExt;
use crate::context::{Context, Incoming};
use crate::error::HandlerError;
use crate::error::StoreError;
use crate::handler::ErasedHandler;
use crate::message::Message;
use crate::message::{DedupToken, Envelope, MessageId};
use crate::record::{EntityRecord, Loaded, OutboxEntry, read_record, record_write, write_record};
use crate::store::{Store, Version, Write};
use crate::transport::{Outgoing, Receipt};

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

    /// Step 3 short of the write: runs the handler on the record as loaded
    /// and builds the commit — the new state, the `OutboxEntry` with the
    /// captured effects, the tokens of the messages it will send, and how
    /// the incoming token is consumed. `holder` is the token's holder as
    /// read in step 2.
    pub(crate) async fn prepare(
        &self,
        job: &Job<'_>,
        loaded: Loaded,
        mut holder: Option<Loaded>,
    ) -> Result<Prepared, AttemptError> {
        let Job {
            envelope,
            handler,
            key,
            body,
            ..
        } = *job;
        let incoming_claim = job.claim.clone();
        let now = self.env.now_millis();
        let session = self.blobs.as_ref().map(|blobs| {
            BlobSession::new(
                self.store.clone(),
                blobs.clone(),
                key,
                self.env.new_id().to_string(),
                loaded.clone(),
                now,
                self.config.max_blob_bytes,
            )
        });
        let mut ctx = Context::new(
            &self.name,
            key,
            Incoming::of(envelope),
            self.env.clone(),
            self.codec.clone(),
            self.routes.clone(),
        )
        .with_blobs(session, self.config.max_payload_bytes);
        let state = handler
            .run(loaded.record.state.as_deref(), body, &mut ctx)
            .instrument(debug_span!("exactly.handle", entity = key))
            .await
            .map_err(handler_failure)?;
        let (mut messages, mut calls, mut session) = ctx.into_effects();
        if let Some(release) = self.release_after(envelope) {
            calls.push(release);
        }
        if let Some(session) = session.as_mut() {
            offload_large(session, &mut messages, self.config.claim_threshold)
                .await
                .map_err(handler_failure)?;
        }
        self.check_sizes(&messages)?;
        if !calls.is_empty() && self.calls.is_none() {
            return Err(AttemptError::Poison(
                "the handler captured an HTTP call but the endpoint has no CallExecutor \
                 (EndpointBuilder::calls)"
                    .into(),
            ));
        }

        // The commit is conditioned on the record as this attempt last saw
        // it: after its own blob registration, if it made one.
        let base = session.as_ref().map_or(loaded, |s| s.loaded.clone());
        let mut record = base.record.clone();
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
        let (doomed, delete_blobs) = publish_blobs(&mut record, session.as_ref());
        let mut entry = OutboxEntry {
            incoming: envelope.id,
            incoming_token: envelope.token.clone(),
            committed_at: now,
            messages,
            calls,
            incoming_claim,
            doomed,
            delete_blobs,
        };
        let consume = self.consume_in_commit(key, &entry, &mut holder, &mut record);
        if consume.is_some() {
            // Consumed by the commit: nothing left for a finisher to consume.
            entry.incoming_token = None;
        }
        // Entries this endpoint left, done: their removal rides on this
        // write (`tla/ExactlyOnce.tla`: Commit drops Left entries).
        record.outbox.retain(|e| !self.remembered(key, e));
        let pending = !entry.is_empty();
        if pending {
            record.outbox.push(entry.clone());
        }
        Ok(Prepared {
            base,
            record,
            entry,
            pending,
            consume,
            holder,
        })
    }

    /// Whether this commit also consumes the incoming message's token, so
    /// that no later write has to: when the token's holder is the entity's
    /// own record (then it is removed from `record` here), or when the
    /// store writes two keys atomically (then the holder as read in step 2
    /// is written with the commit). Not for a claim-checked message, whose
    /// body is released only after its entry is removed.
    fn consume_in_commit(
        &self,
        key: &str,
        entry: &OutboxEntry,
        holder: &mut Option<Loaded>,
        record: &mut EntityRecord,
    ) -> Option<Consume> {
        let token = entry.incoming_token.as_ref()?;
        if !self.current_paths() || entry.incoming_claim.is_some() {
            return None;
        }
        if token.record == key {
            return record.consume_token(token.id).then_some(Consume::Own);
        }
        if !self.store.capabilities().atomic_multi_key {
            return None;
        }
        let holder = holder.take()?;
        Some(Consume::Holder(Box::new(holder), token.clone()))
    }

    /// Step 3's write and step 5a's in one atomic `put_all`: the entity's
    /// record, and the holder's without the token. Queued (`ticket`), the
    /// commit is written in a group with the endpoint's other commits
    /// consuming from the same holder ([`super::consume_group`]), unless the
    /// group leaves it to write alone. Alone, a holder changed since step 2
    /// is read again and the pair retried while the token is still there;
    /// once it is gone, another copy committed this message, so this
    /// attempt has lost (`Conflict`).
    async fn commit_consuming(
        &self,
        entity: Write,
        token: &DedupToken,
        mut holder: Loaded,
        queued: Option<&Queued>,
        ticket: Option<Ticket<'_>>,
    ) -> Result<Version, AttemptError> {
        if let Some(ticket) = ticket {
            match self.commit_queued(ticket, holder).await {
                Answer::Written(version) => return Ok(version),
                Answer::Lost => return Err(AttemptError::Conflict),
                Answer::Failed(e) => return Err(e),
                // After a failed group write, as the holder is now.
                Answer::Alone => holder = read_record(self.store.as_ref(), &token.record).await?,
            }
        }
        let span = debug_span!("exactly.commit", entity = entity.key, consumes = %token.record);
        for _ in 0..super::finish::CONFLICT_LIMIT {
            if !holder.record.tokens.contains(&token.id) {
                break;
            }
            let consumed =
                record_write(&token.record, &holder, &holder.record.consumed(&[token.id]));
            let writes = vec![entity.clone(), consumed];
            match self.put_all(writes, queued).instrument(span.clone()).await {
                Ok(versions) => {
                    return versions
                        .into_iter()
                        .next()
                        .ok_or_else(|| AttemptError::Retry("put_all returned no versions".into()));
                }
                Err(StoreError::Conflict { key: lost }) if lost == token.record => {
                    self.stats.add(Counter::BookkeepingConflicts);
                    holder = read_record(self.store.as_ref(), &token.record).await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(AttemptError::Conflict)
    }

    /// What the commit of `entry` takes along where the queue shares the
    /// store's database: the ack of `receipt`, when the commit leaves
    /// nothing to do (`pending` false; at least once, with the captured
    /// messages), or the entry's messages and the ack, when all it leaves
    /// is sending them (the incoming token consumed by the commit itself).
    /// `None` otherwise, without such a database, and always for the
    /// protocol's broken variants, which run their steps one by one.
    pub(crate) fn queued_with_commit(
        &self,
        entry: &OutboxEntry,
        pending: bool,
        receipt: &Receipt,
    ) -> Option<Queued> {
        if self.colocated.is_none() || self.config.mutant.is_some() {
            return None;
        }
        if pending && !entry.sends_only() {
            return None;
        }
        Some(Queued {
            send: entry.messages.clone(),
            ack: vec![receipt.clone()],
        })
    }

    /// After a commit that sent `entry`'s messages in its own transaction:
    /// the entry, if it has any, is left for the consumes and remembered,
    /// as `finish_committed` leaves an entry it sent.
    pub(crate) fn sent_in_commit(&self, key: &str, entry: &OutboxEntry) {
        let exactly_once = self.config.guarantee == crate::endpoint::Guarantee::ExactlyOnce;
        if exactly_once && !entry.messages.is_empty() {
            self.dispatched.remember(key, entry.incoming);
        }
    }

    /// Step 3's write of one record, with the sends and the ack of
    /// `queued` in the same transaction when given.
    async fn commit(
        &self,
        key: &str,
        base: &Loaded,
        record: &EntityRecord,
        queued: Option<&Queued>,
    ) -> Result<Version, AttemptError> {
        let Some(queued) = queued else {
            return commit_attempt(self.store.as_ref(), key, base, record).await;
        };
        let versions = self
            .put_all(vec![record_write(key, base, record)], Some(queued))
            .instrument(debug_span!("exactly.commit", entity = key, acks = true))
            .await?;
        versions
            .into_iter()
            .next()
            .ok_or_else(|| AttemptError::Retry("the commit returned no version".into()))
    }

    /// `Store::put_all`, or `Colocated::put_all_with` with `queued`.
    pub(super) async fn put_all(
        &self,
        writes: Vec<Write>,
        queued: Option<&Queued>,
    ) -> Result<Vec<Version>, StoreError> {
        match (queued, &self.colocated) {
            (Some(q), Some(unit)) => {
                unit.put_all_with(writes, q.send.clone(), q.ack.clone())
                    .await
            }
            _ => self.store.put_all(writes).await,
        }
    }

    /// The at-least-once baseline: load, handle, write the state under the
    /// version read, send. No token, no outbox entry, no dedup.
    async fn at_least_once(
        &self,
        envelope: &Envelope,
        handler: &dyn ErasedHandler,
        key: &str,
        body: &[u8],
        along: Option<&Along<'_>>,
    ) -> Result<Outcome, AttemptError> {
        let loaded = load_entity(self.store.as_ref(), key).await?;
        let job = Job {
            envelope,
            handler,
            key,
            body,
            claim: None,
        };
        let prepared = self.prepare_at_least_once(&job, loaded).await?;
        // Where the queue shares the database, the sends and the ack go
        // with the write, as they do with exactly-once.
        let queued = along
            .and_then(|a| self.queued_with_commit(&prepared.entry, prepared.pending, a.receipt));
        let committed = self
            .commit(key, &prepared.base, &prepared.record, queued.as_ref())
            .await;
        if let Err(e) = committed {
            if matches!(e, AttemptError::Conflict) {
                self.stats.add(Counter::Conflicts);
            }
            return Err(e);
        }
        if let (Some(along), Some(_)) = (along, &queued) {
            along.acked();
            return Ok(Outcome::Processed);
        }
        let messages = prepared.entry.messages;
        if !messages.is_empty() {
            self.transport.send(messages).await?;
        }
        Ok(Outcome::Processed)
    }

    /// The at-least-once baseline's step 3 short of the write: the new
    /// state, and the captured messages (in `entry`, without tokens, to be
    /// sent after the write; `record` keeps no entry).
    pub(crate) async fn prepare_at_least_once(
        &self,
        job: &Job<'_>,
        loaded: Loaded,
    ) -> Result<Prepared, AttemptError> {
        let mut ctx = Context::new(
            &self.name,
            job.key,
            Incoming::of(job.envelope),
            self.env.clone(),
            self.codec.clone(),
            self.routes.clone(),
        );
        let state = job
            .handler
            .run(loaded.record.state.as_deref(), job.body, &mut ctx)
            .await
            .map_err(handler_failure)?;
        let (mut messages, _, _) = ctx.into_effects();
        for m in &mut messages {
            m.envelope.token = None;
        }
        let mut record = loaded.record.clone();
        record.state = Some(state);
        Ok(Prepared {
            base: loaded,
            record,
            entry: OutboxEntry {
                incoming: job.envelope.id,
                messages,
                ..OutboxEntry::default()
            },
            pending: false,
            consume: None,
            holder: None,
        })
    }

    /// Step 1's read, and step 2's with it where it can: the entity's
    /// record and, when another record holds the message's token, that
    /// record too, in one `Store::get_all` (which reads the holder no
    /// earlier than the entity, so the check still comes after the load;
    /// one statement on SQL stores). Mutants read one by one, as they were
    /// written to.
    async fn load(
        &self,
        envelope: &Envelope,
        key: &str,
        probe: Option<&dyn Probe>,
    ) -> Result<(Loaded, Option<Loaded>), AttemptError> {
        let holder = envelope
            .token
            .as_ref()
            .map(|t| t.record.as_str())
            .filter(|holder| *holder != key && self.current_paths());
        let Some(holder) = holder else {
            return Ok((load_entity(self.store.as_ref(), key).await?, None));
        };
        let span = debug_span!("exactly.load", entity = key, token_holder = holder);
        let mut read = self
            .store
            .get_all(&[key, holder])
            .instrument(span)
            .await?
            .into_iter();
        let entity = Loaded::parse(key, read.next().flatten())?;
        let holder = Loaded::parse(holder, read.next().flatten())?;
        // Where the separate token read would have paused.
        super::pause(probe, Step::CheckToken).await;
        Ok((entity, Some(holder)))
    }

    /// Step 2: is the message still owed processing? With a token: is the
    /// token still in the sender's record. Without one: is the id absent
    /// from the entity's identity inbox (fallback mode). `None` if not
    /// owed; otherwise the token's holder record as read, when it is
    /// another record than the entity's. `prefetched` is the holder as
    /// read together with the entity by [`Core::load`].
    pub(super) async fn owed(
        &self,
        envelope: &Envelope,
        key: &str,
        loaded: Option<&Loaded>,
        prefetched: Option<Loaded>,
        probe: Option<&dyn Probe>,
    ) -> Result<Option<Option<Loaded>>, AttemptError> {
        let owed = |yes: bool, holder: Option<Loaded>| yes.then_some(holder);
        if let (Some(token), Some(holder)) = (&envelope.token, prefetched) {
            return Ok(owed(holder.record.tokens.contains(&token.id), Some(holder)));
        }
        match (&envelope.token, loaded) {
            // Our own record is the token's holder: the load already read it.
            (Some(token), Some(loaded)) if token.record == key => {
                Ok(owed(loaded.record.tokens.contains(&token.id), None))
            }
            (Some(token), _) => {
                super::pause(probe, Step::CheckToken).await;
                let holder = read_record(self.store.as_ref(), &token.record)
                    .instrument(debug_span!("exactly.check_token", record = %token.record))
                    .await?;
                Ok(owed(holder.record.tokens.contains(&token.id), Some(holder)))
            }
            (None, Some(loaded)) if self.config.inbox_retention.is_some() => {
                Ok(owed(!loaded.record.inbox.contains_key(&envelope.id), None))
            }
            (None, None) => Ok(Some(None)),
            (None, Some(_)) => Err(AttemptError::Poison(
                "the message carries no DedupToken and this endpoint has no identity inbox \
                 (EndpointBuilder::inbox_retention) for tokenless producers"
                    .into(),
            )),
        }
    }

    /// The body to hand the handler: the envelope's, or its claim-checked
    /// blob, read and verified. `None` when the blob is gone and the token
    /// consumed: a duplicate of a message processed completely. A blob gone
    /// while the message is still owed is lost for real: error queue.
    async fn incoming_body(
        &self,
        envelope: &Envelope,
        probe: Option<&dyn Probe>,
    ) -> Result<Option<(Bytes, Option<String>)>, AttemptError> {
        let Some(reference) = envelope.header(CLAIM_HEADER) else {
            return Ok(Some((envelope.body.clone(), None)));
        };
        let Some(blobs) = &self.blobs else {
            return Err(AttemptError::Poison(
                "the message is claim-checked but this endpoint has no blob store \
                 (EndpointBuilder::blobs)"
                    .into(),
            ));
        };
        match fetch_claim(blobs.as_ref(), reference).await {
            Ok((blob, body)) => Ok(Some((body, Some(blob.key)))),
            Err(BlobError::NotFound { key: blob }) => {
                if self.owed(envelope, "", None, None, probe).await?.is_some() {
                    Err(AttemptError::Poison(format!(
                        "claim-checked body {blob:?} is missing"
                    )))
                } else {
                    Ok(None)
                }
            }
            Err(e) if e.is_transient() => Err(AttemptError::Retry(e.to_string())),
            Err(e) => Err(AttemptError::Poison(format!(
                "claim-checked body unusable: {e}"
            ))),
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

/// One message as step 3 takes it.
pub(crate) struct Job<'a> {
    pub envelope: &'a Envelope,
    pub handler: &'a dyn ErasedHandler,
    /// The entity's record key.
    pub key: &'a str,
    /// The body the handler decodes (the claim-checked one, if any).
    pub body: &'a [u8],
    /// The claim-check blob the body came from.
    pub claim: Option<String>,
}

/// Step 3's write, ready to make: `record` (state, entry, new tokens)
/// conditioned on `base`.
pub(crate) struct Prepared {
    /// The record the write is conditioned on.
    pub base: Loaded,
    /// The record to write.
    pub record: EntityRecord,
    /// The committed entry (in `record.outbox` if `pending`).
    pub entry: OutboxEntry,
    /// Whether the entry has work left after the commit (steps 4–5).
    pub pending: bool,
    /// How the commit consumes the incoming token, if it does.
    consume: Option<Consume>,
    /// The token's holder as read in step 2, when the commit leaves the
    /// token for the finisher to consume.
    pub holder: Option<Loaded>,
}

impl Prepared {
    /// The conditional write of the entity's record alone.
    pub(crate) fn entity_write(&self, key: &str) -> Write {
        record_write(key, &self.base, &self.record)
    }

    /// Takes `fresh` as the token holder this commit consumes from — the
    /// holder read again after someone else wrote it — if the token is
    /// still there; `false` if it is gone (another copy consumed it: the
    /// one-at-a-time path decides) or the commit consumes no holder's.
    pub(crate) fn rebase_holder(&mut self, fresh: &Loaded) -> bool {
        match &mut self.consume {
            Some(Consume::Holder(holder, token)) if fresh.record.tokens.contains(&token.id) => {
                **holder = fresh.clone();
                true
            }
            _ => false,
        }
    }

    /// The token holder this commit consumes its token from, when it is
    /// another record: its key.
    pub(crate) fn holder_key(&self) -> Option<&str> {
        match &self.consume {
            Some(Consume::Holder(_, token)) => Some(&token.record),
            _ => None,
        }
    }
}

/// The write of a token holder as the first of `commits` read it, without
/// the token of each of them that consumes one there: what their commits
/// one right after another would leave in the holder. `None` when none of
/// them consumes from another record. Every one of `commits` must have read
/// the same holder, at the same version (a batch's one read).
pub(crate) fn consumed_write<'a>(commits: impl IntoIterator<Item = &'a Prepared>) -> Option<Write> {
    let (key, read, consumed) = consumed_holder(commits)?;
    Some(record_write(key, read, &consumed))
}

/// The token holder `commits` consume from, as [`consumed_write`] writes
/// it: its key, the holder as read, and the record without their tokens.
pub(crate) fn consumed_holder<'a>(
    commits: impl IntoIterator<Item = &'a Prepared>,
) -> Option<(&'a str, &'a Loaded, EntityRecord)> {
    let mut consumes = commits.into_iter().filter_map(|p| match &p.consume {
        Some(Consume::Holder(holder, token)) => Some((holder.as_ref(), token)),
        _ => None,
    });
    let (holder, token) = consumes.next()?;
    let others = consumes.map(|(other, token)| {
        debug_assert_eq!(other.version, holder.version, "one read of the holder");
        token.id
    });
    let ids: Vec<MessageId> = std::iter::once(token.id).chain(others).collect();
    Some((&token.record, holder, holder.record.consumed(&ids)))
}

/// How a commit consumes the incoming token.
enum Consume {
    /// The entity's own record held it: removed from the committed record.
    Own,
    /// Another record held it (as read in step 2): written with the commit.
    Holder(Box<Loaded>, DedupToken),
}

/// A handler that was superseded restarts the attempt; any other failure
/// counts toward the retry limit.
fn handler_failure(e: HandlerError) -> AttemptError {
    match e {
        HandlerError::Superseded => AttemptError::Conflict,
        other => AttemptError::Retry(other.to_string()),
    }
}

/// At commit: the winner's blobs become published; every other registered
/// attempt lost to this commit (its base version is now stale), so its
/// blobs are doomed and deleted in cleanup, as are published blobs the
/// handler released. Returns (doomed attempts, blobs to delete).
fn publish_blobs(
    record: &mut EntityRecord,
    session: Option<&BlobSession>,
) -> (Vec<String>, Vec<String>) {
    let mut doomed: Vec<String> = std::mem::take(&mut record.blob_attempts)
        .into_keys()
        .collect();
    let mut delete = Vec::new();
    if let Some(s) = session {
        doomed.retain(|a| *a != s.attempt);
        record.blobs.extend(s.written.iter().map(|b| b.key.clone()));
        for key in &s.deleted {
            if record.blobs.remove(key) {
                delete.push(key.clone());
            }
        }
    }
    (doomed, delete)
}

/// The sends and acks a colocated commit takes along.
#[derive(Clone, Default)]
pub(crate) struct Queued {
    pub send: Vec<Outgoing>,
    pub ack: Vec<Receipt>,
}

/// The delivery an attempt handles, for a colocated commit to ack along
/// (`EndpointBuilder::colocated`): remembers whether one did.
pub(crate) struct Along<'a> {
    receipt: &'a Receipt,
    acked: AtomicBool,
}

impl<'a> Along<'a> {
    pub(crate) fn new(receipt: &'a Receipt) -> Self {
        Self {
            receipt,
            acked: AtomicBool::new(false),
        }
    }

    fn acked(&self) {
        self.acked.store(true, Ordering::Relaxed);
    }

    /// Whether a commit acked the delivery.
    pub(crate) fn was_acked(&self) -> bool {
        self.acked.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(id: &str) -> DedupToken {
        DedupToken {
            record: "holder".into(),
            id: MessageId::derived("test", id),
        }
    }

    /// A holder as read, with tokens `ids`, at version 1.
    fn holder(ids: &[&str]) -> Loaded {
        let mut record = EntityRecord::default();
        record.tokens.extend(ids.iter().map(|id| token(id).id));
        Loaded {
            record,
            version: Some(Version::from(1)),
        }
    }

    /// A commit that consumes `id` from `holder`.
    fn consuming(holder: &Loaded, id: &str) -> Prepared {
        Prepared {
            base: Loaded::default(),
            record: EntityRecord::default(),
            entry: OutboxEntry::default(),
            pending: false,
            consume: Some(Consume::Holder(Box::new(holder.clone()), token(id))),
            holder: None,
        }
    }

    #[test]
    fn a_shared_holder_is_written_once_without_every_token_it_gave() {
        let read = holder(&["a", "b", "c"]);
        let commits = [consuming(&read, "a"), consuming(&read, "b")];
        let write = consumed_write(&commits).expect("a holder write");
        assert_eq!(write.key, "holder");
        assert_eq!(write.precondition, read.precondition());
        let written = EntityRecord::decode("holder", &write.value).expect("a record");
        assert_eq!(written.tokens.len(), 1, "only c's token stays");
        assert!(written.tokens.contains(&token("c").id));
    }

    #[test]
    fn a_commit_rebases_on_a_holder_read_again_only_while_its_token_is_there() {
        let mut commit = consuming(&holder(&["a", "b"]), "a");
        let mut fresh = holder(&["a"]);
        fresh.version = Some(Version::from(2));
        assert!(commit.rebase_holder(&fresh));
        let write = consumed_write([&commit]).expect("a holder write");
        assert_eq!(write.precondition, fresh.precondition(), "on the new read");
        let gone = holder(&["b"]);
        assert!(
            !commit.rebase_holder(&gone),
            "its token was consumed meanwhile"
        );
    }
}
