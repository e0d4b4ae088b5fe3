//! The fault harness of `exactly` over a real store: what every backend's
//! `fault_harness` test repeats — one store shared by every schedule under
//! its own namespace, the run, and the verdict. Feature `harness`.
//!
//! ```
//! use exactly::harness::Config;
//! use exactly_conformance::harness::{run_schedules, store_over_memory_transport};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let backend = store_over_memory_transport(exactly::MemoryStore::new());
//! let config = Config { schedules: 2, ..Config::default() };
//! let report = run_schedules("MemoryStore", config, &backend).await;
//! assert_eq!(report.schedules, 2);
//! # });
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use exactly::harness::{self, Backend, BackendFactory, Config, Report, ScheduleEnv};
use exactly::{MemoryTransport, Store};

/// Leases that never run out on their own: the harness expires them
/// itself (its "stale worker" fault).
pub const NO_EXPIRY: Duration = Duration::from_secs(1 << 30);

/// A prefix no other run or process uses (`r{time}{pid}` in hex, letters
/// and digits only), so schedules of several runs can share one server.
pub fn run_id() -> String {
    crate::unique_name("r").replace('-', "")
}

/// A [`BackendFactory`] over `store`, shared by every schedule under the
/// namespace `{run}s{seed}x`, with a fresh reordering [`MemoryTransport`]
/// on the schedule's clock: the store is the backend under test.
pub fn store_over_memory_transport(store: impl Store) -> BackendFactory {
    let store: Arc<dyn Store> = Arc::new(store);
    let run = run_id();
    Arc::new(move |env: ScheduleEnv| {
        let (store, run) = (store.clone(), run.clone());
        Box::pin(async move {
            let transport = MemoryTransport::with_clock(env.clock.clone())
                .reordering(env.random.clone())
                .visibility_timeout(NO_EXPIRY);
            Backend {
                store,
                transport: Arc::new(transport),
                namespace: format!("{run}s{}x", env.seed),
                colocated: None,
            }
        })
    })
}

/// Runs `config`'s schedules over `backend` — `EXACTLY_SCHEDULES` sets
/// their number, `EXACTLY_SEED` reruns one — prints the report and its
/// time on `label`, and fails on any lost or duplicated effect or other
/// violation. Which faults must have been injected is the caller's check.
pub async fn run_schedules(label: &str, config: Config, backend: &BackendFactory) -> Report {
    let config = config.from_env();
    let start = Instant::now();
    let report = harness::run(&config, backend).await;
    println!("{report}\nin {:.1?} on {label}", start.elapsed());
    assert_eq!(report.lost, 0, "{report}");
    assert_eq!(report.duplicated, 0, "{report}");
    assert!(report.violations.is_empty(), "{report}");
    report
}
