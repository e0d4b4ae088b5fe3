//! The three workloads, each `tasks` concurrent tasks for a fixed time,
//! counting successful conditional writes per second.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use exactly::{Precondition, Store, StoreError};

use crate::Result;

/// How long each measurement runs, and on how many tasks.
#[derive(Clone, Copy, Debug)]
pub struct Load {
    pub tasks: usize,
    pub duration: Duration,
}

/// get + `Matches` put of `n + 1` on each task's own key: no contention,
/// every write succeeds (a read and a conditional write per count).
pub async fn increment(store: &Arc<dyn Store>, load: Load) -> Result<f64> {
    increments(store, load, false).await
}

/// The same increments on one key shared by every task: conflicts are
/// retried, and only successful writes count.
pub async fn contended(store: &Arc<dyn Store>, load: Load) -> Result<f64> {
    increments(store, load, true).await
}

/// `Absent` puts of fresh keys (one conditional write each).
pub async fn create(store: &Arc<dyn Store>, load: Load) -> Result<f64> {
    let ns = exactly_conformance::unique_name("bench");
    let store = store.clone();
    run(load, move |t, i| {
        let (store, key) = (store.clone(), format!("{ns}/new/{t}/{i}"));
        async move {
            store
                .put(&key, Bytes::from_static(b"0"), Precondition::Absent)
                .await
                .map(drop)
        }
    })
    .await
}

async fn increments(store: &Arc<dyn Store>, load: Load, shared: bool) -> Result<f64> {
    let ns = exactly_conformance::unique_name("bench");
    let key = move |t: usize| format!("{ns}/inc/{}", if shared { 0 } else { t });
    for t in 0..if shared { 1 } else { load.tasks } {
        store.put(&key(t), "0".into(), Precondition::Absent).await?;
    }
    let store = store.clone();
    run(load, move |t, _| increment_once(store.clone(), key(t))).await
}

async fn increment_once(store: Arc<dyn Store>, key: String) -> std::result::Result<(), StoreError> {
    loop {
        let current = store
            .get(&key)
            .await?
            .ok_or(StoreError::NotFound { key: key.clone() })?;
        let n: u64 = std::str::from_utf8(&current.value)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let next = Bytes::from((n + 1).to_string());
        match store
            .put(&key, next, Precondition::Matches(current.version))
            .await
        {
            Err(StoreError::Conflict { .. }) => continue,
            other => return other.map(drop),
        }
    }
}

/// Runs `op(task, i)` on `load.tasks` tasks for `load.duration`; ops/s.
async fn run<F, Fut>(load: Load, op: F) -> Result<f64>
where
    F: Fn(usize, usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = std::result::Result<(), StoreError>> + Send,
{
    let start = Instant::now();
    let handles: Vec<_> = (0..load.tasks)
        .map(|t| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut done = 0;
                while start.elapsed() < load.duration {
                    op(t, done).await?;
                    done += 1;
                }
                Ok::<_, StoreError>(done)
            })
        })
        .collect();
    let mut total = 0;
    for handle in handles {
        total += handle.await??;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}
