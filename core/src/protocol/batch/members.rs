//! Which deliveries a batch takes: no two members share an entity, nor a
//! token holder but where one `put_all` writes it once for all of them;
//! and what the batch reads for them.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::{Member, Rest};
use crate::blob::CLAIM_HEADER;
use crate::endpoint::Guarantee;
use crate::handler::ErasedHandler;
use crate::protocol::{Core, Mutant};
use crate::transport::Delivery;

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
pub(super) struct ReadKeys<'a> {
    pub(super) all: Vec<&'a str>,
    pub(super) holder: HashMap<&'a str, usize>,
}

pub(super) fn read_keys(members: &[Member]) -> ReadKeys<'_> {
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
    pub(super) fn members(&self, deliveries: Vec<Delivery>) -> (Vec<Member>, Rest) {
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
}
