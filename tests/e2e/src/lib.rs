//! The seeded fault harness of `exactly` over real backends: the same
//! crashes, stale workers, duplicates and store/transport faults as the
//! in-memory run, on the embedded SQLite store and SQL queue.
//!
//! ```
//! use exactly::harness::{self, Config};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let dir = tempfile::tempdir().unwrap();
//! let backend = exactly_e2e::sqlite_backend(dir.path().join("e2e.db")).await.unwrap();
//! let report = harness::run(&Config { schedules: 2, ..Config::default() }, &backend).await;
//! assert!(report.violations.is_empty(), "{report}");
//! # });
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::path::Path;
use std::sync::Arc;

use exactly::StoreError;
use exactly::harness::{Backend, BackendFactory, ScheduleEnv};
use exactly_conformance::harness::NO_EXPIRY;
use exactly_store_sqlite::SqliteStore;
use exactly_transport_sql::{SqlQueue, StoreAndQueue};

/// A [`BackendFactory`] over one SQLite file at `path`, holding both the
/// store and the queue. Every schedule shares the file and pool under its
/// own namespace (`s{seed}x`) and runs the queue on the schedule's clock.
pub async fn sqlite_backend(path: impl AsRef<Path>) -> Result<BackendFactory, StoreError> {
    let store = SqliteStore::open(path).await?;
    let queue = SqlQueue::from_pool(store.pool().clone())
        .await
        .map_err(|e| StoreError::generic(e.to_string()))?;
    Ok(Arc::new(move |env: ScheduleEnv| {
        let (store, queue) = (store.clone(), queue.clone());
        Box::pin(async move {
            Backend {
                store: Arc::new(store),
                transport: Arc::new(queue.clock(env.clock).visibility_timeout(NO_EXPIRY)),
                namespace: format!("s{}x", env.seed),
                colocated: None,
            }
        })
    }))
}

/// Like [`sqlite_backend`], with the store and queue as one
/// [`StoreAndQueue`]: endpoints and sender commit, send and ack in one
/// SQLite transaction ([`exactly::Colocated`]).
pub async fn sqlite_colocated_backend(
    path: impl AsRef<Path>,
) -> Result<BackendFactory, StoreError> {
    let store = SqliteStore::open(path).await?;
    let db = StoreAndQueue::sqlite(store)
        .await
        .map_err(|e| StoreError::generic(e.to_string()))?;
    Ok(Arc::new(move |env: ScheduleEnv| {
        let db = db.clone();
        Box::pin(async move {
            let db = Arc::new(db.with_queue(|q| q.clock(env.clock).visibility_timeout(NO_EXPIRY)));
            Backend {
                store: db.clone(),
                transport: db.clone(),
                namespace: format!("s{}x", env.seed),
                colocated: Some(db),
            }
        })
    }))
}
