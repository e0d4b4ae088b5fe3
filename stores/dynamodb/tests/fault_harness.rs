//! The fault harness on DynamoDB (moto): seeded schedules over the
//! DynamoDB store and the reordering in-memory transport; 0 lost, 0
//! duplicated, nothing left behind. One table serves every schedule, each
//! under its own namespace. `EXACTLY_SCHEDULES` sets the number of
//! schedules, `EXACTLY_SEED` reruns one failing seed.

mod common;

use exactly::harness::{Config, Report};
use exactly_conformance::harness::{run_schedules, store_over_memory_transport};

async fn run(config: Config) -> Report {
    let backend = store_over_memory_transport(common::store().await);
    let report = run_schedules("DynamoDB (moto)", config, &backend).await;
    assert!(report.faults.crashes > 0, "faults were injected: {report}");
    report
}

#[tokio::test(flavor = "current_thread")]
async fn dynamodb_schedules_lose_and_duplicate_nothing() {
    run(Config {
        schedules: 150,
        ..Config::default()
    })
    .await;
}

#[tokio::test(flavor = "current_thread")]
async fn sweeper_racing_workers_on_dynamodb_is_harmless() {
    let report = run(Config {
        schedules: 60,
        first_seed: 1_001,
        sweep_entities: true,
        sweep_pct: 6,
        ..Config::default()
    })
    .await;
    assert!(report.faults.sweeps > 0, "sweeps were started");
}
