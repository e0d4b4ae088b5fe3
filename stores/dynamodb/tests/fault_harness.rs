//! The fault harness on DynamoDB (moto): seeded schedules over the
//! DynamoDB store and the reordering in-memory transport; 0 lost, 0
//! duplicated, nothing left behind. One table serves every schedule, each
//! under its own namespace. `EXACTLY_SCHEDULES` sets the number of
//! schedules, `EXACTLY_SEED` reruns one failing seed.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use exactly::MemoryTransport;
use exactly::harness::{self, Backend, BackendFactory, Config, ScheduleEnv};
use exactly_store_dynamodb::DynamoDbStore;

fn backend(store: DynamoDbStore) -> BackendFactory {
    let run = exactly_conformance::unique_name("r").replace('-', "");
    Arc::new(move |env: ScheduleEnv| {
        let (store, run) = (store.clone(), run.clone());
        Box::pin(async move {
            let transport = MemoryTransport::with_clock(env.clock.clone())
                .reordering(env.random.clone())
                .visibility_timeout(Duration::from_secs(1 << 30));
            Backend {
                store: Arc::new(store),
                transport: Arc::new(transport),
                namespace: format!("{run}s{}x", env.seed),
            }
        })
    })
}

async fn run(config: Config) -> harness::Report {
    let config = config.from_env();
    let start = Instant::now();
    let report = harness::run(&config, &backend(common::store().await)).await;
    println!("{report}\nin {:.1?} on DynamoDB (moto)", start.elapsed());
    assert_eq!(report.lost, 0, "{report}");
    assert_eq!(report.duplicated, 0, "{report}");
    assert!(report.violations.is_empty(), "{report}");
    assert!(report.faults.crashes > 0, "faults were injected: {report}");
    report
}

#[tokio::test(flavor = "current_thread")]
async fn dynamodb_schedules_lose_and_duplicate_nothing() {
    run(Config {
        schedules: 50,
        ..Config::default()
    })
    .await;
}

#[tokio::test(flavor = "current_thread")]
async fn sweeper_racing_workers_on_dynamodb_is_harmless() {
    let report = run(Config {
        schedules: 25,
        first_seed: 1_001,
        sweep_entities: true,
        sweep_pct: 6,
        ..Config::default()
    })
    .await;
    assert!(report.faults.sweeps > 0, "sweeps were started");
}
