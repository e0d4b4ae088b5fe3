//! The fault harness over `MemoryStore` and the PostgreSQL queue at
//! `EXACTLY_TEST_POSTGRES_URL`, over the PostgreSQL store and queue as one
//! `StoreAndQueue`, and a dropped connection mid-stream.
//! `EXACTLY_SCHEDULES` sets the number of schedules, `EXACTLY_SEED` reruns
//! one failing seed.

use std::sync::Arc;
use std::time::Duration;

use exactly::Transport;
use exactly::harness::{Backend, BackendFactory, Config, ScheduleEnv};
use exactly_conformance::harness::run_schedules;
use exactly_store_postgres::PostgresStore;
use exactly_transport_sql::{SqlQueue, StoreAndQueue};
use exactly_transport_testkit::{
    Proxy, fault_harness, memory_store_over, reconnect_mid_stream, run_prefix, server_url,
};

/// Leases that never run out on their own: the harness expires them itself.
const NO_EXPIRY: Duration = Duration::from_secs(1 << 30);

#[tokio::test(flavor = "current_thread")]
async fn postgres_schedules_lose_and_duplicate_nothing() {
    let queue = SqlQueue::connect_postgres(&server_url("EXACTLY_TEST_POSTGRES_URL"))
        .await
        .expect("connect");
    let factory = memory_store_over(move |env, _namespace| {
        let queue = queue.clone().clock(env.clock).visibility_timeout(NO_EXPIRY);
        async move { Arc::new(queue) as Arc<dyn Transport> }
    });
    fault_harness("PostgreSQL", 300, &factory).await;
}

/// The store and queue as one `StoreAndQueue` on PostgreSQL: commits, their
/// sends and acks, and the sender's intents with their messages, each one
/// statement.
#[tokio::test(flavor = "current_thread")]
async fn one_statement_commits_on_postgres_lose_and_duplicate_nothing() {
    let url = server_url("EXACTLY_TEST_POSTGRES_URL");
    let store = PostgresStore::connect(&url).await.expect("connect");
    let db = StoreAndQueue::postgres(store).await.expect("queue");
    let run = run_prefix();
    let factory: BackendFactory = Arc::new(move |env: ScheduleEnv| {
        let namespace = format!("{run}s{}x", env.seed);
        let db = Arc::new(
            db.clone()
                .with_queue(|q| q.clock(env.clock).visibility_timeout(NO_EXPIRY)),
        );
        Box::pin(async move {
            Backend {
                store: db.clone(),
                transport: db.clone(),
                namespace,
                colocated: Some(db),
            }
        })
    });
    let report = fault_harness("PostgreSQL, one statement", 200, &factory).await;
    assert!(
        report.colocated_commits > 4 * 200,
        "commits sent and acked in the same statement: {report}"
    );
    assert!(
        report.grouped_intents > 0,
        "sends that met committed their intents and messages together: {report}"
    );
    let config = Config {
        schedules: 100,
        first_seed: 60_000,
        batch: 4,
        ..Config::default()
    };
    let report = run_schedules("PostgreSQL, one statement, batches", config, &factory).await;
    assert!(
        report.batched > 0 && report.shared_consumes > 0 && report.colocated_commits > 4 * 100,
        "batches committed (some members sharing a token holder), sent and acked in one \
         statement: {report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_reconnects_after_a_dropped_connection() {
    let url = server_url("EXACTLY_TEST_POSTGRES_URL");
    let (proxy, url) = Proxy::in_front_of(&url).await.expect("proxy");
    let queue = SqlQueue::connect_postgres(&url).await.expect("connect");
    let queue = queue.visibility_timeout(Duration::from_secs(1));
    let name = format!("{}reconnect", exactly_transport_testkit::run_prefix());
    reconnect_mid_stream(Arc::new(queue), &name, &proxy).await;
}
