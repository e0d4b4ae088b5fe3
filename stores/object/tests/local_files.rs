//! Local files through `LocalFiles`: two stores on one directory (as two
//! processes of one host would be) share its lock, and a path's versions
//! never come back however fast same-sized values replace each other.

use std::sync::Arc;

use exactly::{Precondition, Store};
use exactly_store_object::ObjectStoreStore;

async fn local(dir: &std::path::Path) -> Arc<dyn Store> {
    Arc::new(ObjectStoreStore::local(dir).await.expect("local files"))
}

/// Adds one to the counter at `key` by compare-and-swap, retrying conflicts.
async fn increment(store: &dyn Store, key: &str) {
    loop {
        let current = store.get(key).await.expect("get").expect("counter exists");
        let n: u64 = std::str::from_utf8(&current.value)
            .expect("utf-8")
            .parse()
            .expect("a number");
        match store
            .put(
                key,
                (n + 1).to_string().into(),
                Precondition::Matches(current.version),
            )
            .await
        {
            Ok(_) => return,
            Err(e) if e.is_conflict() => continue,
            Err(e) => panic!("increment: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_on_one_directory_count_exactly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let stores = [local(dir.path()).await, local(dir.path()).await];
    stores[0]
        .put("counter", "0".into(), Precondition::Absent)
        .await
        .expect("create");
    let (tasks, each) = (8, 25);
    let mut running = Vec::new();
    for task in 0..tasks {
        let store = stores[task % 2].clone();
        running.push(tokio::spawn(async move {
            for _ in 0..each {
                increment(&*store, "counter").await;
            }
        }));
    }
    for task in running {
        task.await.expect("task");
    }
    let end = stores[1]
        .get("counter")
        .await
        .expect("get")
        .expect("counter");
    assert_eq!(end.value, (tasks * each).to_string().as_bytes());
}

#[tokio::test]
async fn a_stale_version_never_matches_again() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = local(dir.path()).await;
    let mut version = store
        .put("k", "v000".into(), Precondition::Absent)
        .await
        .expect("create");
    let mut stale = vec![version.clone()];
    for i in 1..200 {
        // Same size every time: only the inode and time tell versions apart.
        version = store
            .put(
                "k",
                format!("v{i:03}").into(),
                Precondition::Matches(version),
            )
            .await
            .expect("update");
        assert!(!stale.contains(&version), "version {version} came back");
        stale.push(version.clone());
    }
    stale.pop();
    for old in stale {
        let refused = store
            .put("k", "late".into(), Precondition::Matches(old.clone()))
            .await;
        assert!(
            refused.as_ref().is_err_and(|e| e.is_conflict()),
            "a write at stale version {old} was not refused: {refused:?}"
        );
    }
    let end = store.get("k").await.expect("get").expect("value");
    assert_eq!(end.value, "v199".as_bytes());
}
