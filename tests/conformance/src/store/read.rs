//! `get_all`: what `get` of each key would return, in order, each key read
//! no earlier than the keys before it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use exactly::{Precondition, Store, Versioned};

use super::{create, read};

fn parse(value: Option<Versioned>) -> u64 {
    value.map_or(0, |v| {
        std::str::from_utf8(&v.value)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not a counter: {:?}", v.value))
    })
}

/// `get_all` returns each key's value and version as `get` does, `None` for
/// a missing key, in the order asked (repeats included); no keys, no values.
pub async fn get_all_reads_like_get(store: Arc<dyn Store>, ns: &str) {
    let (a, b, missing) = (format!("{ns}a"), format!("{ns}b/ü"), format!("{ns}none"));
    let va = create(&*store, &a, "one").await;
    store
        .put(&a, "two".into(), Precondition::Matches(va))
        .await
        .expect("update a");
    create(&*store, &b, "bee").await;
    let got = store
        .get_all(&[&a, &missing, &b, &a])
        .await
        .expect("get_all");
    let got: Vec<_> = got
        .into_iter()
        .map(|v| v.map(|v| (v.value, v.version)))
        .collect();
    let want = vec![
        read(&*store, &a).await,
        None,
        read(&*store, &b).await,
        read(&*store, &a).await,
    ];
    assert_eq!(got, want, "get_all of [a, missing, b, a]");
    assert!(
        store
            .get_all(&[])
            .await
            .expect("get_all of nothing")
            .is_empty(),
        "get_all of no keys"
    );
}

/// A writer bumps `x`, then `y`, to the same count, over and over; readers
/// `get_all([y, x])` meanwhile. Reading `x` no earlier than `y` (or both in
/// one snapshot) can never show `x` behind `y`; reading `x` first can.
pub async fn get_all_reads_in_order(store: Arc<dyn Store>, ns: &str) {
    let (x, y) = (format!("{ns}x"), format!("{ns}y"));
    let mut vx = create(&*store, &x, "0").await;
    let mut vy = create(&*store, &y, "0").await;
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let (store, x, y, done) = (store.clone(), x.clone(), y.clone(), done.clone());
            tokio::spawn(async move {
                let mut reads = 0u32;
                while !done.load(Ordering::Relaxed) || reads < 20 {
                    let mut got = store.get_all(&[&y, &x]).await.expect("get_all").into_iter();
                    let (at_y, at_x) = (parse(got.next().flatten()), parse(got.next().flatten()));
                    if at_x < at_y {
                        return Err(format!("get_all([y, x]) read x={at_x} behind y={at_y}"));
                    }
                    reads += 1;
                    tokio::task::yield_now().await;
                }
                Ok(())
            })
        })
        .collect();
    // The writer is a task too, so that it runs between a reader's reads
    // on a single-threaded runtime as well.
    let writer = tokio::spawn({
        let (store, x, y) = (store.clone(), x.clone(), y.clone());
        async move {
            for i in 1..=200u64 {
                let value = i.to_string();
                vx = store
                    .put(&x, value.clone().into(), Precondition::Matches(vx))
                    .await
                    .expect("bump x");
                tokio::task::yield_now().await;
                vy = store
                    .put(&y, value.into(), Precondition::Matches(vy))
                    .await
                    .expect("bump y");
                tokio::task::yield_now().await;
            }
        }
    });
    writer.await.expect("the writer panicked");
    done.store(true, Ordering::Relaxed);
    for reader in readers {
        if let Err(why) = reader.await.expect("a reader panicked") {
            panic!("{why}");
        }
    }
}
