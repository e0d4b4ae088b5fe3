//! Clauses about concurrent writers: real tasks on a multi-threaded
//! runtime, racing on one key.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use exactly::{Precondition, Store, StoreError};

use super::read;

/// Concurrent writers in the races below.
const WRITERS: usize = 8;
/// Increments per writer in `cas_counter_is_exact`.
const INCREMENTS: u64 = 25;
/// Keys raced on in `create_race_has_one_winner`.
const RACES: usize = 5;

/// Of several concurrent creates of one key exactly one succeeds, the
/// others fail with `Conflict`, and the key holds the winner's value.
pub async fn create_race_has_one_winner(store: Arc<dyn Store>, ns: &str) {
    for race in 0..RACES {
        let key = format!("{ns}race{race}");
        let start = Arc::new(tokio::sync::Barrier::new(WRITERS));
        let tasks: Vec<_> = (0..WRITERS)
            .map(|writer| {
                let (store, key, start) = (store.clone(), key.clone(), start.clone());
                tokio::spawn(async move {
                    let value = Bytes::from(format!("writer {writer}"));
                    start.wait().await;
                    let result = store.put(&key, value.clone(), Precondition::Absent).await;
                    (value, result)
                })
            })
            .collect();
        let mut winners = Vec::new();
        for task in tasks {
            match task.await.expect("writer task") {
                (value, Ok(version)) => winners.push((value, version)),
                (_, Err(StoreError::Conflict { .. })) => {}
                (_, Err(e)) => panic!("a losing create must fail with Conflict, got {e}"),
            }
        }
        assert_eq!(
            winners.len(),
            1,
            "{key}: {} creates succeeded",
            winners.len()
        );
        assert_eq!(
            read(&*store, &key).await,
            winners.pop(),
            "the winner's value"
        );
    }
}

/// Compare-and-swap is atomic: each of several tasks increments one counter
/// through get + conditional put, retrying on `Conflict`; the counter ends
/// at exactly the number of increments.
pub async fn cas_counter_is_exact(store: Arc<dyn Store>, ns: &str) {
    let key = format!("{ns}counter");
    super::create(&*store, &key, "0").await;
    let start = Arc::new(tokio::sync::Barrier::new(WRITERS));
    let tasks: Vec<_> = (0..WRITERS)
        .map(|_| {
            let (store, key, start) = (store.clone(), key.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                for _ in 0..INCREMENTS {
                    increment(&*store, &key).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("writer task");
    }
    let (value, _) = read(&*store, &key).await.expect("the counter");
    assert_eq!(
        number(&value),
        WRITERS as u64 * INCREMENTS,
        "{WRITERS} writers × {INCREMENTS} increments"
    );
}

async fn increment(store: &dyn Store, key: &str) {
    loop {
        let (value, version) = read(store, key).await.expect("the counter exists");
        let next = Bytes::from((number(&value) + 1).to_string());
        match store.put(key, next, Precondition::Matches(version)).await {
            Ok(_) => return,
            Err(StoreError::Conflict { .. }) => tokio::task::yield_now().await,
            Err(e) if e.is_transient() => tokio::time::sleep(Duration::from_millis(5)).await,
            Err(e) => panic!("increment of {key:?}: {e}"),
        }
    }
}

fn number(value: &[u8]) -> u64 {
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.parse().ok())
        .expect("the counter holds a number")
}
