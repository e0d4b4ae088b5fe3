//! Grouped consumes and the writers batches hold, on the in-memory store.

use std::sync::Arc;

use bytes::Bytes;

use super::*;
use crate::endpoint::Endpoint;
use crate::env::ThreadRandom;
use crate::fault::{FaultyStore, StoreFaults};
use crate::memory::{MemoryStore, MemoryTransport};
use crate::record::EntityRecord;
use crate::store::{Precondition, Store};

const HOLDER: &str = "s/holder";

fn id(name: &str) -> MessageId {
    MessageId::derived("test", name)
}

/// A store whose holder record holds the tokens `names`; the holder as
/// read.
async fn store_with_holder(names: &[&str]) -> (Arc<MemoryStore>, Loaded) {
    let store = Arc::new(MemoryStore::new().atomic_multi_key(true));
    let mut record = EntityRecord::default();
    record.tokens.extend(names.iter().map(|n| id(n)));
    store
        .put(HOLDER, record.encode(), Precondition::Absent)
        .await
        .expect("holder written");
    let read = read_record(store.as_ref(), HOLDER).await.expect("read");
    (store, read)
}

fn endpoint(store: Arc<dyn Store>) -> Endpoint {
    Endpoint::builder("e", store, Arc::new(MemoryTransport::new()))
        .build()
        .expect("valid endpoint")
}

/// The commit of entity `e/<name>` (created) consuming token `name`.
fn queue<'a>(core: &'a Core, name: &str) -> Ticket<'a> {
    let entity = Write {
        key: format!("e/{name}"),
        value: Bytes::from_static(b"state"),
        precondition: Precondition::Absent,
    };
    core.consumes.queue(HOLDER, entity, id(name), None)
}

async fn tokens_left(store: &MemoryStore) -> Vec<MessageId> {
    let holder = read_record(store, HOLDER).await.expect("read");
    holder.record.tokens.into_iter().collect()
}

fn lost(answer: Answer) -> bool {
    matches!(answer, Answer::Lost)
}

fn written(answer: Answer) -> Version {
    match answer {
        Answer::Written(version) => version,
        Answer::Lost => panic!("lost"),
        Answer::Failed(e) => panic!("failed: {e:?}"),
        Answer::Alone => panic!("left alone"),
    }
}

#[tokio::test]
async fn queued_commits_are_written_in_one_group_and_the_holder_forgotten() {
    let (store, read) = store_with_holder(&["a", "b", "c", "other"]).await;
    let endpoint = endpoint(store.clone());
    let core = endpoint.core();
    let tickets: Vec<Ticket> = ["a", "b", "c"].iter().map(|n| queue(core, n)).collect();
    let mut versions = Vec::new();
    for ticket in tickets {
        versions.push(written(core.commit_queued(ticket, read.clone()).await));
    }
    assert_eq!(core.stats.snapshot().shared_consumes, 3, "one group of 3");
    for (name, version) in ["a", "b", "c"].iter().zip(versions) {
        let entity = store.get(&format!("e/{name}")).await.unwrap();
        assert_eq!(entity.map(|v| v.version), Some(version));
    }
    assert_eq!(tokens_left(&store).await, [id("other")]);
    assert!(lock(&core.consumes.holders).is_empty(), "holder forgotten");
}

#[tokio::test]
async fn a_token_gone_from_the_holder_read_again_loses_and_the_rest_are_written() {
    let (store, stale) = store_with_holder(&["a", "b", "c"]).await;
    // Another copy of b consumed its token after this read.
    let mut now = stale.record.clone();
    now.tokens.remove(&id("b"));
    store
        .put(HOLDER, now.encode(), stale.precondition())
        .await
        .expect("b consumed");
    let endpoint = endpoint(store.clone());
    let core = endpoint.core();
    let (a, b, c) = (queue(core, "a"), queue(core, "b"), queue(core, "c"));
    written(core.commit_queued(a, stale.clone()).await);
    assert!(lost(core.commit_queued(b, stale.clone()).await));
    written(core.commit_queued(c, stale.clone()).await);
    assert!(store.get("e/b").await.unwrap().is_none(), "b not written");
    assert!(tokens_left(&store).await.is_empty());
}

#[tokio::test]
async fn a_commit_whose_entity_changed_loses_and_the_rest_are_written() {
    let (store, read) = store_with_holder(&["a", "b"]).await;
    store
        .put("e/b", Bytes::from_static(b"earlier"), Precondition::Absent)
        .await
        .expect("e/b written");
    let endpoint = endpoint(store.clone());
    let core = endpoint.core();
    let (a, b) = (queue(core, "a"), queue(core, "b"));
    written(core.commit_queued(a, read.clone()).await);
    assert!(lost(core.commit_queued(b, read.clone()).await));
    assert_eq!(tokens_left(&store).await, [id("b")], "b's token stays");
}

#[tokio::test]
async fn commits_of_one_entity_or_token_go_in_different_groups() {
    let (store, read) = store_with_holder(&["a"]).await;
    let endpoint = endpoint(store.clone());
    let core = endpoint.core();
    // Two copies of one message: the first is written, the second finds
    // the token consumed.
    let (first, second) = (queue(core, "a"), queue(core, "a"));
    written(core.commit_queued(first, read.clone()).await);
    assert!(lost(core.commit_queued(second, read.clone()).await));
    assert_eq!(core.stats.snapshot().shared_consumes, 0);
}

#[tokio::test]
async fn a_failed_group_leaves_its_commits_to_write_alone() {
    let (store, read) = store_with_holder(&["a", "b"]).await;
    let down = Arc::new(FaultyStore::new(
        store,
        StoreFaults {
            unavailable_ppm: 1_000_000,
            ..StoreFaults::default()
        },
        Arc::new(ThreadRandom),
    ));
    let endpoint = endpoint(down);
    let core = endpoint.core();
    let (a, b) = (queue(core, "a"), queue(core, "b"));
    assert!(matches!(
        core.commit_queued(a, read.clone()).await,
        Answer::Alone
    ));
    assert!(matches!(
        core.commit_queued(b, read.clone()).await,
        Answer::Alone
    ));
    let alone = queue(core, "a");
    assert!(matches!(
        core.commit_queued(alone, read.clone()).await,
        Answer::Failed(AttemptError::Retry(_))
    ));
}

#[tokio::test]
async fn a_commit_whose_attempt_stopped_waiting_is_not_written() {
    let (store, read) = store_with_holder(&["a", "b"]).await;
    let endpoint = endpoint(store.clone());
    let core = endpoint.core();
    let (a, b) = (queue(core, "a"), queue(core, "b"));
    drop(a);
    written(core.commit_queued(b, read.clone()).await);
    assert!(store.get("e/a").await.unwrap().is_none(), "a not written");
    assert_eq!(tokens_left(&store).await, [id("a")]);
}

#[tokio::test]
async fn a_batch_watching_a_holder_takes_what_was_written_since_and_holds_commits_off() {
    let (store, read) = store_with_holder(&["a", "b", "c"]).await;
    let endpoint = endpoint(store.clone());
    let core = endpoint.core();
    let before = core.consumes.watch([HOLDER]);
    written(core.commit_queued(queue(core, "a"), read.clone()).await);
    let after = core.consumes.watch([HOLDER, HOLDER]);
    let stored = read_record(store.as_ref(), HOLDER).await.expect("read");
    {
        let writers = before.lock().await;
        let since = writers.written_since(HOLDER).expect("written since");
        assert_eq!(since.version, stored.version);
        assert!(!since.record.tokens.contains(&id("a")));
    }
    let mut writers = after.lock().await;
    assert!(writers.written_since(HOLDER).is_none(), "not since");
    // Holding the writer, the batch consumes c; b's commit waits.
    let mut commit = std::pin::pin!(core.commit_queued(queue(core, "b"), read.clone()));
    let wait = tokio::time::timeout(std::time::Duration::from_millis(20), &mut commit);
    assert!(wait.await.is_err(), "b waits for the batch");
    let consumed = stored.record.consumed(&[id("c")]);
    let version = store
        .put(HOLDER, consumed.encode(), stored.precondition())
        .await
        .expect("the batch's write");
    writers.wrote(
        HOLDER,
        Loaded {
            record: consumed,
            version: Some(version),
        },
    );
    drop(writers);
    // b starts from the batch's write, not from its own stale read.
    written(commit.await);
    assert_eq!(core.stats.snapshot().bookkeeping_conflicts, 0);
    assert!(tokens_left(&store).await.is_empty());
    drop((before, after));
    assert!(lock(&core.consumes.holders).is_empty(), "holder forgotten");
}
