//! The fault harness on object stores: seeded schedules over S3 (moto),
//! Azure Blob (Azurite), local files and `InMemory`, with the reordering in-memory
//! transport; 0 lost, 0 duplicated, nothing left behind. One bucket serves
//! every schedule, each under its own namespace. `EXACTLY_SCHEDULES` sets
//! the number of schedules, `EXACTLY_SEED` reruns one failing seed.

mod common;

use exactly::harness::{Config, Report};
use exactly_conformance::harness::{run_schedules, store_over_memory_transport};
use exactly_store_object::ObjectStoreStore;

async fn run(store: ObjectStoreStore, name: &str, config: Config) -> Report {
    let report = run_schedules(name, config, &store_over_memory_transport(store)).await;
    assert!(report.faults.crashes > 0, "faults were injected: {report}");
    report
}

/// Schedules with the default fault mix, then with the sweeper racing the
/// workers (entity records included): 210 on each server. moto and
/// Azurite take about a second per schedule in a debug build.
fn configs() -> [Config; 2] {
    [
        Config {
            schedules: 150,
            ..Config::default()
        },
        Config {
            schedules: 60,
            first_seed: 1_001,
            sweep_entities: true,
            sweep_pct: 6,
            ..Config::default()
        },
    ]
}

#[tokio::test(flavor = "current_thread")]
async fn s3_schedules_lose_and_duplicate_nothing() {
    for config in configs() {
        run(common::s3().await, "S3 (moto)", config).await;
    }
}

#[tokio::test(flavor = "current_thread")]
async fn azure_schedules_lose_and_duplicate_nothing() {
    for config in configs() {
        run(common::azure().await, "Azure Blob (Azurite)", config).await;
    }
}

#[tokio::test(flavor = "current_thread")]
async fn local_files_schedules_lose_and_duplicate_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = ObjectStoreStore::local(dir.path())
        .await
        .expect("local files");
    for config in configs() {
        let config = Config {
            schedules: config.schedules * 2,
            ..config
        };
        run(store.clone(), "local files", config).await;
    }
}

#[tokio::test(flavor = "current_thread")]
async fn in_memory_schedules_lose_and_duplicate_nothing() {
    let store = ObjectStoreStore::memory().await.expect("InMemory");
    let config = Config {
        schedules: 300,
        ..Config::default()
    };
    run(store, "object_store InMemory", config).await;
}
