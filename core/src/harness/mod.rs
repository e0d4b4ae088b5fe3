//! The seeded fault-injection harness.
//!
//! Each *schedule* runs the [`workload`] on fresh endpoints over a backend,
//! while a seeded scheduler interleaves workers one protocol step at a time
//! and injects faults: crashes at any step, stale workers (a lease expires
//! while its worker is paused, so a second copy runs alongside), duplicated
//! and reordered deliveries, sweeps racing workers, transient store and
//! transport errors, writes that commit but report failure. Then it drains to
//! quiescence and checks, per schedule:
//!
//! - every logical effect applied exactly once (0 lost, 0 duplicated);
//! - no ghost message: every message sent was in a committed outbox entry;
//! - consistent output: every copy of a message has the committed bytes;
//! - entity records clean without help from the sweeper, and after the
//!   final intent sweep no `OutboxEntry` and no `DedupToken` anywhere;
//! - nothing error-queued.
//!
//! A failing schedule is reported with its seed; rerun it alone with
//! `EXACTLY_SEED=<seed>`.

mod calls;
mod gate;
mod recorder;
mod schedule;
pub mod workload;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use crate::colocated::Colocated;
use crate::env::{ManualClock, Random};
use crate::fault::{StoreFaults, TransportFaults};
use crate::memory::{MemoryColocated, MemoryStore, MemoryTransport};
use crate::protocol::Mutant;
use crate::store::Store;
use crate::transport::Transport;

pub use calls::{CallsUnderTest, Charge, ChargeLedger, FakePaymentApi};
pub use workload::Workload;

/// The store and transport one schedule runs on.
#[derive(Clone, Debug)]
pub struct Backend {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The transport.
    pub transport: Arc<dyn Transport>,
    /// Prefix for endpoint and queue names, so schedules sharing one
    /// database do not see each other (e.g. `s42x`). No `/`.
    pub namespace: String,
    /// The store's and transport's one-transaction commit, where the queue
    /// shares the store's database: endpoints and sender commit through it.
    pub colocated: Option<Arc<dyn Colocated>>,
}

/// What a backend factory gets to build one schedule's backend.
#[derive(Clone, Debug)]
pub struct ScheduleEnv {
    /// The schedule's seed.
    pub seed: u64,
    /// The schedule's clock.
    pub clock: Arc<ManualClock>,
    /// The schedule's randomness (e.g. for a reordering transport).
    pub random: Arc<dyn Random>,
}

/// Builds a fresh backend for a schedule.
pub type BackendFactory = Arc<dyn Fn(ScheduleEnv) -> BoxFuture<'static, Backend> + Send + Sync>;

/// In-memory store and reordering in-memory transport, fresh per schedule.
pub fn memory_backend() -> BackendFactory {
    memory_backend_over(|| Arc::new(MemoryStore::new()))
}

/// A fresh store from `store` and the reordering in-memory transport, per
/// schedule.
pub fn memory_backend_over(
    store: impl Fn() -> Arc<dyn Store> + Send + Sync + 'static,
) -> BackendFactory {
    let store = Arc::new(store);
    Arc::new(move |env: ScheduleEnv| {
        let store = store();
        Box::pin(async move {
            Backend {
                store,
                transport: Arc::new(memory_transport(&env)),
                namespace: String::new(),
                colocated: None,
            }
        })
    })
}

/// The schedule's in-memory transport: on its clock, delivering in random
/// order, with leases that never run out on their own (the harness expires
/// them).
pub fn memory_transport(env: &ScheduleEnv) -> MemoryTransport {
    MemoryTransport::with_clock(env.clock.clone())
        .reordering(env.random.clone())
        .visibility_timeout(std::time::Duration::from_secs(1 << 30))
}

/// In-memory store (with `put_all`) and reordering in-memory transport,
/// fresh per schedule, committing through [`MemoryColocated`]: commits,
/// their sends and acks as one step.
pub fn memory_colocated_backend() -> BackendFactory {
    memory_colocated_backend_with(|store, transport| {
        Arc::new(MemoryColocated::new(store, transport))
    })
}

/// Like [`memory_colocated_backend`], committing through the [`Colocated`]
/// that `unit` makes of the schedule's store and transport (the harness's
/// own tests pass broken ones).
pub fn memory_colocated_backend_with(
    unit: fn(Arc<MemoryStore>, Arc<MemoryTransport>) -> Arc<dyn Colocated>,
) -> BackendFactory {
    Arc::new(move |env: ScheduleEnv| {
        Box::pin(async move {
            let store = Arc::new(MemoryStore::new().atomic_multi_key(true));
            let transport = Arc::new(memory_transport(&env));
            Backend {
                colocated: Some(unit(store.clone(), transport.clone())),
                store,
                transport,
                namespace: String::new(),
            }
        })
    })
}

/// Builds a fresh blob store for a schedule.
pub type BlobsFactory =
    Arc<dyn Fn(ScheduleEnv) -> BoxFuture<'static, Arc<dyn crate::blob::BlobStore>> + Send + Sync>;

/// An in-memory blob store per schedule, on the schedule's clock.
pub fn memory_blobs() -> BlobsFactory {
    Arc::new(|env: ScheduleEnv| {
        Box::pin(async move {
            let blobs: Arc<dyn crate::blob::BlobStore> =
                Arc::new(crate::blob::MemoryBlobStore::with_clock(env.clock));
            blobs
        })
    })
}

/// Builds a fresh third party for a schedule.
pub type CallsFactory =
    Arc<dyn Fn(ScheduleEnv) -> BoxFuture<'static, CallsUnderTest> + Send + Sync>;

/// An in-process payment provider per schedule that drops responses and
/// answers 5xx (`fault_ppm` each way).
pub fn fake_payments(fault_ppm: u32) -> CallsFactory {
    Arc::new(move |env: ScheduleEnv| {
        Box::pin(async move { FakePaymentApi::new(env.random, fault_ppm).under_test() })
    })
}

/// Like [`fake_payments`], but the provider ignores idempotency keys.
pub fn fake_payments_ignoring_keys(fault_ppm: u32) -> CallsFactory {
    Arc::new(move |env: ScheduleEnv| {
        Box::pin(async move {
            FakePaymentApi::new(env.random, fault_ppm)
                .ignoring_keys()
                .under_test()
        })
    })
}

/// Fault rates and the schedule shape.
#[derive(Clone)]
pub struct Config {
    /// Number of schedules.
    pub schedules: u64,
    /// Seed of the first schedule; schedule i uses `first_seed + i`.
    pub first_seed: u64,
    /// The messages to push through.
    pub workload: Workload,
    /// Scheduler ticks with faults before draining.
    pub fault_ticks: u32,
    /// Most workers alive at once.
    pub max_workers: usize,
    /// Most deliveries a worker receives at once; more than one are handled
    /// as a batch (`Endpoint::handle_batch`).
    pub batch: usize,
    /// Per-tick chances, in percent.
    pub crash_pct: u32,
    /// Chance per tick that a live worker's lease expires (stale worker).
    pub stale_pct: u32,
    /// Chance per tick of re-sending a copy of an already-sent message.
    pub duplicate_pct: u32,
    /// Chance per tick of starting a sweeper worker.
    pub sweep_pct: u32,
    /// Whether that sweeper also sweeps entity records (racing the workers)
    /// or only intent records. Off, the check that entity records end clean
    /// shows the protocol cleans up after itself without the sweeper's help.
    pub sweep_entities: bool,
    /// Store faults during the fault phase.
    pub store_faults: StoreFaults,
    /// Transport faults during the fault phase.
    pub transport_faults: TransportFaults,
    /// A third party the workload charges at the start of each chain.
    pub calls: Option<CallsFactory>,
    /// A blob store: every hop writes an invoice blob whose bytes differ per
    /// attempt, and every hop message is claim-checked.
    pub blobs: Option<BlobsFactory>,
    /// A deliberately broken protocol variant.
    pub mutant: Option<Mutant>,
    /// Stop as soon as a schedule breaks one of these invariants (used by
    /// the tests that show each mutant is caught).
    pub stop_on: Vec<ViolationKind>,
    /// How long a last look at every queue waits before a schedule counts
    /// as quiescent and is checked. Zero (the default) for in-process
    /// transports; a real broker may hand a requeued message back a moment
    /// after a receive found its queue empty, and such a message is not
    /// lost (`Report::late_deliveries` counts them).
    pub quiescence_wait: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            schedules: 1_000,
            first_seed: 1,
            workload: Workload::default(),
            fault_ticks: 300,
            max_workers: 4,
            batch: 1,
            crash_pct: 3,
            stale_pct: 4,
            duplicate_pct: 3,
            sweep_pct: 2,
            sweep_entities: false,
            store_faults: StoreFaults {
                unavailable_ppm: 10_000,
                lost_ack_ppm: 10_000,
                spurious_conflict_ppm: 10_000,
            },
            transport_faults: TransportFaults {
                unavailable_ppm: 10_000,
                duplicate_ppm: 20_000,
                lost_ack_ppm: 10_000,
                // The harness receives on the raw transport: its own
                // receives fail only where a backend's transport does.
                receive_failed_ppm: 0,
            },
            calls: None,
            blobs: None,
            mutant: None,
            stop_on: Vec::new(),
            quiescence_wait: Duration::ZERO,
        }
    }
}

impl Config {
    /// Applies `EXACTLY_SEED` (run one schedule) and `EXACTLY_SCHEDULES`.
    pub fn from_env(mut self) -> Self {
        let var = |name| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
        if let Some(seed) = var("EXACTLY_SEED") {
            self.first_seed = seed;
            self.schedules = 1;
        } else if let Some(n) = var("EXACTLY_SCHEDULES") {
            self.schedules = n;
        }
        self
    }
}

/// What kind of invariant a schedule broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ViolationKind {
    /// An effect never applied.
    Lost,
    /// An effect applied more than once.
    Duplicated,
    /// A message sent that no committed entry holds.
    Ghost,
    /// A copy of a message whose bytes differ from the committed ones.
    InconsistentOutput,
    /// An outbox entry left at quiescence.
    LeftoverOutbox,
    /// A token left at quiescence.
    LeftoverToken,
    /// A message in the error queue.
    ErrorQueued,
    /// The drain did not reach quiescence.
    NoProgress,
    /// A reference to a blob that does not exist (or not with its bytes).
    DanglingBlob,
    /// A blob, or a registration, nothing references after collection.
    OrphanBlob,
}

/// One broken invariant in one schedule.
#[derive(Clone, Debug)]
pub struct Violation {
    /// The schedule's seed.
    pub seed: u64,
    /// Which invariant.
    pub kind: ViolationKind,
    /// Details.
    pub detail: String,
}

/// Faults injected across all schedules.
#[derive(Clone, Copy, Debug, Default)]
#[allow(missing_docs)]
pub struct FaultCounts {
    pub crashes: u64,
    pub stale_workers: u64,
    pub duplicate_deliveries: u64,
    pub sweeps: u64,
    pub store_faults: u64,
    pub transport_faults: u64,
}

impl FaultCounts {
    /// Sum of all injected faults.
    pub fn total(&self) -> u64 {
        self.crashes
            + self.stale_workers
            + self.duplicate_deliveries
            + self.store_faults
            + self.transport_faults
    }
}

/// The result of a harness run.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Schedules run.
    pub schedules: u64,
    /// Worker steps taken.
    pub steps: u64,
    /// Faults injected.
    pub faults: FaultCounts,
    /// Lost effects counted.
    pub lost: u64,
    /// Duplicated effects counted.
    pub duplicated: u64,
    /// Commits that consumed the incoming token in the same atomic write
    /// (`Store::put_all`; 0 on stores without it).
    pub one_write_commits: u64,
    /// Deliveries committed in a batch with others (`Config::batch`).
    pub batched: u64,
    /// Deliveries whose token was consumed in one write of its holder with
    /// others': members of one batch, or commits of single deliveries that
    /// met at the holder (grouped consumes).
    pub shared_consumes: u64,
    /// Intent records the client's `Sender` created together with other
    /// sends' in one write (group commit).
    pub grouped_intents: u64,
    /// Commits that sent or acked in the same transaction
    /// ([`Backend::colocated`]).
    pub colocated_commits: u64,
    /// Deliveries only the last look at the queues found
    /// (`Config::quiescence_wait`): the queue had looked empty.
    pub late_deliveries: u64,
    /// Every violation found.
    pub violations: Vec<Violation>,
}

impl Report {
    /// Whether any schedule broke `kind`.
    pub fn found(&self, kind: ViolationKind) -> bool {
        self.violations.iter().any(|v| v.kind == kind)
    }

    /// The first violating seed.
    pub fn first_failing_seed(&self) -> Option<u64> {
        self.violations.first().map(|v| v.seed)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.faults;
        writeln!(
            f,
            "{} schedules, {} steps, {} faults injected (crashes {}, stale workers {}, duplicate deliveries {}, store {}, transport {}; sweeps {})",
            self.schedules,
            self.steps,
            c.total(),
            c.crashes,
            c.stale_workers,
            c.duplicate_deliveries,
            c.store_faults,
            c.transport_faults,
            c.sweeps
        )?;
        write!(
            f,
            "lost {}, duplicated {}, violations {}, one-write commits {}, batched {}, shared consumes {}, grouped intents {}, colocated commits {}",
            self.lost,
            self.duplicated,
            self.violations.len(),
            self.one_write_commits,
            self.batched,
            self.shared_consumes,
            self.grouped_intents,
            self.colocated_commits
        )?;
        if self.late_deliveries > 0 {
            write!(f, ", late deliveries {}", self.late_deliveries)?;
        }
        if let Some(v) = self.violations.first() {
            write!(
                f,
                "\nfirst violation: {:?} in seed {}: {}",
                v.kind, v.seed, v.detail
            )?;
            // The rest of that schedule's, which often explain the first.
            for other in self.violations[1..]
                .iter()
                .filter(|o| o.seed == v.seed)
                .take(4)
            {
                write!(f, "\n  also {:?}: {}", other.kind, other.detail)?;
            }
            write!(f, "\nrerun it with EXACTLY_SEED={}", v.seed)?;
        }
        Ok(())
    }
}

/// Runs `config.schedules` schedules on backends from `backend`.
pub async fn run(config: &Config, backend: &BackendFactory) -> Report {
    let mut report = Report::default();
    for i in 0..config.schedules {
        let seed = config.first_seed + i;
        schedule::run_one(config, backend, seed, &mut report).await;
        report.schedules += 1;
        if config.stop_on.iter().any(|k| report.found(*k)) {
            break;
        }
    }
    report
}
