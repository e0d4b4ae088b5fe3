//! The fault harness on the in-memory store and transport: thousands of
//! seeded schedules with crashes, stale workers, duplicates, reordering and
//! store/transport faults; 0 lost, 0 duplicated, no ghost, nothing left.

use std::sync::{Arc, Mutex};

use exactly::fault::{FaultyTransport, TransportFaults};
use exactly::harness::{self, Config, ViolationKind, Workload};
use exactly::{
    Colocated, MemoryStore, MemoryTransport, Mutant, Outgoing, Receipt, Store, StoreError,
    Transport, Version, Write,
};

#[tokio::test(flavor = "current_thread")]
async fn ten_thousand_schedules_lose_and_duplicate_nothing() {
    let config = Config {
        schedules: 10_000,
        ..Config::default()
    }
    .from_env();
    let report = harness::run(&config, &harness::memory_backend()).await;
    println!("{report}");
    assert!(
        report.faults.crashes > 0 && report.faults.stale_workers > 0,
        "faults were injected"
    );
    assert_eq!(report.lost, 0, "{report}");
    assert_eq!(report.duplicated, 0, "{report}");
    assert!(report.violations.is_empty(), "{report}");
}

/// Prints the report and checks that faults were injected and nothing was
/// lost, duplicated or otherwise violated.
fn assert_clean(report: &harness::Report) {
    println!("{report}");
    assert!(report.faults.crashes > 0, "faults were injected");
    assert_eq!(report.lost, 0, "{report}");
    assert_eq!(report.duplicated, 0, "{report}");
    assert!(report.violations.is_empty(), "{report}");
}

/// Each broken variant must be caught, and by the invariant it breaks.
/// Runs until the first schedule that shows it (at most 10,000; seeds are
/// fixed, so this is deterministic).
async fn catches(mutant: Mutant, expected: &[ViolationKind]) {
    catches_with(mutant, expected, Config::default()).await;
}

async fn catches_with(mutant: Mutant, expected: &[ViolationKind], base: Config) {
    let config = Config {
        schedules: 10_000,
        mutant: Some(mutant),
        stop_on: expected.to_vec(),
        ..base
    };
    let report = harness::run(&config, &harness::memory_backend()).await;
    println!("{mutant:?}: {report}");
    assert!(
        expected.iter().any(|k| report.found(*k)),
        "{mutant:?} was not caught as {expected:?}: {report}"
    );
}

/// Messages spread over more entities, workers crashed and paused more
/// often: for mutants whose window is a stale read.
fn spread_and_paused() -> Config {
    Config {
        workload: Workload {
            chains: 4,
            hops: 3,
            entities: 8,
        },
        crash_pct: 6,
        stale_pct: 15,
        ..Config::default()
    }
}

#[tokio::test(flavor = "current_thread")]
async fn catches_token_check_before_load() {
    catches(Mutant::CheckTokenBeforeLoad, &[ViolationKind::Duplicated]).await;
}

#[tokio::test(flavor = "current_thread")]
async fn catches_token_recreated_at_dispatch() {
    // A consume makes every entry forget the consumed message, so only a
    // finisher that read the entry before the consume recreates the token.
    catches_with(
        Mutant::RecreateTokenAtDispatch,
        &[ViolationKind::Duplicated, ViolationKind::LeftoverToken],
        spread_and_paused(),
    )
    .await;
}

#[tokio::test(flavor = "current_thread")]
async fn catches_forgetting_a_whole_entry() {
    catches(Mutant::ForgetWholeEntry, &[ViolationKind::Duplicated]).await;
}

#[tokio::test(flavor = "current_thread")]
async fn catches_drop_without_reread() {
    // The leftover entry is finished by the next message to the same entity.
    catches_with(
        Mutant::DropWithoutReread,
        &[ViolationKind::LeftoverOutbox],
        spread_and_paused(),
    )
    .await;
}

#[tokio::test(flavor = "current_thread")]
async fn catches_entry_removed_before_token_consumed() {
    catches(
        Mutant::RemoveEntryBeforeConsume,
        &[ViolationKind::Duplicated],
    )
    .await;
}

#[tokio::test(flavor = "current_thread")]
async fn catches_dispatch_before_commit() {
    catches(Mutant::DispatchBeforeCommit, &[ViolationKind::Ghost]).await;
}

#[tokio::test(flavor = "current_thread")]
async fn sweeper_racing_workers_on_entity_records_is_harmless() {
    let config = Config {
        schedules: 2_000,
        sweep_entities: true,
        sweep_pct: 6,
        ..Config::default()
    }
    .from_env();
    let report = harness::run(&config, &harness::memory_backend()).await;
    println!("{report}");
    assert!(report.faults.sweeps > 0);
    assert!(report.violations.is_empty(), "{report}");
}

#[tokio::test(flavor = "current_thread")]
async fn third_party_calls_charge_exactly_once_under_faults() {
    // 5% of provider requests answer 503 before charging, 5% lose the
    // response after charging; plus every fault of the default schedule.
    let config = Config {
        schedules: 2_000,
        calls: Some(harness::fake_payments(50_000)),
        ..Config::default()
    }
    .from_env();
    let report = harness::run(&config, &harness::memory_backend()).await;
    println!("{report}");
    assert!(report.violations.is_empty(), "{report}");
}

#[tokio::test(flavor = "current_thread")]
async fn catches_a_double_charge_by_a_provider_that_ignores_keys() {
    let config = Config {
        schedules: 2_000,
        calls: Some(harness::fake_payments_ignoring_keys(50_000)),
        stop_on: vec![ViolationKind::Duplicated],
        ..Config::default()
    };
    let report = harness::run(&config, &harness::memory_backend()).await;
    println!("{report}");
    assert!(report.found(ViolationKind::Duplicated), "{report}");
}

#[tokio::test(flavor = "current_thread")]
async fn blob_side_effects_and_claim_checks_leave_no_orphan_and_no_dangling_reference() {
    // Every hop writes an invoice whose bytes differ per attempt, and every
    // hop message is claim-checked; concurrent and stale attempts of one
    // message race to publish theirs.
    let config = Config {
        schedules: 2_000,
        blobs: Some(harness::memory_blobs()),
        ..Config::default()
    }
    .from_env();
    let report = harness::run(&config, &harness::memory_backend()).await;
    println!("{report}");
    assert!(report.violations.is_empty(), "{report}");
}

#[tokio::test(flavor = "current_thread")]
async fn catches_a_collector_that_deletes_referenced_blobs() {
    let base = Config {
        blobs: Some(harness::memory_blobs()),
        ..Config::default()
    };
    catches_with(
        Mutant::CollectWithoutChecking,
        &[ViolationKind::DanglingBlob],
        base,
    )
    .await;
}

/// The fault harness on a store that writes several keys atomically: the
/// commit then consumes the incoming token itself (one `put_all`), commits
/// consuming from one holder at the same time are written together
/// (grouped consumes), and the client's sends that run at the same time
/// create their intent records in one `put_all` (group commit); with and
/// without the sweeper racing the workers.
#[tokio::test(flavor = "current_thread")]
async fn commit_and_consume_in_one_write_lose_and_duplicate_nothing() {
    let backend =
        harness::memory_backend_over(|| Arc::new(MemoryStore::new().atomic_multi_key(true)));
    let configs = [
        Config {
            schedules: 3_000,
            ..Config::default()
        },
        Config {
            schedules: 1_000,
            first_seed: 50_000,
            sweep_entities: true,
            sweep_pct: 6,
            ..Config::default()
        },
    ];
    for config in configs {
        let config = config.from_env();
        let report = harness::run(&config, &backend).await;
        assert_clean(&report);
        assert!(
            report.one_write_commits > 2 * config.schedules,
            "commits consumed their token in one write: {report}"
        );
        assert!(
            report.grouped_intents > config.schedules / 2,
            "sends running at once created their intents in one write: {report}"
        );
        assert!(
            report.shared_consumes > config.schedules / 10,
            "commits consuming from one holder met and were written together: {report}"
        );
    }
}

/// The fault harness on a store and queue in one database
/// ([`exactly::Colocated`]): a commit, the messages it sends and the ack of
/// the message it handled are one step, as is a `Sender`'s intent and its
/// message (and sends that meet, all their intents and messages: group
/// commit); with and without the sweeper racing the workers, and with
/// batches (every commit of a batch, their sends and acks in one step).
#[tokio::test(flavor = "current_thread")]
async fn commits_that_send_and_ack_in_one_transaction_lose_and_duplicate_nothing() {
    let backend = harness::memory_colocated_backend();
    let configs = [
        Config {
            schedules: 3_000,
            first_seed: 110_000,
            ..Config::default()
        },
        Config {
            schedules: 1_000,
            first_seed: 130_000,
            sweep_entities: true,
            sweep_pct: 6,
            ..Config::default()
        },
        Config {
            schedules: 2_000,
            first_seed: 150_000,
            batch: 4,
            ..Config::default()
        },
    ];
    for config in configs {
        let config = config.from_env();
        let report = harness::run(&config, &backend).await;
        assert_clean(&report);
        assert!(
            report.colocated_commits > 4 * config.schedules,
            "commits sent and acked in one transaction: {report}"
        );
        assert!(
            config.batch == 1 || report.batched > config.schedules,
            "deliveries were committed in batches: {report}"
        );
        // With batches the client sends several messages at a time
        // (`send_all`: one transaction already), not one send each.
        assert!(
            config.batch > 1 || report.grouped_intents > 0,
            "sends that met created their intents and messages in one transaction: {report}"
        );
        // Commits consuming from one holder met: one transaction of their
        // entities, the holder, their sends and their acks.
        assert!(
            report.shared_consumes > config.schedules / 10,
            "commits consuming from one holder were written together: {report}"
        );
    }
}

/// A colocated commit that is not all or nothing: it acks (and sends)
/// even when its write is refused. The harness must catch the messages it
/// loses.
#[derive(Debug)]
struct AcksEvenWhenRefused {
    store: Arc<MemoryStore>,
    transport: Arc<MemoryTransport>,
}

#[async_trait::async_trait]
impl Colocated for AcksEvenWhenRefused {
    async fn put_all_with(
        &self,
        writes: Vec<Write>,
        send: Vec<Outgoing>,
        ack: Vec<Receipt>,
    ) -> Result<Vec<Version>, StoreError> {
        let written = self.store.put_all(writes).await;
        self.transport.ack_all(&ack).await.expect("memory ack");
        if written.is_ok() {
            self.transport.send(send).await.expect("memory send");
        }
        written
    }
}

#[tokio::test(flavor = "current_thread")]
async fn catches_a_colocated_commit_that_acks_when_refused() {
    let backend = harness::memory_colocated_backend_with(|store, transport| {
        Arc::new(AcksEvenWhenRefused { store, transport })
    });
    for batch in [1, 4] {
        let config = Config {
            schedules: 10_000,
            batch,
            stop_on: vec![ViolationKind::Lost],
            ..Config::default()
        };
        let report = harness::run(&config, &backend).await;
        println!("batch {batch}: {report}");
        assert!(report.found(ViolationKind::Lost), "batch {batch}: {report}");
    }
}

/// Workers that receive up to four deliveries and handle them as a batch
/// (one `get_all`, one `put_all`, one `ack_all`), beside the faults of
/// every other schedule: on a store with atomic multi-key writes, on one
/// without (one commit per message, one read for all), and with blob side
/// effects and claim checks. Where the store writes keys atomically,
/// members whose tokens share a holder (hop 0 sends the next hop and a
/// publish from one record) consume them in one write of it.
#[tokio::test(flavor = "current_thread")]
async fn batches_lose_and_duplicate_nothing() {
    let atomic =
        harness::memory_backend_over(|| Arc::new(MemoryStore::new().atomic_multi_key(true)));
    let runs = [
        (
            Config {
                schedules: 3_000,
                batch: 4,
                ..Config::default()
            },
            atomic.clone(),
            true,
        ),
        (
            Config {
                schedules: 1_000,
                first_seed: 70_000,
                batch: 4,
                sweep_entities: true,
                sweep_pct: 6,
                ..Config::default()
            },
            harness::memory_backend(),
            false,
        ),
        (
            Config {
                schedules: 1_000,
                first_seed: 90_000,
                batch: 4,
                blobs: Some(harness::memory_blobs()),
                ..Config::default()
            },
            atomic,
            // Claim-checked hops go one at a time: no two members share.
            false,
        ),
    ];
    for (config, backend, shares) in runs {
        let config = config.from_env();
        let report = harness::run(&config, &backend).await;
        assert_clean(&report);
        assert!(
            report.batched > config.schedules,
            "deliveries were committed in batches: {report}"
        );
        assert_eq!(
            report.shared_consumes > 0,
            shares,
            "tokens consumed from a shared holder in one write: {report}"
        );
    }
}

/// Like [`catches`], on a store with `put_all` (the paths those mutants
/// break need it), with workers taking up to `batch` deliveries.
async fn catches_with_put_all(mutant: Mutant, batch: usize, expected: ViolationKind) {
    let config = Config {
        schedules: 10_000,
        batch,
        mutant: Some(mutant),
        stop_on: vec![expected],
        ..Config::default()
    };
    let backend =
        harness::memory_backend_over(|| Arc::new(MemoryStore::new().atomic_multi_key(true)));
    let report = harness::run(&config, &backend).await;
    println!("{mutant:?}: {report}");
    assert!(report.found(expected), "{report}");
}

#[tokio::test(flavor = "current_thread")]
async fn catches_a_batch_that_shares_keys() {
    catches_with_put_all(Mutant::BatchSharedKeys, 4, ViolationKind::Lost).await;
}

#[tokio::test(flavor = "current_thread")]
async fn catches_a_batch_that_writes_a_shared_holder_once_per_member() {
    catches_with_put_all(Mutant::BatchHolderPerMember, 4, ViolationKind::Duplicated).await;
}

#[tokio::test(flavor = "current_thread")]
async fn catches_an_entry_remembered_before_it_was_sent() {
    catches_with_put_all(Mutant::LeaveUnsent, 1, ViolationKind::Lost).await;
}

#[tokio::test(flavor = "current_thread")]
async fn catches_an_entry_remembered_before_its_token_was_consumed() {
    // A store without `put_all`: the worker consumes the token itself.
    catches(
        Mutant::LeaveUnconsumed,
        &[ViolationKind::Duplicated, ViolationKind::LeftoverToken],
    )
    .await;
}

#[tokio::test(flavor = "current_thread")]
async fn catches_a_group_commit_that_trusts_a_failed_write() {
    catches_with_put_all(Mutant::GroupTrustsFailedWrite, 1, ViolationKind::Lost).await;
    // Where a group is one transaction of records and messages: neither
    // was written, and the sends return `Ok`.
    let config = Config {
        schedules: 10_000,
        mutant: Some(Mutant::GroupTrustsFailedWrite),
        stop_on: vec![ViolationKind::Lost],
        ..Config::default()
    };
    let report = harness::run(&config, &harness::memory_colocated_backend()).await;
    println!("colocated: {report}");
    assert!(report.found(ViolationKind::Lost), "{report}");
}

#[tokio::test(flavor = "current_thread")]
async fn catches_consumes_grouped_on_trust_of_a_failed_write() {
    catches_with_put_all(
        Mutant::ConsumeGroupTrustsFailedWrite,
        1,
        ViolationKind::Lost,
    )
    .await;
}

#[tokio::test(flavor = "current_thread")]
async fn catches_a_batch_that_keeps_a_holder_it_wrote_as_it_read_it() {
    catches_with_put_all(Mutant::BatchKeepsHolderAsRead, 4, ViolationKind::Duplicated).await;
}

/// A queue whose receive failed may still hold messages. The harness must
/// drain on until every queue has answered, not count a failed receive as
/// an empty queue and check while messages are still queued (which would
/// report them lost). Here every other receive fails, also after the fault
/// window, so schedules reach their end with failing receives. (Taking a
/// failed receive for "empty" loses 8 of these 1,000 schedules.)
#[tokio::test(flavor = "current_thread")]
async fn receives_that_fail_are_not_taken_for_empty_queues() {
    let made: Arc<Mutex<Vec<Arc<FaultyTransport>>>> = Arc::default();
    let kept = made.clone();
    let backend: harness::BackendFactory = Arc::new(move |env: harness::ScheduleEnv| {
        let transport = Arc::new(FaultyTransport::new(
            Arc::new(harness::memory_transport(&env)),
            TransportFaults {
                receive_failed_ppm: 500_000,
                ..TransportFaults::default()
            },
            env.random.clone(),
        ));
        kept.lock().expect("not poisoned").push(transport.clone());
        Box::pin(async move {
            harness::Backend {
                store: Arc::new(MemoryStore::new()),
                transport,
                namespace: String::new(),
                colocated: None,
            }
        })
    });
    let config = Config {
        schedules: 1_000,
        first_seed: 170_000,
        ..Config::default()
    }
    .from_env();
    let report = harness::run(&config, &backend).await;
    assert_clean(&report);
    let failed: u64 = made
        .lock()
        .expect("not poisoned")
        .iter()
        .map(|t| t.injected())
        .sum();
    assert!(failed > config.schedules, "receives failed: {failed}");
}
