//! Step 3 of a batch: every member's commit at once — one `put_all` where
//! the store writes keys atomically (each shared token holder written once,
//! the writers of watched holders held meanwhile), otherwise one write each.

use std::collections::HashMap;

use super::{Committed, Member, Ready};
use crate::protocol::attempt::{Prepared, Queued, commit_attempt, consumed_holder, consumed_write};
use crate::protocol::consume_group::{Watch, Writers};
use crate::protocol::put_groups::{Group, Put, put_groups};
use crate::protocol::stats::Counter;
use crate::protocol::{AttemptError, Core, Mutant};
use crate::record::Loaded;
use crate::store::{Version, Write};

/// How many `put_all`s members that keep losing the race for their shared
/// token holder get, each on the holder read again, before the
/// one-at-a-time path takes them.
const HOLDER_ROUNDS: u32 = 8;

impl Core {
    /// Step 3's writes of every member: one `put_all` where the store
    /// writes keys atomically, otherwise one write each, side by side. Returns the
    /// committed members and the refused ones.
    pub(super) async fn commit_all(
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
    pub(super) fn watches_holders(&self) -> bool {
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
