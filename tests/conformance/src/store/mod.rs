//! The [`Store`] contract, one check per clause (named as in the trait's
//! `# Contract`). Every check takes the store and a namespace: a key prefix
//! that no other check uses, so checks may share one server.

mod atomic;
mod concurrent;
mod list;
mod read;

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use exactly::{Precondition, Store, StoreError, Version};

pub use atomic::{put_all_counters_stay_equal, put_all_is_all_or_nothing};
pub use concurrent::{cas_counter_is_exact, create_race_has_one_winner};
pub use list::{list_pages_in_byte_order, list_prefix_is_literal};
pub use read::{get_all_reads_in_order, get_all_reads_like_get};

pub(crate) async fn create(store: &dyn Store, key: &str, value: &str) -> Version {
    store
        .put(
            key,
            Bytes::copy_from_slice(value.as_bytes()),
            Precondition::Absent,
        )
        .await
        .unwrap_or_else(|e| panic!("create {key:?}: {e}"))
}

pub(crate) async fn read(store: &dyn Store, key: &str) -> Option<(Bytes, Version)> {
    store
        .get(key)
        .await
        .unwrap_or_else(|e| panic!("get {key:?}: {e}"))
        .map(|v| (v.value, v.version))
}

fn assert_conflict<T: std::fmt::Debug>(result: Result<T, StoreError>, what: &str) {
    match result {
        Err(StoreError::Conflict { .. }) => {}
        other => panic!("{what}: expected StoreError::Conflict, got {other:?}"),
    }
}

/// `get` returns the latest committed value and its version, `None` for a
/// key never written.
pub async fn get_returns_latest(store: Arc<dyn Store>, ns: &str) {
    let key = format!("{ns}latest");
    assert_eq!(read(&*store, &key).await, None, "a key never written");
    let v1 = create(&*store, &key, "one").await;
    assert_eq!(
        read(&*store, &key).await,
        Some(("one".into(), v1.clone())),
        "read after create"
    );
    let v2 = store
        .put(&key, "two".into(), Precondition::Matches(v1.clone()))
        .await
        .expect("update at the version just read");
    assert_ne!(v1, v2, "an update must change the version");
    assert_eq!(
        read(&*store, &key).await,
        Some(("two".into(), v2)),
        "read after update"
    );
}

/// A create of an existing key, an update at a stale version and an update
/// of a missing key all fail with `Conflict` and change nothing.
pub async fn conditional_put_conflicts(store: Arc<dyn Store>, ns: &str) {
    let key = format!("{ns}cond");
    let v1 = create(&*store, &key, "one").await;
    assert_conflict(
        store.put(&key, "again".into(), Precondition::Absent).await,
        "create of an existing key",
    );
    let v2 = store
        .put(&key, "two".into(), Precondition::Matches(v1.clone()))
        .await
        .expect("update at the current version");
    assert_conflict(
        store
            .put(&key, "stale".into(), Precondition::Matches(v1))
            .await,
        "update at a stale version",
    );
    assert_eq!(read(&*store, &key).await, Some(("two".into(), v2.clone())));
    assert_conflict(
        store
            .put(
                &format!("{ns}missing"),
                "x".into(),
                Precondition::Matches(v2),
            )
            .await,
        "update of a missing key",
    );
    assert_eq!(read(&*store, &format!("{ns}missing")).await, None);
}

/// Every write returns a version never seen before for that key, including
/// across delete and re-create; a version from before a delete does not
/// match the re-created key.
pub async fn versions_never_repeat(store: Arc<dyn Store>, ns: &str) {
    let key = format!("{ns}versions");
    let mut seen = HashSet::new();
    let mut before_delete = None;
    for round in 0..5 {
        let mut version = create(&*store, &key, &format!("{round}")).await;
        if let Some(old) = before_delete.take() {
            assert_conflict(
                store
                    .put(&key, "stale".into(), Precondition::Matches(old))
                    .await,
                "update of a re-created key at a version from before the delete",
            );
        }
        assert!(seen.insert(version.clone()), "version {version} repeated");
        for update in 0..3 {
            version = store
                .put(
                    &key,
                    format!("{round}.{update}").into(),
                    Precondition::Matches(version),
                )
                .await
                .expect("update");
            assert!(seen.insert(version.clone()), "version {version} repeated");
        }
        store.delete(&key, &version).await.expect("delete");
        before_delete = Some(version);
    }
}

/// `delete` fails with `NotFound` for a missing key and `Conflict` for a
/// wrong version (leaving the key), and removes the key otherwise.
pub async fn delete_checks_version(store: Arc<dyn Store>, ns: &str) {
    let key = format!("{ns}del");
    let other = create(&*store, &format!("{ns}other"), "x").await;
    match store.delete(&key, &other).await {
        Err(StoreError::NotFound { .. }) => {}
        r => panic!("delete of a missing key: expected NotFound, got {r:?}"),
    }
    let v1 = create(&*store, &key, "one").await;
    assert_conflict(
        store.delete(&key, &other).await,
        "delete at a wrong version",
    );
    assert_eq!(read(&*store, &key).await, Some(("one".into(), v1.clone())));
    store
        .delete(&key, &v1)
        .await
        .expect("delete at the version");
    assert_eq!(read(&*store, &key).await, None, "a deleted key");
    match store.delete(&key, &v1).await {
        Err(StoreError::NotFound { .. }) => {}
        r => panic!("second delete: expected NotFound, got {r:?}"),
    }
}

/// A value at the backend's limit is stored; one byte more fails with
/// `TooLarge` and leaves the key as it was. Skipped (with a note) when the
/// backend reports no limit.
pub async fn too_large_is_typed(store: Arc<dyn Store>, ns: &str) {
    let Some(limit) = crate::run::testable_limit(store.capabilities().max_value_bytes, "store")
    else {
        return;
    };
    let key = format!("{ns}big");
    let fits = Bytes::from(vec![7u8; limit]);
    let v1 = store
        .put(&key, fits.clone(), Precondition::Absent)
        .await
        .expect("a value of exactly the limit");
    let over = Bytes::from(vec![8u8; limit + 1]);
    match store
        .put(&key, over.clone(), Precondition::Matches(v1.clone()))
        .await
    {
        Err(StoreError::TooLarge { size, limit: l, .. }) => {
            assert_eq!(
                (size, l),
                (limit + 1, limit),
                "TooLarge reports size and limit"
            );
        }
        r => panic!("a value over the limit: expected TooLarge, got {r:?}"),
    }
    assert_eq!(read(&*store, &key).await, Some((fits, v1)), "key unchanged");
    let fresh = format!("{ns}big2");
    let refused = store.put(&fresh, over, Precondition::Absent).await;
    assert!(
        matches!(refused, Err(StoreError::TooLarge { .. })),
        "create over the limit: expected TooLarge, got {refused:?}"
    );
    assert_eq!(read(&*store, &fresh).await, None, "nothing created");
}

/// Keys with non-ASCII text, spaces, quotes, `%`, `_`, slashes and
/// backslashes, and keys of 256 and 512 bytes, round-trip through put,
/// get, list and delete.
pub async fn odd_keys_round_trip(store: Arc<dyn Store>, ns: &str) {
    let base = format!("{ns}odd/");
    let pad = |len: usize| format!("{base}{}", "k".repeat(len - base.len()));
    let keys = [
        format!("{base}grüße/日本語/🦀"),
        format!("{base} leading, inner and trailing spaces "),
        format!("{base}quotes ' \" `"),
        format!("{base}100% _under_ %_"),
        format!("{base}a//b/./../c"),
        format!("{base}back\\slash"),
        pad(256),
        pad(512),
    ];
    for (i, key) in keys.iter().enumerate() {
        let value = format!("value {i}");
        let version = create(&*store, key, &value).await;
        assert_eq!(
            read(&*store, key).await,
            Some((value.into(), version.clone())),
            "read back {key:?}"
        );
        let listed = store.list(key, None, 10).await.expect("list");
        assert_eq!(listed.first(), Some(key), "list by the key itself");
        store.delete(key, &version).await.expect("delete");
        assert_eq!(read(&*store, key).await, None, "deleted {key:?}");
    }
}
