//! Step 3's write: the entity's record alone, or with the token holder
//! it consumes from in one atomic `put_all` (queued with the endpoint's
//! other commits consuming there), and with the sends and the ack where
//! the queue shares the store's database.

use std::sync::atomic::{AtomicBool, Ordering};

use tracing::{Instrument, debug_span};

use super::commit_attempt;
use crate::error::StoreError;
use crate::message::DedupToken;
use crate::protocol::consume_group::{Answer, Ticket};
use crate::protocol::stats::Counter;
use crate::protocol::{AttemptError, Core};
use crate::record::{EntityRecord, Loaded, OutboxEntry, read_record, record_write};
use crate::store::{Version, Write};
use crate::transport::{Outgoing, Receipt};

impl Core {
    /// Step 3's write and step 5a's in one atomic `put_all`: the entity's
    /// record, and the holder's without the token. Queued (`ticket`), the
    /// commit is written in a group with the endpoint's other commits
    /// consuming from the same holder ([`crate::protocol::consume_group`]), unless the
    /// group leaves it to write alone. Alone, a holder changed since step 2
    /// is read again and the pair retried while the token is still there;
    /// once it is gone, another copy committed this message, so this
    /// attempt has lost (`Conflict`).
    pub(super) async fn commit_consuming(
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
        for _ in 0..crate::protocol::finish::CONFLICT_LIMIT {
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
    pub(super) async fn commit(
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
    pub(crate) async fn put_all(
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
    pub(super) receipt: &'a Receipt,
    acked: AtomicBool,
}

impl<'a> Along<'a> {
    pub(crate) fn new(receipt: &'a Receipt) -> Self {
        Self {
            receipt,
            acked: AtomicBool::new(false),
        }
    }

    pub(super) fn acked(&self) {
        self.acked.store(true, Ordering::Relaxed);
    }

    /// Whether a commit acked the delivery.
    pub(crate) fn was_acked(&self) -> bool {
        self.acked.load(Ordering::Relaxed)
    }
}
