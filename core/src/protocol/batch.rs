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

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tracing::{Instrument, debug, info_span, warn};

use super::attempt::{Job, Prepared, Queued, commit_attempt, consumed_holder, consumed_write};
use super::consume_group::{Watch, Writers};
use super::stats::Counter;
use super::{AttemptError, Core, Mutant, Outcome, Probe, Step, pause};
use crate::blob::CLAIM_HEADER;
use crate::colocated::Colocated;
use crate::endpoint::Guarantee;
use crate::error::StoreError;
use crate::handler::ErasedHandler;
use crate::record::{INTENT_PREFIX, Loaded};
use crate::store::{Store, Version, Versioned, Write};
use crate::transport::{Delivery, Outgoing, Receipt};

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

/// How many `put_all`s members that keep losing the race for their shared
/// token holder get, each on the holder read again, before the
/// one-at-a-time path takes them.
const HOLDER_ROUNDS: u32 = 8;

/// The keys the batch's members claimed: each entity by one member; each
/// token holder by one, or by several where the store shares holders.
#[derive(Default)]
struct Taken {
    entities: HashSet<String>,
    holders: HashSet<String>,
}

/// What the batch reads: every member's entity, in order, then each token
/// holder once (so every holder is read no earlier than the entities of
/// its members), with where each holder is in the read.
struct ReadKeys<'a> {
    all: Vec<&'a str>,
    holder: HashMap<&'a str, usize>,
}

fn read_keys(members: &[Member]) -> ReadKeys<'_> {
    let mut all: Vec<&str> = members.iter().map(|m| m.key.as_str()).collect();
    let mut holder = HashMap::new();
    for h in members.iter().filter_map(|m| m.holder.as_deref()) {
        holder.entry(h).or_insert_with(|| {
            all.push(h);
            all.len() - 1
        });
    }
    ReadKeys { all, holder }
}

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

    /// Whether this endpoint takes deliveries in batches at all: the
    /// protocol's deliberately broken variants are one-at-a-time only,
    /// but for the batch's own.
    fn batches(&self) -> bool {
        matches!(
            self.config.mutant,
            None | Some(
                Mutant::BatchSharedKeys
                    | Mutant::BatchHolderPerMember
                    | Mutant::BatchKeepsHolderAsRead
            )
        )
    }

    /// Splits the deliveries into batch members (no key shared) and the rest.
    fn members(&self, deliveries: Vec<Delivery>) -> (Vec<Member>, Rest) {
        let mut members = Vec::new();
        let mut rest = Vec::new();
        if !self.batches() {
            return (members, deliveries.into_iter().enumerate().collect());
        }
        let mut taken = Taken::default();
        for (index, delivery) in deliveries.into_iter().enumerate() {
            match self.member(&delivery, &mut taken) {
                Some((handler, key, holder)) => members.push(Member {
                    index,
                    delivery,
                    handler,
                    key,
                    holder,
                }),
                _ => rest.push((index, delivery)),
            }
        }
        (members, rest)
    }

    /// The handler, entity key and token holder of a delivery the batch
    /// can take, claiming its keys in `taken`; `None` for the rest.
    fn member(
        &self,
        delivery: &Delivery,
        taken: &mut Taken,
    ) -> Option<(Arc<dyn ErasedHandler>, String, Option<String>)> {
        let envelope = &delivery.envelope;
        if envelope.header(CLAIM_HEADER).is_some() {
            return None;
        }
        let handler = self.classify(envelope).ok()?;
        let key = self
            .entity_of(handler.as_ref(), envelope, &envelope.body)
            .ok()?;
        let holder = envelope
            .token
            .as_ref()
            .filter(|_| self.config.guarantee == Guarantee::ExactlyOnce)
            .map(|t| t.record.clone())
            .filter(|holder| *holder != key);
        // A holder is shared only where one `put_all` writes it once for
        // all its members; elsewhere each member's finisher consumes from
        // the holder as the batch read it, and they would race.
        let shares_holders = self.store.capabilities().atomic_multi_key;
        let free = !taken.entities.contains(&key)
            && !taken.holders.contains(&key)
            && holder.as_ref().is_none_or(|h| {
                !taken.entities.contains(h) && (shares_holders || !taken.holders.contains(h))
            });
        if !free && !self.is(Mutant::BatchSharedKeys) {
            return None;
        }
        taken.entities.insert(key.clone());
        taken.holders.extend(holder.clone());
        Some((handler, key, holder))
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

    /// Step 3's writes of every member: one `put_all` where the store
    /// writes keys atomically, otherwise one write each, side by side. Returns the
    /// committed members and the refused ones.
    async fn commit_all(
        &self,
        mut ready: Vec<Ready>,
        watch: Option<&Watch<'_>>,
    ) -> (Vec<Committed>, Vec<Member>) {
        let atomic = self.store.capabilities().atomic_multi_key;
        let mut committed = Vec::with_capacity(ready.len());
        let mut refused = Vec::new();
        // Where the queue shares the database: each member's sends and ack
        // that can go with its commit (`Core::queued_with_commit`).
        let queued: Vec<Option<Queued>> = ready
            .iter()
            .map(|r| {
                let (p, receipt) = (&r.prepared, &r.member.delivery.receipt);
                atomic
                    .then(|| self.queued_with_commit(&p.entry, p.pending, receipt))
                    .flatten()
            })
            .collect();
        let done_in_commit: Vec<bool> = queued.iter().map(Option::is_some).collect();
        let written: Vec<Result<Version, AttemptError>> = if atomic {
            self.put_members(&mut ready, queued, watch)
                .await
                .into_iter()
                .map(|v| v.ok_or_else(|| AttemptError::Retry("not written in the batch".into())))
                .collect()
        } else {
            // One conditional write each, side by side: no two members
            // write the same key, so no order among them matters.
            let writes = ready.iter().map(|r| {
                let (key, p) = (&r.member.key, &r.prepared);
                commit_attempt(self.store.as_ref(), key, &p.base, &p.record)
            });
            futures::future::join_all(writes).await
        };
        for ((Ready { member, prepared }, written), done_in_commit) in
            ready.into_iter().zip(written).zip(done_in_commit)
        {
            match written {
                Ok(version) => committed.push(Committed {
                    member,
                    prepared,
                    version,
                    done_in_commit,
                }),
                Err(e) => {
                    if !atomic && matches!(e, AttemptError::Conflict) {
                        self.stats.add(Counter::Conflicts);
                    }
                    refused.push(member);
                }
            }
        }
        (committed, refused)
    }

    /// Step 3's writes of every member, in one `put_all` ([`put_groups`]):
    /// each member's entity write with its sends and ack, and each holder
    /// members share written once, without all their tokens. Members taken
    /// out only because someone else wrote their shared holder meanwhile
    /// (the sender committing its next message, or another worker's batch
    /// consuming from it) get another `put_all` on the holder read again,
    /// those whose tokens are still in it, a few times at most — as a
    /// commit one at a time reads its holder again (`commit_consuming`);
    /// the holder is then read later than the entities, as the protocol
    /// allows. With `watch`, the batch holds its holders' writers while it
    /// writes: this endpoint's other commits to them wait instead of
    /// racing it, and a holder one of them wrote since the batch read it
    /// is taken as read ([`Writers::written_since`]), as a commit one at a
    /// time takes the holder its group wrote last. Returns each member's
    /// entity version, `None` for those not written.
    async fn put_members(
        &self,
        ready: &mut [Ready],
        queued: Vec<Option<Queued>>,
        watch: Option<&Watch<'_>>,
    ) -> Vec<Option<Version>> {
        let merge = self.merges_holders();
        let groups: Vec<Group> = ready
            .iter()
            .zip(queued)
            .map(|(r, q)| {
                let (p, key) = (&r.prepared, &r.member.key);
                let mut writes = vec![p.entity_write(key)];
                if !merge {
                    writes.extend(consumed_write([p]));
                }
                Group {
                    writes,
                    queued: q.unwrap_or_default(),
                    shares: p.holder_key().filter(|_| merge).map(str::to_owned),
                }
            })
            .collect();
        let mut lost: Vec<String> = Vec::new();
        let mut written: Vec<Option<Vec<Version>>> = vec![None; groups.len()];
        let mut live: Vec<usize> = (0..groups.len()).collect();
        let mut writers = match watch {
            Some(watch) => Some(watch.lock().await),
            None => None,
        };
        if let Some(writers) = &writers {
            // A token gone from a holder written since: another copy
            // consumed it; the one-at-a-time path decides.
            live.retain(|&i| rebase_on_written(&mut ready[i].prepared, writers));
        }
        for _ in 0..HOLDER_ROUNDS {
            let mut lost_now = Vec::new();
            let put = self
                .put_some(ready, &groups, live.clone(), &mut lost_now)
                .await;
            if let Some(writers) = writers.as_mut() {
                let as_read = self.is(Mutant::BatchKeepsHolderAsRead);
                keep_written_holders(ready, &put, writers, as_read);
            }
            let got = put.groups;
            let again: Vec<usize> = live
                .into_iter()
                .filter(|&i| {
                    got[i].is_none()
                        && !lost_now.contains(&ready[i].member.key)
                        && groups[i]
                            .shares
                            .as_ref()
                            .is_some_and(|h| lost_now.contains(h))
                })
                .collect();
            self.count_shared(ready, &got);
            for (i, versions) in got.into_iter().enumerate().filter(|(_, v)| v.is_some()) {
                written[i] = versions;
            }
            lost.extend(lost_now);
            live = self.read_holders_again(ready, again).await;
            if live.is_empty() {
                break;
            }
        }
        // Members that lost a race and go back to run their handler again.
        for (i, group) in groups
            .iter()
            .enumerate()
            .filter(|(i, _)| written[*i].is_none())
        {
            let raced = group.shares.iter().chain([&ready[i].member.key]);
            if raced.into_iter().any(|k| lost.contains(k)) {
                self.stats.add(Counter::Conflicts);
            }
        }
        written
            .into_iter()
            .map(|v| v.and_then(|v| v.into_iter().next()))
            .collect()
    }

    /// One [`put_groups`] of the groups `live`, the shared holders built
    /// from the members' prepared commits; the keys of lost races are
    /// added to `lost`.
    async fn put_some(
        &self,
        ready: &[Ready],
        groups: &[Group],
        live: Vec<usize>,
        lost: &mut Vec<String>,
    ) -> Put {
        let merge = self.merges_holders();
        let holders = |live: &[usize]| match merge {
            true => holder_writes(live.iter().map(|&i| &ready[i].prepared)),
            false => Vec::new(),
        };
        put_groups(
            self.store.as_ref(),
            self.colocated.as_deref(),
            groups,
            live,
            holders,
            |key| lost.push(key.to_owned()),
        )
        .await
    }

    /// The holders of the members `again` read again, each member's commit
    /// rebased on its holder as now stored; returns the members whose
    /// tokens are still there (the others: the one-at-a-time path
    /// decides).
    async fn read_holders_again(&self, ready: &mut [Ready], again: Vec<usize>) -> Vec<usize> {
        let mut keys: Vec<String> = again
            .iter()
            .filter_map(|&i| ready[i].prepared.holder_key().map(str::to_owned))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        if keys.is_empty() {
            return Vec::new();
        }
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let Ok(read) = self.store.get_all(&refs).await else {
            return Vec::new();
        };
        let fresh: HashMap<&str, Loaded> = refs
            .iter()
            .zip(read)
            .filter_map(|(key, stored)| Some((*key, Loaded::parse(key, stored).ok()?)))
            .collect();
        again
            .into_iter()
            .filter(|&i| {
                let prepared = &mut ready[i].prepared;
                let holder = prepared.holder_key().and_then(|h| fresh.get(h));
                holder.is_some_and(|h| prepared.rebase_holder(h))
            })
            .collect()
    }

    /// Whether members that share a token holder write it once for all of
    /// them (the protocol), or each their own copy (a broken variant).
    fn merges_holders(&self) -> bool {
        !self.is(Mutant::BatchSharedKeys) && !self.is(Mutant::BatchHolderPerMember)
    }

    /// Whether a batch holds its token holders' writers while it writes
    /// them, as grouped consumes do: where it writes each holder once, in
    /// one `put_all`, on the current paths.
    fn watches_holders(&self) -> bool {
        self.store.capabilities().atomic_multi_key && self.merges_holders() && self.current_paths()
    }

    /// Counts the members one `put_all` wrote with another member's token
    /// consumed from the same holder in the same write (`written`: that
    /// `put_all`'s groups).
    fn count_shared(&self, ready: &[Ready], written: &[Option<Vec<Version>>]) {
        if !self.merges_holders() {
            return;
        }
        let mut members: HashMap<&str, u64> = HashMap::new();
        for (r, _) in ready.iter().zip(written).filter(|(_, w)| w.is_some()) {
            if let Some(holder) = r.prepared.holder_key() {
                *members.entry(holder).or_default() += 1;
            }
        }
        for _ in 0..members.values().filter(|&&n| n > 1).sum::<u64>() {
            self.stats.add(Counter::SharedConsumes);
        }
    }

    /// Steps 4–5 of every committed member: the messages of all entries
    /// the endpoint leaves for the receivers' consumes (and, at least once,
    /// all captured messages) in one send, then those entries remembered
    /// as sent; any other entry through the finisher. Returns the finished
    /// members and the ones left to the one-at-a-time path (which finds
    /// their entries and finishes them: `Recovered`).
    async fn finish_all(
        &self,
        committed: Vec<Committed>,
        probe: Option<&dyn Probe>,
    ) -> (Vec<Member>, Vec<Member>) {
        let finisher = self.finisher(probe);
        let at_least_once = self.config.guarantee == Guarantee::AtLeastOnce;
        let (mut finished, mut unfinished) = (Vec::new(), Vec::new());
        let mut sending = Vec::new();
        for c in committed {
            let entry = &c.prepared.entry;
            if at_least_once || self.leaves(entry) {
                sending.push(c);
            } else if !c.prepared.pending {
                finished.push(c.member);
            } else {
                match finisher
                    .finish_entry(&c.member.key, c.current(), entry)
                    .await
                {
                    Ok(_) => finished.push(c.member),
                    Err(_) => unfinished.push(c.member),
                }
            }
        }
        let messages: Vec<Outgoing> = sending
            .iter()
            .flat_map(|c| c.prepared.entry.messages.iter().cloned())
            .collect();
        if !messages.is_empty() {
            pause(probe, Step::Dispatch).await;
            if let Err(e) = self.transport.send(messages).await {
                debug!(error = %e, "batch dispatch failed; one at a time");
                unfinished.extend(sending.into_iter().map(|c| c.member));
                return (finished, unfinished);
            }
        }
        if at_least_once {
            finished.extend(sending.into_iter().map(|c| c.member));
            return (finished, unfinished);
        }
        // Tokens the commits left to consume (stores without `put_all`),
        // each from its holder as the batch read it; then remembered.
        let consumes = sending.into_iter().map(|mut c| {
            let finisher = &finisher;
            async move {
                let entry = &c.prepared.entry;
                let holder = c.prepared.holder.take();
                let consumed = finisher
                    .consume_token_from(entry.incoming_token.as_ref(), holder)
                    .await;
                (c, consumed)
            }
        });
        for (c, consumed) in futures::future::join_all(consumes).await {
            if consumed.is_err() {
                unfinished.push(c.member);
                continue;
            }
            let incoming = c.prepared.entry.incoming;
            self.dispatched.remember(&c.member.key, incoming);
            finished.push(c.member);
        }
        (finished, unfinished)
    }
}

/// Takes the holder this endpoint wrote since the batch read it, if any,
/// as `prepared`'s; `false` when its token is gone from it.
fn rebase_on_written(prepared: &mut Prepared, writers: &Writers<'_>) -> bool {
    let written = prepared.holder_key().and_then(|h| writers.written_since(h));
    match written {
        Some(holder) => prepared.rebase_holder(holder),
        None => true,
    }
}

/// Keeps each watched holder `put` wrote as the members written consumed
/// from it, for the next commits to it (`as_read`: as they read it, a
/// broken variant). Holders not watched (intent records) are skipped
/// before any record is built.
fn keep_written_holders(ready: &[Ready], put: &Put, writers: &mut Writers<'_>, as_read: bool) {
    for (key, version) in &put.shared {
        if !writers.holds(key) {
            continue;
        }
        let members = ready
            .iter()
            .zip(&put.groups)
            .filter(|(r, g)| g.is_some() && r.prepared.holder_key() == Some(key.as_str()))
            .map(|(r, _)| &r.prepared);
        if let Some((_, read, consumed)) = consumed_holder(members) {
            let record = if as_read {
                read.record.clone()
            } else {
                consumed
            };
            let version = Some(version.clone());
            writers.wrote(key, Loaded { record, version });
        }
    }
}

/// The write of each token holder `commits` consume from (another record
/// than their entity's): one per holder, without all their tokens there,
/// in the order the holders first appear.
fn holder_writes<'a>(commits: impl Iterator<Item = &'a Prepared>) -> Vec<Write> {
    let mut holders: Vec<Vec<&Prepared>> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for p in commits {
        let Some(holder) = p.holder_key() else {
            continue;
        };
        match index.get(holder) {
            Some(&i) => holders[i].push(p),
            None => {
                index.insert(holder, holders.len());
                holders.push(vec![p]);
            }
        }
    }
    holders.into_iter().filter_map(consumed_write).collect()
}

/// One group of [`put_groups`]: writes, and the sends and acks that go
/// with them where the queue shares the store's database.
pub(crate) struct Group {
    pub writes: Vec<Write>,
    pub queued: Queued,
    /// The key of a write this group shares with others: built for all
    /// the groups still in the `put_all` at once (a batch's token holder),
    /// so a conflict on it takes every one of them out.
    pub shares: Option<String>,
}

impl From<Vec<Write>> for Group {
    fn from(writes: Vec<Write>) -> Self {
        Self {
            writes,
            queued: Queued::default(),
            shares: None,
        }
    }
}

/// One `put_all` of the writes of the groups `live` (indices into
/// `groups`), and of the writes `shared` builds for those still in it, on
/// a store that writes
/// keys atomically — with the groups' sends and acks in the same
/// transaction through `unit` where given (`Colocated::put_all_with`). A
/// write refused for a conflict takes out only the groups it belongs to
/// (its own, or all that share it): the others, whose reads still stand,
/// are written again without them — and the shared writes built again
/// without them — so one lost race costs one message its place in the
/// batch, not the whole batch; `lost` is called with the key for each
/// group taken out. Returns what was written.
pub(crate) async fn put_groups(
    store: &dyn Store,
    unit: Option<&dyn Colocated>,
    groups: &[Group],
    mut live: Vec<usize>,
    shared: impl Fn(&[usize]) -> Vec<Write>,
    mut lost: impl FnMut(&str),
) -> Put {
    let mut put = Put {
        groups: vec![None; groups.len()],
        shared: Vec::new(),
    };
    while !live.is_empty() {
        let shared = shared(&live);
        let shared_keys: Vec<String> = shared.iter().map(|w| w.key.clone()).collect();
        let writes = live
            .iter()
            .flat_map(|g| groups[*g].writes.clone())
            .chain(shared)
            .collect();
        let send: Vec<Outgoing> = live
            .iter()
            .flat_map(|g| groups[*g].queued.send.clone())
            .collect();
        let ack: Vec<Receipt> = live
            .iter()
            .flat_map(|g| groups[*g].queued.ack.clone())
            .collect();
        let result = match unit {
            Some(unit) if !send.is_empty() || !ack.is_empty() => {
                unit.put_all_with(writes, send, ack).await
            }
            _ => store.put_all(writes).await,
        };
        match result {
            Ok(versions) => {
                let mut versions = versions.into_iter();
                for g in live {
                    let n = groups[g].writes.len();
                    put.groups[g] = Some(versions.by_ref().take(n).collect());
                }
                put.shared = shared_keys.into_iter().zip(versions).collect();
                break;
            }
            Err(StoreError::Conflict { key }) => {
                let loses = |g: &usize| {
                    let group = &groups[*g];
                    group.shares.as_ref() == Some(&key) || group.writes.iter().any(|w| w.key == key)
                };
                let losers = live.iter().filter(|g| loses(g)).count();
                if losers == 0 {
                    break;
                }
                debug!(%key, losers, "a batch write lost its race; the rest again");
                (0..losers).for_each(|_| lost(&key));
                live.retain(|g| !loses(g));
            }
            Err(e) => {
                debug!(error = %e, "batch write failed");
                break;
            }
        }
    }
    put
}

/// What one [`put_groups`] wrote.
pub(crate) struct Put {
    /// Each group's versions (of its own writes), `None` for a group not
    /// written.
    pub groups: Vec<Option<Vec<Version>>>,
    /// The shared writes made, by key, with their versions.
    pub shared: Vec<(String, Version)>,
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::memory::MemoryStore;
    use crate::store::Precondition;

    fn create(key: &str, value: &str) -> Write {
        Write {
            key: key.into(),
            value: Bytes::from(value.to_owned()),
            precondition: Precondition::Absent,
        }
    }

    /// Groups that write `e0`, `e1`, `e2` and share `h`, whose value lists
    /// the groups written with it.
    fn sharing() -> Vec<Group> {
        (0..3)
            .map(|g| Group {
                shares: Some("h".into()),
                ..Group::from(vec![create(&format!("e{g}"), "new")])
            })
            .collect()
    }

    /// A store that writes keys atomically, `key` already written.
    async fn store_with(key: &str) -> MemoryStore {
        let store = MemoryStore::new().atomic_multi_key(true);
        store
            .put(key, "taken".into(), Precondition::Absent)
            .await
            .unwrap();
        store
    }

    fn listing(live: &[usize]) -> Vec<Write> {
        let names: Vec<String> = live.iter().map(usize::to_string).collect();
        vec![create("h", &names.join(","))]
    }

    #[tokio::test]
    async fn a_lost_race_takes_out_its_group_and_the_shared_write_is_built_without_it() {
        let store = store_with("e1").await;
        let mut lost = 0;
        let written = put_groups(&store, None, &sharing(), (0..3).collect(), listing, |_| {
            lost += 1
        })
        .await
        .groups;
        assert_eq!(lost, 1);
        assert_eq!(
            written.iter().map(Option::is_some).collect::<Vec<_>>(),
            [true, false, true]
        );
        let h = store.get("h").await.unwrap().expect("h written");
        assert_eq!(
            h.value,
            Bytes::from("0,2"),
            "the shared write without group 1"
        );
        let e1 = store.get("e1").await.unwrap().expect("e1");
        assert_eq!(e1.value, Bytes::from("taken"));
    }

    #[tokio::test]
    async fn a_lost_race_on_the_shared_write_takes_out_every_group_sharing_it() {
        let store = store_with("h").await;
        let mut groups = sharing();
        groups.push(Group::from(vec![create("alone", "new")]));
        let mut lost = 0;
        let written = put_groups(
            &store,
            None,
            &groups,
            (0..4).collect(),
            |live| match live.contains(&0) {
                true => listing(live),
                false => Vec::new(),
            },
            |_| lost += 1,
        )
        .await
        .groups;
        assert_eq!(lost, 3);
        assert_eq!(
            written.iter().map(Option::is_some).collect::<Vec<_>>(),
            [false, false, false, true]
        );
        assert!(
            store.get("e0").await.unwrap().is_none(),
            "nothing of theirs written"
        );
    }
}
