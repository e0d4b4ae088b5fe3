//! The core fault harness over `MemoryStore` and a real transport: the
//! protocol's crash, stale-worker, duplicate and fault schedules, with every
//! queue operation going to the broker. The harness workload also publishes
//! through `Routes` (one event to two subscriber queues) and moves failures
//! to an error queue, so it exercises publish/subscribe and error queues
//! over the transport as well.

use std::future::Future;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use exactly::harness::{Backend, BackendFactory, Config, Report, ScheduleEnv};
use exactly::{MemoryStore, Transport, TransportError};
use exactly_conformance::harness::run_schedules;

/// A prefix no earlier run against the same server used (`r` + seconds
/// since the epoch in base 36), so queues left by an aborted run never
/// feed messages into this one.
pub fn run_prefix() -> String {
    let mut secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut digits = Vec::new();
    while secs > 0 {
        let d = u8::try_from(secs % 36).unwrap_or(0);
        digits.push(if d < 10 { b'0' + d } else { b'a' + d - 10 });
        secs /= 36;
    }
    digits.reverse();
    format!("r{}", String::from_utf8_lossy(&digits))
}

/// A [`BackendFactory`]: a fresh `MemoryStore` per schedule and the
/// transport `transport` builds for it. The closure gets the schedule's
/// environment and its namespace (`{run}s{seed}x`), the prefix of every
/// queue the schedule uses (`{ns}a`, `{ns}b`, `{ns}error`).
pub fn memory_store_over<F, Fut>(transport: F) -> BackendFactory
where
    F: Fn(ScheduleEnv, String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Arc<dyn Transport>> + Send + 'static,
{
    let run = run_prefix();
    Arc::new(move |env: ScheduleEnv| {
        let namespace = format!("{run}s{}x", env.seed);
        let transport = transport(env, namespace.clone());
        Box::pin(async move {
            Backend {
                store: Arc::new(MemoryStore::new()),
                transport: transport.await,
                namespace,
                colocated: None,
            }
        })
    })
}

/// A [`BackendFactory`] like [`memory_store_over`] for a transport shared by
/// every schedule (one connection for the whole run): before each
/// schedule, `delete_queue` removes the queues of the schedule before it
/// (`{ns}a`, `{ns}b`, `{ns}error` of the previous seed), so the server
/// does not pile them up. A queue that cannot be deleted is left behind.
pub fn memory_store_over_shared<T, D, Fut>(transport: T, delete_queue: D) -> BackendFactory
where
    T: Transport + Clone,
    D: Fn(T, String) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<(), TransportError>> + Send + 'static,
{
    memory_store_over(move |env, namespace| {
        let transport = transport.clone();
        let delete_queue = delete_queue.clone();
        async move {
            let run = namespace.strip_suffix(&format!("s{}x", env.seed));
            let previous = format!("{}s{}x", run.unwrap_or_default(), env.seed.wrapping_sub(1));
            for queue in ["a", "b", "error"] {
                let _ = delete_queue(transport.clone(), format!("{previous}{queue}")).await;
            }
            Arc::new(transport) as Arc<dyn Transport>
        }
    })
}

/// Runs `schedules` schedules (or `EXACTLY_SCHEDULES`; `EXACTLY_SEED`
/// reruns one) over `factory`, prints the report and its time, and fails
/// on any lost or duplicated effect or other violation.
pub async fn fault_harness(label: &str, schedules: u64, factory: &BackendFactory) -> Report {
    let config = Config {
        schedules,
        // A broker may hand a message requeued just before back a moment
        // after a receive found the queue empty: look once more before
        // counting anything lost.
        quiescence_wait: std::time::Duration::from_millis(20),
        ..Config::default()
    };
    let report = run_schedules(label, config, factory).await;
    assert!(
        report.faults.crashes > 0 && report.faults.stale_workers > 0,
        "faults were injected: {report}"
    );
    report
}
