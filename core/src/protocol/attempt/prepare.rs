//! Step 3 short of the write: the handler run on the record as loaded, and
//! the commit it makes — the new state, the `OutboxEntry` with the captured
//! effects, the tokens of the messages it will send, and how the incoming
//! token is consumed.

use tracing::{Instrument, debug_span};

use crate::blob::offload_large;
use crate::blob::session::BlobSession;
use crate::call::{CallResult, HttpCall, PendingCall};
use crate::codec::CodecExt;
use crate::context::{Context, Incoming};
use crate::error::HandlerError;
use crate::handler::ErasedHandler;
use crate::message::Message;
use crate::message::{DedupToken, Envelope, MessageId};
use crate::protocol::{AttemptError, Core, Mutant};
use crate::record::{EntityRecord, Loaded, OutboxEntry, record_write};
use crate::store::Write;

impl Core {
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
    pub(super) consume: Option<Consume>,
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
pub(super) enum Consume {
    /// The entity's own record held it: removed from the committed record.
    Own,
    /// Another record held it (as read in step 2): written with the commit.
    Holder(Box<Loaded>, DedupToken),
}

/// A handler that was superseded restarts the attempt; any other failure
/// counts toward the retry limit.
pub(super) fn handler_failure(e: HandlerError) -> AttemptError {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Version;

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
