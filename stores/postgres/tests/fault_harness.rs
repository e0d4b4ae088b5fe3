//! The fault harness on PostgreSQL: seeded schedules over the PostgreSQL
//! store and the reordering in-memory transport; 0 lost, 0 duplicated,
//! nothing left behind. One database serves every schedule, each under its
//! own namespace. `EXACTLY_SCHEDULES` sets the number of schedules,
//! `EXACTLY_SEED` reruns one failing seed.

mod common;

use exactly::harness::{Config, Report};
use exactly_conformance::harness::{run_schedules, store_over_memory_transport};
use exactly_store_postgres::PostgresStore;

async fn run(config: Config) -> Report {
    let store = PostgresStore::connect(&common::url())
        .await
        .expect("connect");
    run_schedules("PostgreSQL", config, &store_over_memory_transport(store)).await
}

#[tokio::test(flavor = "current_thread")]
async fn postgres_schedules_lose_and_duplicate_nothing() {
    let report = run(Config {
        schedules: 500,
        ..Config::default()
    })
    .await;
    assert!(
        report.faults.crashes > 0 && report.faults.stale_workers > 0,
        "faults were injected"
    );
    assert!(
        report.one_write_commits > 0,
        "PostgreSQL writes two keys at once, so commits consume their token: {report}"
    );
    assert!(
        report.grouped_intents > 0,
        "sends that met created their intents in one write: {report}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn sweeper_racing_workers_on_postgres_is_harmless() {
    let report = run(Config {
        schedules: 200,
        sweep_entities: true,
        sweep_pct: 6,
        ..Config::default()
    })
    .await;
    assert!(report.faults.sweeps > 0, "sweeps were started");
}

#[tokio::test(flavor = "current_thread")]
async fn batches_on_postgres_lose_and_duplicate_nothing() {
    let report = run(Config {
        schedules: 300,
        first_seed: 20_000,
        batch: 4,
        ..Config::default()
    })
    .await;
    assert!(
        report.batched > 0,
        "deliveries were committed in batches: {report}"
    );
}
