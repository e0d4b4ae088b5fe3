//! `put_all`: every write or none, on stores that offer it; a clear
//! refusal, with nothing written, on stores that do not.

use std::sync::Arc;

use bytes::Bytes;
use exactly::{Precondition, Store, StoreError, Write};

use super::{assert_conflict, create, read};

fn write(key: &str, value: &str, precondition: Precondition) -> Write {
    Write {
        key: key.to_owned(),
        value: Bytes::copy_from_slice(value.as_bytes()),
        precondition,
    }
}

/// A store without `atomic_multi_key` refuses `put_all` with
/// `NotSupported` and writes nothing. One with it writes every key when
/// every precondition holds, and none when one fails: `Conflict` naming
/// that key.
pub async fn put_all_is_all_or_nothing(store: Arc<dyn Store>, ns: &str) {
    let (a, b, c) = (format!("{ns}a"), format!("{ns}b"), format!("{ns}c"));
    let va = create(&*store, &a, "a1").await;
    let vb = create(&*store, &b, "b1").await;
    if !store.capabilities().atomic_multi_key {
        let refused = store
            .put_all(vec![write(&a, "a2", Precondition::Matches(va.clone()))])
            .await;
        assert!(
            matches!(refused, Err(StoreError::NotSupported(_))),
            "a store without atomic_multi_key must refuse put_all: {refused:?}"
        );
        assert_eq!(read(&*store, &a).await, Some(("a1".into(), va)));
        return;
    }

    // One stale precondition: nothing is written, and the conflict says where.
    let stale = store
        .put_all(vec![
            write(&a, "a2", Precondition::Matches(va.clone())),
            write(&c, "c1", Precondition::Absent),
            write(&b, "b2", Precondition::Matches(va.clone())),
        ])
        .await;
    match stale {
        Err(StoreError::Conflict { key }) => assert_eq!(key, b, "names the key that conflicted"),
        other => panic!("expected a Conflict on {b:?}, got {other:?}"),
    }
    assert_eq!(
        read(&*store, &a).await,
        Some(("a1".into(), va.clone())),
        "a write of a failed put_all happened"
    );
    assert_eq!(
        read(&*store, &c).await,
        None,
        "a write of a failed put_all happened"
    );

    // A create of an existing key fails the same way.
    assert_conflict(
        store
            .put_all(vec![
                write(&a, "a2", Precondition::Matches(va.clone())),
                write(&b, "b2", Precondition::Absent),
            ])
            .await,
        "put_all creating an existing key",
    );
    assert_eq!(read(&*store, &a).await, Some(("a1".into(), va.clone())));

    // Every precondition holds: all written, at the versions returned.
    let versions = store
        .put_all(vec![
            write(&a, "a2", Precondition::Matches(va.clone())),
            write(&b, "b2", Precondition::Matches(vb.clone())),
            write(&c, "c1", Precondition::Absent),
        ])
        .await
        .expect("put_all at the current versions");
    assert_eq!(versions.len(), 3, "one version per write");
    assert_ne!(versions[0], va, "a new version for a");
    assert_ne!(versions[1], vb, "a new version for b");
    for (key, value, version) in [(&a, "a2", &versions[0]), (&b, "b2", &versions[1])] {
        assert_eq!(
            read(&*store, key).await,
            Some((value.into(), version.clone()))
        );
    }
    assert_eq!(
        read(&*store, &c).await,
        Some(("c1".into(), versions[2].clone()))
    );
}

/// Tasks that each add one to two counters with one `put_all`, racing
/// tasks that add one to the first counter alone with `put`, end with
/// exact counts: no torn pair, no lost update, whichever way they
/// interleave. Half the pairs list the keys the other way round: racing
/// `put_all`s of the same keys in opposite orders lose with `Conflict`,
/// never with another error (a store that locks rows in the order given
/// deadlocks there). Skipped on stores without `atomic_multi_key`.
pub async fn put_all_counters_stay_equal(store: Arc<dyn Store>, ns: &str) {
    if !store.capabilities().atomic_multi_key {
        return;
    }
    let keys = [format!("{ns}x"), format!("{ns}y")];
    for key in &keys {
        create(&*store, key, "0").await;
    }
    let (pairs, singles, each) = (4, 3, 10);
    let mut running = Vec::new();
    for task in 0..pairs + singles {
        let (store, keys) = (store.clone(), keys.clone());
        running.push(tokio::spawn(async move {
            let keys = match task {
                t if t >= pairs => vec![keys[0].clone()],
                t if t % 2 == 0 => keys.to_vec(),
                _ => keys.iter().rev().cloned().collect(),
            };
            for _ in 0..each {
                increment(&*store, &keys).await;
            }
        }));
    }
    for task in running {
        task.await.expect("task");
    }
    let expected = [(pairs + singles) * each, pairs * each];
    for (key, expected) in keys.iter().zip(expected) {
        let (value, _) = read(&*store, key).await.expect("counter");
        assert_eq!(
            value,
            expected.to_string().as_bytes(),
            "counter {key:?} lost increments"
        );
    }
}

/// Adds one to each of `keys`: with `put` for one key, `put_all` for more.
async fn increment(store: &dyn Store, keys: &[String]) {
    for _ in 0..10_000 {
        let mut writes = Vec::new();
        for key in keys {
            let (value, version) = read(store, key).await.expect("counter");
            let n: u64 = std::str::from_utf8(&value)
                .expect("utf-8")
                .parse()
                .expect("a number");
            writes.push(write(
                key,
                &(n + 1).to_string(),
                Precondition::Matches(version),
            ));
        }
        let written = match <[Write; 1]>::try_from(writes) {
            Ok([one]) => store
                .put(&one.key, one.value, one.precondition)
                .await
                .map(drop),
            Err(writes) => store.put_all(writes).await.map(drop),
        };
        match written {
            Ok(()) => return,
            Err(StoreError::Conflict { .. }) => tokio::task::yield_now().await,
            Err(e) => panic!("increment: {e}"),
        }
    }
    panic!("no increment won in 10,000 tries");
}
