//! One schedule: set up, interleave with faults, drain, check.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::calls::CallsUnderTest;
use super::gate::{Advanced, Gate, Worker, advance};
use super::recorder::{RecordingColocated, RecordingStore, RecordingTransport, SharedLog, lock};
use super::workload::{Applied, CLAIM_THRESHOLD, FanHandler, Fanned, Hop, HopHandler, PaidHandler};
use super::{BackendFactory, Config, Report, ScheduleEnv, Violation, ViolationKind};
use crate::blob::{BlobCollector, BlobStore};
use crate::codec::{CodecExt, Json};
use crate::colocated::Colocated;
use crate::context::Routes;
use crate::endpoint::{Endpoint, RetryPolicy};
use crate::env::{Env, ManualClock, Random, SeededRandom};
use crate::fault::{FaultyColocated, FaultyStore, FaultyTransport};
use crate::message::{Envelope, MessageId};
use crate::protocol::{Mutant, Sweeper};
use crate::record::{ENTITY_PREFIX, EntityRecord, INTENT_PREFIX, OutboxEntry};
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
    let backend = factory(ScheduleEnv {
        seed,
        clock: clock.clone(),
        random: fault_random.clone(),
    })
    .await;
    let env = Env::seeded(seed, clock.clone());
    let calls = match &config.calls {
        Some(factory) => Some(
            factory(ScheduleEnv {
                seed,
                clock: clock.clone(),
                random: fault_random.clone(),
            })
            .await,
        ),
        None => None,
    };
    let blobs = match &config.blobs {
        Some(factory) => Some(
            factory(ScheduleEnv {
                seed,
                clock: clock.clone(),
                random: fault_random.clone(),
            })
            .await,
        ),
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
    fn new(
        config: &Config,
        backend: &super::Backend,
        env: &Env,
        fault_random: Arc<dyn Random>,
        calls: Option<CallsUnderTest>,
        blobs: Option<Arc<dyn BlobStore>>,
    ) -> Self {
        let executor = calls.as_ref().map(|c| c.executor.clone());
        let log = SharedLog::default();
        let ns = &backend.namespace;
        let recording_store = Arc::new(RecordingStore {
            inner: backend.store.clone(),
            log: log.clone(),
        });
        let faulty_store = Arc::new(FaultyStore::new(
            recording_store.clone(),
            config.store_faults,
            fault_random.clone(),
        ));
        let colocated = backend.colocated.clone().map(|inner| {
            let recording = Arc::new(RecordingColocated {
                inner,
                store: recording_store,
            });
            Arc::new(FaultyColocated::new(recording, faulty_store.clone())) as Arc<dyn Colocated>
        });
        let recording_transport = Arc::new(RecordingTransport {
            inner: backend.transport.clone(),
            log: log.clone(),
        });
        let faulty_transport = Arc::new(FaultyTransport::new(
            recording_transport,
            config.transport_faults,
            fault_random,
        ));
        let store: Arc<dyn Store> = faulty_store.clone();
        let transport: Arc<dyn Transport> = faulty_transport.clone();
        let names = [format!("{ns}a"), format!("{ns}b")];
        let error_queue = format!("{ns}error");
        let routes = Arc::new(
            Routes::new()
                .subscribe::<Fanned>(names[0].clone())
                .subscribe::<Fanned>(names[1].clone()),
        );
        let mut sender = Sender::new(format!("{ns}client"), store.clone(), transport.clone())
            .expect("harness names are valid")
            .env(env.clone())
            .group_commit_above(Duration::ZERO)
            .mutant(config.mutant);
        if let Some(unit) = &colocated {
            sender = sender.colocated(unit.clone());
        }
        // One memory of sent entries for the whole "process": the client,
        // both endpoints and the in-run sweeper.
        let memory = sender.dispatched_memory();
        let endpoints: Vec<Endpoint> = names
            .iter()
            .map(|name| {
                let builder = Endpoint::builder(name.clone(), store.clone(), transport.clone())
                    .handler(HopHandler {
                        workload: config.workload,
                        endpoints: names.clone(),
                        charge: calls.as_ref().map(|c| (c.url.clone(), c.rpc)),
                        blobs: blobs.is_some(),
                    })
                    .handler(FanHandler {
                        workload: config.workload,
                    })
                    .handler(PaidHandler);
                let builder = match &executor {
                    Some(e) => builder.calls(e.clone()),
                    None => builder,
                };
                let builder = match &blobs {
                    Some(b) => builder.blobs(b.clone()).claim_threshold(CLAIM_THRESHOLD),
                    None => builder,
                };
                let builder = match &colocated {
                    Some(unit) => builder.colocated(unit.clone()),
                    None => builder,
                };
                builder
                    .routes(routes.clone())
                    .env(env.clone())
                    .retry(RetryPolicy::no_delays())
                    .error_queue(error_queue.clone())
                    .sweep(Duration::ZERO, Duration::ZERO)
                    .mutant(config.mutant)
                    .dispatched(memory.clone())
                    .build()
                    .expect("harness endpoint settings are valid")
            })
            .collect();
        let intent_prefix = format!("{INTENT_PREFIX}{ns}client/");
        let intent_sweeper = Sweeper::new(backend.store.clone(), backend.transport.clone())
            .prefix(intent_prefix.clone())
            .min_age(Duration::ZERO)
            .env(env.clone());
        // No grace at all, not even for entries left done: the model's
        // Sweeper may remove a left entry at any moment.
        let mut sweeper = Sweeper::new(store, transport)
            .min_age(Duration::ZERO)
            .left_age(Duration::ZERO)
            .env(env.clone())
            .calls(executor)
            .blobs(blobs.clone())
            .with_stats(Arc::default(), config.mutant)
            .prefix(intent_prefix.clone())
            // Shares the memory of sent entries (removed without a resend);
            // the final intent sweep has none (resends them).
            .dispatched(memory);
        if config.sweep_entities {
            for name in &names {
                sweeper = sweeper.prefix(format!("{ENTITY_PREFIX}{name}/"));
            }
        }
        Self {
            endpoints,
            sender,
            sweeper,
            intent_sweeper,
            raw_transport: backend.transport.clone(),
            raw_store: backend.store.clone(),
            faulty_store,
            faulty_transport,
            log,
            error_queue,
            intent_prefix,
            calls,
            blobs,
            mutant: config.mutant,
        }
    }

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

    /// Blob invariants at quiescence, after one collection: every
    /// referenced blob exists with its committed bytes (NoDanglingReference,
    /// PublishedFromCommittedAttempt), nothing unreferenced is left (orphans
    /// collected), and no claim-check body outlives its message.
    async fn check_blobs(&self, seed: u64, report: &mut Report) {
        let Some(blobs) = &self.blobs else { return };
        let mut violate =
            |kind, detail: String| report.violations.push(Violation { seed, kind, detail });
        let collector = BlobCollector::new(self.raw_store.clone(), blobs.clone())
            .grace(Duration::ZERO)
            // Blob stores stamp writes with their own clock (real files with
            // the real one); with no grace, "older than now" is all that
            // matters, and every blob is.
            .env(Env::system())
            .mutant(self.mutant);
        if let Err(e) = collector.collect_once().await {
            violate(ViolationKind::OrphanBlob, format!("collection failed: {e}"));
            return;
        }
        let mut referenced = std::collections::BTreeSet::new();
        let mut in_state = std::collections::BTreeSet::new();
        for endpoint in &self.endpoints {
            let prefix = format!("{ENTITY_PREFIX}{}/", endpoint.name());
            for (key, record) in self.records(&prefix).await {
                if !record.blob_attempts.is_empty() {
                    violate(
                        ViolationKind::OrphanBlob,
                        format!("{key} keeps blob registrations after collection"),
                    );
                }
                referenced.extend(record.blobs.iter().cloned());
                let state: Applied = record
                    .state
                    .as_deref()
                    .and_then(|b| Json.decode(b).ok())
                    .unwrap_or_default();
                for invoice in state.invoices {
                    match crate::blob::read(blobs.as_ref(), &invoice).await {
                        Ok(stream) => {
                            if let Err(e) = crate::blob::collect(stream).await {
                                violate(ViolationKind::DanglingBlob, format!("{key}: {e}"));
                            }
                        }
                        Err(e) => violate(ViolationKind::DanglingBlob, format!("{key}: {e}")),
                    }
                    in_state.insert(invoice.key);
                }
            }
        }
        let existing: std::collections::BTreeSet<String> =
            match blobs.list(crate::blob::BLOB_PREFIX).await {
                Ok(list) => list.into_iter().map(|b| b.key).collect(),
                Err(e) => {
                    violate(ViolationKind::OrphanBlob, format!("listing failed: {e}"));
                    return;
                }
            };
        for orphan in existing.difference(&referenced) {
            violate(
                ViolationKind::OrphanBlob,
                format!("{orphan} survived collection unreferenced"),
            );
        }
        for dangling in referenced.difference(&existing) {
            violate(
                ViolationKind::DanglingBlob,
                format!("{dangling} is referenced but missing"),
            );
        }
        for leaked in referenced.difference(&in_state) {
            violate(
                ViolationKind::OrphanBlob,
                format!("{leaked} is published but no state references it"),
            );
        }
    }

    async fn check(&self, config: &Config, seed: u64, report: &mut Report) {
        self.check_blobs(seed, report).await;
        let mut violate =
            |kind, detail: String| report.violations.push(Violation { seed, kind, detail });
        let mut applied: BTreeMap<(usize, String, String), u32> = BTreeMap::new();
        // Workers leave their entries, done, only on the current paths: the
        // older broken variants remove every entry, so any left is stranded.
        let leaves = config.mutant.is_none_or(Mutant::breaks_only_new_paths);
        for (index, endpoint) in self.endpoints.iter().enumerate() {
            let prefix = format!("{ENTITY_PREFIX}{}/", endpoint.name());
            for (key, record) in self.records(&prefix).await {
                let mut pending = 0;
                for entry in &record.outbox {
                    if !(leaves && self.left_done(entry).await) {
                        pending += 1;
                    }
                }
                if pending > 0 {
                    violate(
                        ViolationKind::LeftoverOutbox,
                        format!("{key} holds {pending} unfinished outbox entries at quiescence"),
                    );
                }
                if !record.tokens.is_empty() {
                    let fates = self.fates(record.tokens.iter());
                    violate(
                        ViolationKind::LeftoverToken,
                        format!(
                            "{key} holds {} tokens at quiescence: {fates}",
                            record.tokens.len()
                        ),
                    );
                }
                let state: Applied = record
                    .state
                    .as_deref()
                    .and_then(|b| Json.decode(b).ok())
                    .unwrap_or_default();
                let entity = key[prefix.len()..].to_owned();
                for (effect, n) in state.effects {
                    *applied.entry((index, entity.clone(), effect)).or_default() += n;
                }
            }
        }
        for (key, record) in self.records(&self.intent_prefix).await {
            if !record.is_settled() {
                violate(
                    ViolationKind::LeftoverToken,
                    format!(
                        "intent {key} not settled: {} entries, {} tokens",
                        record.outbox.len(),
                        record.tokens.len()
                    ),
                );
            }
        }
        if let Some(calls) = &self.calls {
            let mut per_chain: BTreeMap<u32, u32> = BTreeMap::new();
            for (_, chain) in (calls.charges)().await {
                *per_chain.entry(chain).or_default() += 1;
            }
            for chain in 0..config.workload.chains {
                match per_chain.get(&chain).copied().unwrap_or(0) {
                    1 => {}
                    0 => {
                        report.lost += 1;
                        violate(
                            ViolationKind::Lost,
                            format!("chain {chain} was never charged"),
                        );
                    }
                    n => {
                        report.duplicated += u64::from(n - 1);
                        violate(
                            ViolationKind::Duplicated,
                            format!("chain {chain} was charged {n} times"),
                        );
                    }
                }
            }
        }
        for expected in config.workload.expected(self.calls.is_some()) {
            let n = applied.remove(&expected).unwrap_or(0);
            if n == 0 {
                report.lost += 1;
                violate(ViolationKind::Lost, format!("{expected:?} never applied"));
            } else if n > 1 {
                report.duplicated += u64::from(n - 1);
                violate(
                    ViolationKind::Duplicated,
                    format!("{expected:?} applied {n} times"),
                );
            }
        }
        for (unexpected, n) in applied {
            report.duplicated += u64::from(n);
            violate(
                ViolationKind::Duplicated,
                format!("{unexpected:?} applied where it does not belong"),
            );
        }
        {
            let log = lock(&self.log);
            report.one_write_commits += log.one_write_commits;
            report.colocated_commits += log.colocated_commits;
            for stats in self.endpoints.iter().map(|e| e.stats().snapshot()) {
                report.batched += stats.batched;
                report.shared_consumes += stats.shared_consumes;
            }
            report.grouped_intents += self.sender.grouped_intents();
            for sent in &log.sent {
                let (id, body) = (sent.envelope.id, &sent.envelope.body);
                match log.committed.get(&id) {
                    None => violate(
                        ViolationKind::Ghost,
                        format!(
                            "{} {id} was sent but never committed",
                            sent.envelope.message_type
                        ),
                    ),
                    Some(expected) if expected != body => violate(
                        ViolationKind::InconsistentOutput,
                        format!("a copy of {id} differs from the committed bytes"),
                    ),
                    Some(_) => {}
                }
            }
        }
        if let Ok(dead) = self
            .raw_transport
            .receive(&self.error_queue, 16, Duration::ZERO)
            .await
        {
            for d in dead {
                let reason = d
                    .envelope
                    .header(crate::message::headers::ERROR_REASON)
                    .unwrap_or("?");
                violate(
                    ViolationKind::ErrorQueued,
                    format!("{} error-queued: {reason}", d.envelope.id),
                );
            }
        }
    }

    /// What became of the messages `ids`: how often each was sent, to
    /// which queue, and received — to tell a transport that lost a message
    /// from a protocol that never sent it.
    fn fates<'a>(&self, ids: impl Iterator<Item = &'a MessageId>) -> String {
        let log = lock(&self.log);
        let fate = |id: &MessageId| {
            let sent: Vec<&str> = log
                .sent
                .iter()
                .filter(|o| o.envelope.id == *id)
                .map(|o| o.queue.as_str())
                .collect();
            let received = log.received.get(id).copied().unwrap_or(0);
            format!(
                "{id} sent {} times {sent:?}, received {received} times",
                sent.len()
            )
        };
        ids.map(fate).collect::<Vec<_>>().join("; ")
    }

    /// Whether `entry` is one a worker left, done (`tla/ExactlyOnce.tla`,
    /// `LeftDone`): nothing but its incoming token to consume, consumed.
    /// Such an entry stays until the record's next commit or the sweeper.
    async fn left_done(&self, entry: &OutboxEntry) -> bool {
        let Some(token) = &entry.incoming_token else {
            return false;
        };
        if !entry.messages.is_empty() || !entry.sends_and_consumes_only() {
            return false;
        }
        match self.raw_store.get(&token.record).await {
            Ok(Some(v)) => EntityRecord::decode(&token.record, &v.value)
                .is_ok_and(|holder| !holder.tokens.contains(&token.id)),
            Ok(None) => true,
            Err(_) => false,
        }
    }

    async fn records(&self, prefix: &str) -> Vec<(String, EntityRecord)> {
        let mut out = Vec::new();
        let Ok(keys) = self.raw_store.list(prefix, None, 10_000).await else {
            return out;
        };
        for key in keys {
            if let Ok(Some(v)) = self.raw_store.get(&key).await
                && let Ok(record) = EntityRecord::decode(&key, &v.value)
            {
                out.push((key, record));
            }
        }
        out
    }
}
