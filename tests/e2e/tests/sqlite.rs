//! The fault harness on SQLite: seeded schedules over the SQLite store and
//! SQL queue; 0 lost, 0 duplicated, no ghost, nothing left behind.
//! `EXACTLY_SCHEDULES` sets the number of schedules, `EXACTLY_SEED` reruns
//! one failing seed.

use exactly::harness::{Config, Report};
use exactly_conformance::harness::run_schedules;

async fn run(config: Config) -> Report {
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = exactly_e2e::sqlite_backend(dir.path().join("e2e.db"))
        .await
        .expect("open the SQLite file");
    run_schedules("SQLite", config, &backend).await
}

#[tokio::test(flavor = "current_thread")]
async fn sqlite_schedules_lose_and_duplicate_nothing() {
    let report = run(Config {
        schedules: 300,
        ..Config::default()
    })
    .await;
    assert!(
        report.faults.crashes > 0 && report.faults.stale_workers > 0,
        "faults were injected"
    );
    assert!(
        report.one_write_commits > 0,
        "SQLite writes two keys at once, so commits consume their token: {report}"
    );
    assert!(
        report.grouped_intents > 0,
        "sends that met created their intents in one write: {report}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn sweeper_racing_workers_on_sqlite_is_harmless() {
    let report = run(Config {
        schedules: 100,
        sweep_entities: true,
        sweep_pct: 6,
        ..Config::default()
    })
    .await;
    assert!(report.faults.sweeps > 0, "sweeps were started");
}

#[tokio::test(flavor = "current_thread")]
async fn batches_on_sqlite_lose_and_duplicate_nothing() {
    let report = run(Config {
        schedules: 200,
        first_seed: 20_000,
        batch: 4,
        ..Config::default()
    })
    .await;
    assert!(
        report.batched > 0,
        "deliveries were committed in batches (one put_all, one ack_all): {report}"
    );
    assert!(
        report.shared_consumes > 0,
        "tokens from one holder consumed in one write of it: {report}"
    );
}

/// The store and queue as one `StoreAndQueue`: commits, their sends and
/// acks, and the sender's intents with their messages, each one SQLite
/// transaction; one at a time and in batches.
#[tokio::test(flavor = "current_thread")]
async fn one_transaction_commits_on_sqlite_lose_and_duplicate_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = exactly_e2e::sqlite_colocated_backend(dir.path().join("e2e.db"))
        .await
        .expect("open the SQLite file");
    // Seeds name each schedule's keys and queues in the shared file: the
    // two runs take different ones.
    for (schedules, first_seed, batch) in [(200, 40_000, 1), (100, 45_000, 4)] {
        let config = Config {
            schedules,
            first_seed,
            batch,
            ..Config::default()
        };
        let report = run_schedules("SQLite, one transaction", config, &backend).await;
        assert!(
            report.colocated_commits > 4 * schedules,
            "commits sent and acked in the same transaction: {report}"
        );
        assert!(
            batch == 1 || (report.batched > 0 && report.shared_consumes > 0),
            "deliveries were committed in batches, some sharing a token holder: {report}"
        );
        assert!(
            batch > 1 || report.grouped_intents > 0,
            "sends that met committed their intents and messages in one transaction: {report}"
        );
    }
}
