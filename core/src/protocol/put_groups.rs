//! One `put_all` of several groups of writes, where a lost race takes out
//! only the groups it belongs to and the rest are written again: what a
//! batch's commits and a `Sender`'s intents write with.

use tracing::debug;

use super::attempt::Queued;
use crate::colocated::Colocated;
use crate::error::StoreError;
use crate::store::{Store, Version, Write};
use crate::transport::{Outgoing, Receipt};

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
