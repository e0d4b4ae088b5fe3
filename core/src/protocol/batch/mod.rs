//! Batches: the deliveries one receive returned, taken through steps 1–3
//! together — one `get_all` of every entity record and token holder, the
//! handlers one after another, one `put_all` of every commit — then the
//! committed entries' messages sent in one batch (the entries left for the
//! receivers' consumes, as one at a time), and one `ack_all`.
//!
//! A batch is a schedule of the one-message protocol, not a new protocol.
//! Its read is every message's step-1 load and step-2 token read, made at
//! one instant (each holder no earlier than its entity). Its `put_all` is
//! every message's step-3 commit, each under its own precondition, made at
//! one instant. No entity is read or written for two messages of one
//! batch, so no entity's precondition depends on another message's write.
//! A token holder may be shared — several messages from one sender — on a
//! store that writes keys atomically: it is read once and written once,
//! without every one of their tokens, under the version the batch read.
//! That is what their commits one right after another would leave in it,
//! each reading the holder the one before had just written (a message's
//! check looks only at its own token, which the others' consumes leave
//! alone). Either way the batch commits as its messages' commits would,
//! one right after the other with nothing in between — an interleaving
//! `tla/ExactlyOnce.tla` already checks. A refused `put_all` refuses every
//! write, as if each of those attempts had lost its race; the batch then
//! writes the others again without the messages whose write was refused.
//! Whatever the batch does not take — a second message for an entity
//! already in it, a claim-checked body, an entity with a pending entry, a
//! token found gone, a failed handler, a refused commit — goes through
//! [`Core::handle_delivery`] afterwards, which decides it as it would any
//! delivery.
//!
//! Here: the batch's flow and each member's steps 1–3 on the batch's read.
//! Beside it: which deliveries the batch takes ([`members`]), its writes
//! ([`commit`]) and steps 4–5 of its commits ([`finish`]).

mod commit;
mod finish;
mod members;

use std::sync::Arc;

use tracing::{Instrument, debug, info_span, warn};

use super::attempt::{Job, Prepared};
use super::stats::Counter;
use super::{AttemptError, Core, Outcome, Probe, Step, pause};
use crate::endpoint::Guarantee;
use crate::handler::ErasedHandler;
use crate::record::{INTENT_PREFIX, Loaded};
use crate::store::{Version, Versioned};
use crate::transport::{Delivery, Receipt};
use members::read_keys;

/// A delivery the batch takes, with what it reads and writes.
struct Member {
    /// Its place in the batch as received.
    index: usize,
    delivery: Delivery,
    handler: Arc<dyn ErasedHandler>,
    /// The entity's record key.
    key: String,
    /// The token holder's key, when it is another record (exactly-once).
    holder: Option<String>,
}

/// A member whose commit is prepared.
struct Ready {
    member: Member,
    prepared: Prepared,
}

/// A member whose commit is in: its record as written.
struct Committed {
    member: Member,
    prepared: Prepared,
    version: Version,
    /// Sent and acked in the commit's own transaction (`Colocated`).
    done_in_commit: bool,
}

impl Committed {
    /// The member's record as its commit wrote it.
    fn current(&self) -> Loaded {
        Loaded {
            record: self.prepared.record.clone(),
            version: Some(self.version.clone()),
        }
    }
}

/// Deliveries for the one-at-a-time path, with their places in the batch.
type Rest = Vec<(usize, Delivery)>;

impl Core {
    /// Handles the deliveries of one receive; returns their outcomes in the
    /// order given. Each delivery ends as [`Core::handle_delivery`] would
    /// end it; nothing is acked before its work is done.
    pub(crate) async fn handle_batch(
        &self,
        deliveries: Vec<Delivery>,
        probe: Option<&dyn Probe>,
    ) -> Vec<Outcome> {
        let (members, mut rest) = self.members(deliveries);
        let mut outcomes = Vec::with_capacity(members.len() + rest.len());
        if members.len() > 1 {
            let span = info_span!("exactly.batch", endpoint = %self.name, size = members.len());
            let (done, back) = self.batch(members, probe).instrument(span).await;
            outcomes.extend(done);
            rest.extend(back);
        } else {
            rest.extend(members.into_iter().map(|m| (m.index, m.delivery)));
        }
        rest.sort_unstable_by_key(|(index, _)| *index);
        for (index, delivery) in rest {
            outcomes.push((index, self.handle_delivery(delivery, probe).await));
        }
        outcomes.sort_unstable_by_key(|(index, _)| *index);
        outcomes.into_iter().map(|(_, outcome)| outcome).collect()
    }

    /// Steps 1–6 for members that share no key. Returns the outcomes of
    /// those it completed and the deliveries it leaves to the rest.
    async fn batch(
        &self,
        members: Vec<Member>,
        probe: Option<&dyn Probe>,
    ) -> (Vec<(usize, Outcome)>, Rest) {
        let mut back: Rest = Vec::new();
        let give_back = |members: Vec<Member>, back: &mut Rest| {
            back.extend(members.into_iter().map(|m| (m.index, m.delivery)));
        };
        // Steps 1–2: one read of every entity and token holder.
        pause(probe, Step::Load).await;
        let watch = self.watches_holders().then(|| {
            // A `Sender`'s intent record holds one message's token: only
            // copies of that message consume there, and they race for its
            // entity anyway. Records that send several messages are
            // watched.
            let holders = members.iter().filter_map(|m| m.holder.as_deref());
            self.consumes
                .watch(holders.filter(|h| !h.starts_with(INTENT_PREFIX)))
        });
        let keys = read_keys(&members);
        let read = match self.store.get_all(&keys.all).await {
            Ok(read) => read,
            Err(e) => {
                debug!(error = %e, "batch read failed; one at a time");
                give_back(members, &mut back);
                return (Vec::new(), back);
            }
        };
        pause(probe, Step::CheckToken).await;
        let holders: Vec<Option<Option<Versioned>>> = members
            .iter()
            .map(|m| {
                m.holder
                    .as_ref()
                    .map(|h| read[keys.holder[h.as_str()]].clone())
            })
            .collect();
        let mut ready = Vec::with_capacity(members.len());
        for ((member, entity), holder) in members.into_iter().zip(read).zip(holders) {
            pause(probe, Step::Handle).await;
            match self.take(&member, entity, holder).await {
                Ok(Some(prepared)) => ready.push(Ready { member, prepared }),
                Ok(None) => back.push((member.index, member.delivery)),
                Err(e) => {
                    debug!(error = ?e, "left to one at a time");
                    back.push((member.index, member.delivery));
                }
            }
        }
        // Step 3: every commit at once.
        pause(probe, Step::Commit).await;
        let (committed, refused) = self.commit_all(ready, watch.as_ref()).await;
        give_back(refused, &mut back);
        // Steps 4 and 6 done in the commit's transaction.
        let (in_commit, committed): (Vec<_>, Vec<_>) =
            committed.into_iter().partition(|c| c.done_in_commit);
        let done_already: Vec<Member> = in_commit
            .into_iter()
            .map(|c| {
                self.sent_in_commit(&c.member.key, &c.prepared.entry);
                c.member
            })
            .collect();
        // Steps 4–5, then 6.
        let (finished, unfinished) = self.finish_all(committed, probe).await;
        give_back(unfinished, &mut back);
        let receipts: Vec<Receipt> = finished
            .iter()
            .map(|m| m.delivery.receipt.clone())
            .collect();
        if !receipts.is_empty() {
            pause(probe, Step::Ack).await;
            if let Err(e) = self.transport.ack_all(&receipts).await {
                // The work is done; redeliveries will be dropped as duplicates.
                warn!(error = %e, "batch ack failed");
            }
        }
        let done = finished
            .into_iter()
            .chain(done_already)
            .map(|m| {
                self.count(&Outcome::Processed);
                self.stats.add(Counter::Batched);
                (m.index, Outcome::Processed)
            })
            .collect();
        (done, back)
    }

    /// Steps 1–3 short of the write for one member, on the records as the
    /// batch read them: `None` when the one-at-a-time path must decide (a
    /// pending entry to finish first, a token gone).
    async fn take(
        &self,
        member: &Member,
        entity: Option<Versioned>,
        holder: Option<Option<Versioned>>,
    ) -> Result<Option<Prepared>, AttemptError> {
        let envelope = &member.delivery.envelope;
        let loaded = Loaded::parse(&member.key, entity)?;
        let job = Job {
            envelope,
            handler: member.handler.as_ref(),
            key: &member.key,
            body: &envelope.body,
            claim: None,
        };
        if self.config.guarantee == Guarantee::AtLeastOnce {
            return self.prepare_at_least_once(&job, loaded).await.map(Some);
        }
        // Pending work, or this message's own entry: the one-at-a-time path
        // decides. Entries this endpoint left, done, are dropped by the
        // commit.
        let key = &member.key;
        self.dispatched.forget_gone(key, &loaded.record);
        if loaded.record.entry(envelope.id).is_some()
            || loaded
                .record
                .outbox
                .iter()
                .any(|e| !self.remembered(key, e))
        {
            return Ok(None);
        }
        let holder = match (&member.holder, holder) {
            (Some(key), Some(stored)) => Some(Loaded::parse(key, stored)?),
            _ => None,
        };
        let Some(holder) = self
            .owed(envelope, &member.key, Some(&loaded), holder, None)
            .await?
        else {
            return Ok(None);
        };
        self.prepare(&job, loaded, holder).await.map(Some)
    }
}
