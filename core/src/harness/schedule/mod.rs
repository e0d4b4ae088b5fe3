//! One schedule: set up ([`setup`]), interleave with faults, drain, check
//! ([`check`]).

mod check;
mod setup;

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::blob::BlobStore;
use crate::endpoint::Endpoint;
use crate::env::{Env, ManualClock, Random, SeededRandom};
use crate::fault::{FaultyStore, FaultyTransport};
use crate::harness::calls::CallsUnderTest;
use crate::harness::gate::{Advanced, Gate, Worker, advance};
use crate::harness::recorder::{SharedLog, lock};
use crate::harness::workload::Hop;
use crate::harness::{BackendFactory, Config, Report, ScheduleEnv, Violation, ViolationKind};
use crate::message::Envelope;
use crate::protocol::Sweeper;
use crate::sender::Sender;
use crate::store::Store;
use crate::transport::{Outgoing, Transport};

/// Ticks the drain may take before the schedule counts as stuck.
const DRAIN_LIMIT: u32 = 50_000;

struct World {
    endpoints: Vec<Endpoint>,
    sender: Sender,
    sweeper: Sweeper,
    intent_sweeper: Sweeper,
    /// The backend without faults or recording: the "broker" itself.
    raw_transport: Arc<dyn Transport>,
    raw_store: Arc<dyn Store>,
    faulty_store: Arc<FaultyStore>,
    faulty_transport: Arc<FaultyTransport>,
    log: SharedLog,
    error_queue: String,
    intent_prefix: String,
    calls: Option<CallsUnderTest>,
    blobs: Option<Arc<dyn BlobStore>>,
    mutant: Option<crate::protocol::Mutant>,
}

pub(super) async fn run_one(
    config: &Config,
    factory: &BackendFactory,
    seed: u64,
    report: &mut Report,
) {
    let clock = Arc::new(ManualClock::starting_at(1_700_000_000_000));
    let fault_random: Arc<dyn Random> =
        Arc::new(SeededRandom::new(seed.wrapping_mul(31).wrapping_add(7)));
    // What every factory of the schedule gets: its seed, clock and faults.
    let schedule_env = || ScheduleEnv {
        seed,
        clock: clock.clone(),
        random: fault_random.clone(),
    };
    let backend = factory(schedule_env()).await;
    let env = Env::seeded(seed, clock.clone());
    let calls = match &config.calls {
        Some(factory) => Some(factory(schedule_env()).await),
        None => None,
    };
    let blobs = match &config.blobs {
        Some(factory) => Some(factory(schedule_env()).await),
        None => None,
    };
    let world = World::new(config, &backend, &env, fault_random, calls, blobs);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut seeds: Vec<Envelope> = (0..config.workload.chains)
        .map(|chain| {
            let (endpoint, _) = config.workload.route(chain, 0);
            let hop = Hop {
                chain,
                hop: 0,
                nonce: "seed".into(),
                padding: String::new(),
            };
            world
                .sender
                .envelope(env.new_id(), world.endpoints[endpoint].name(), &hop)
                .expect("harness names are valid")
        })
        .collect();
    let mut workers: Vec<Worker> = Vec::new();
    let mut faults_on = true;
    let mut tick: u32 = 0;

    loop {
        tick += 1;
        clock.advance(Duration::from_millis(1));
        if faults_on && tick > config.fault_ticks {
            faults_on = false;
            world.faulty_store.set_enabled(false);
            world.faulty_transport.set_enabled(false);
        }
        if tick > config.fault_ticks + DRAIN_LIMIT {
            report.violations.push(Violation {
                seed,
                kind: ViolationKind::NoProgress,
                detail: format!(
                    "{} workers still running after the drain limit",
                    workers.len()
                ),
            });
            return;
        }
        if faults_on {
            world
                .inject(config, &mut rng, &mut workers, &mut seeds, report)
                .await;
        }
        let advance_one =
            !workers.is_empty() && (workers.len() >= config.max_workers || rng.random_bool(0.6));
        if advance_one {
            let i = rng.random_range(0..workers.len());
            report.steps += 1;
            if let Advanced::Done(retry) = advance(&mut workers[i]).await {
                let done = workers.swap_remove(i);
                if retry {
                    seeds.extend(done.resend);
                }
            }
            continue;
        }
        if let Some(envelope) = pop_random(&mut rng, &mut seeds) {
            // With batches, a client sends what it has together.
            let mut batch = vec![envelope];
            while batch.len() < config.batch
                && let Some(more) = pop_random(&mut rng, &mut seeds)
            {
                batch.push(more);
            }
            workers.push(world.send_worker(batch));
            continue;
        }
        let unknown = match world
            .receive_worker(&mut rng, config.batch, Duration::ZERO)
            .await
        {
            Received::Worker(worker) => {
                workers.push(worker);
                continue;
            }
            Received::Nothing => false,
            Received::Failed => true,
        };
        // A queue whose receive failed is not known to be empty: no
        // quiescence until every queue has answered "nothing".
        if !workers.is_empty() || faults_on || unknown {
            continue;
        }
        if !config.quiescence_wait.is_zero() {
            match world
                .receive_worker(&mut rng, config.batch, config.quiescence_wait)
                .await
            {
                Received::Worker(worker) => {
                    report.late_deliveries += worker.receipts.len() as u64;
                    workers.push(worker);
                    continue;
                }
                Received::Failed => continue,
                Received::Nothing => {}
            }
        }
        // Quiescent: queues empty, nobody working. Intents whose sender
        // crashed between commit and dispatch are only found by the sweeper.
        match world.intent_sweeper.sweep_once().await {
            Ok(0) => break,
            Ok(_) => report.faults.sweeps += 1,
            Err(_) => continue,
        }
    }
    report.faults.store_faults += world.faulty_store.injected();
    report.faults.transport_faults += world.faulty_transport.injected();
    world.check(config, seed, report).await;
}

/// What a look at the endpoints' queues found.
enum Received {
    /// Deliveries, handed to a new worker.
    Worker(Worker),
    /// Every queue answered, with nothing.
    Nothing,
    /// Nothing received, and some queue's receive failed: it may hold
    /// messages.
    Failed,
}

fn pop_random<T>(rng: &mut ChaCha8Rng, items: &mut Vec<T>) -> Option<T> {
    if items.is_empty() {
        return None;
    }
    let i = rng.random_range(0..items.len());
    Some(items.swap_remove(i))
}

impl World {
    fn send_worker(&self, envelopes: Vec<Envelope>) -> Worker {
        let gate = Arc::new(Gate::default());
        let (sender, g, e) = (self.sender.clone(), gate.clone(), envelopes.clone());
        // One envelope goes the way `send_envelope` does.
        let future = async move { sender.send_batch(e, Some(g.as_ref())).await.is_err() };
        Worker {
            future: future.boxed(),
            gate,
            receipts: Vec::new(),
            resend: envelopes,
        }
    }

    /// A worker for what one endpoint's queue holds, trying them all from
    /// a random one.
    async fn receive_worker(&self, rng: &mut ChaCha8Rng, batch: usize, wait: Duration) -> Received {
        let first = rng.random_range(0..self.endpoints.len());
        let mut failed = false;
        for i in 0..self.endpoints.len() {
            let endpoint = self.endpoints[(first + i) % self.endpoints.len()].clone();
            let Ok(got) = self
                .raw_transport
                .receive(endpoint.name(), batch, wait)
                .await
            else {
                failed = true;
                continue;
            };
            if got.is_empty() {
                continue;
            }
            {
                let mut log = lock(&self.log);
                for delivery in &got {
                    *log.received.entry(delivery.envelope.id).or_default() += 1;
                }
            }
            let gate = Arc::new(Gate::default());
            let receipts = got.iter().map(|d| d.receipt.clone()).collect();
            let g = gate.clone();
            return Received::Worker(Worker {
                future: async move {
                    if got.len() == 1 {
                        for delivery in got {
                            endpoint.handle_delivery_probed(delivery, g.as_ref()).await;
                        }
                    } else {
                        endpoint.handle_batch_probed(got, g.as_ref()).await;
                    }
                    false
                }
                .boxed(),
                gate,
                receipts,
                resend: Vec::new(),
            });
        }
        if failed {
            Received::Failed
        } else {
            Received::Nothing
        }
    }

    async fn inject(
        &self,
        config: &Config,
        rng: &mut ChaCha8Rng,
        workers: &mut Vec<Worker>,
        seeds: &mut Vec<Envelope>,
        report: &mut Report,
    ) {
        let roll = rng.random_range(0..100);
        let mut threshold = config.crash_pct;
        if roll < threshold {
            // Crash: the worker stops at the step it is parked at, as if
            // killed. The broker notices and redelivers its message; a
            // crashed client retries its send.
            if let Some(worker) = pop_random(rng, workers) {
                report.faults.crashes += 1;
                for receipt in &worker.receipts {
                    let _ = self.raw_transport.nack(receipt, Duration::ZERO).await;
                }
                seeds.extend(worker.resend);
            }
            return;
        }
        threshold += config.stale_pct;
        if roll < threshold {
            // Stale worker: its lease expires while it is paused, and a
            // second copy becomes deliverable while it still runs.
            let leased: Vec<usize> = (0..workers.len())
                .filter(|i| !workers[*i].receipts.is_empty())
                .collect();
            if !leased.is_empty() {
                let i = leased[rng.random_range(0..leased.len())];
                report.faults.stale_workers += 1;
                for receipt in std::mem::take(&mut workers[i].receipts) {
                    let _ = self.raw_transport.nack(&receipt, Duration::ZERO).await;
                }
            }
            return;
        }
        threshold += config.duplicate_pct;
        if roll < threshold {
            let copy = {
                let log = lock(&self.log);
                (!log.sent.is_empty())
                    .then(|| log.sent[rng.random_range(0..log.sent.len())].clone())
            };
            if let Some(copy) = copy
                && copy.queue != self.error_queue
            {
                report.faults.duplicate_deliveries += 1;
                let _ = self
                    .raw_transport
                    .send(vec![Outgoing {
                        delay: Duration::ZERO,
                        ..copy
                    }])
                    .await;
            }
            return;
        }
        threshold += config.sweep_pct;
        if roll < threshold && workers.len() < config.max_workers {
            report.faults.sweeps += 1;
            let gate = Arc::new(Gate::default());
            let (sweeper, g) = (self.sweeper.clone(), gate.clone());
            workers.push(Worker {
                future: async move {
                    let _ = sweeper.sweep_with(Some(g.as_ref())).await;
                    false
                }
                .boxed(),
                gate,
                receipts: Vec::new(),
                resend: Vec::new(),
            });
        }
    }
}
