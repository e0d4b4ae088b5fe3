//! The workload: `Bump` messages spread over entities, a handler that
//! increments the entity's counter and, in the chain shape, sends one
//! `Bump` on to a second endpoint (the outbox path); one measured run.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use exactly::{
    Colocated, Context, Endpoint, Guarantee, Handler, HandlerError, Message, Sender, Store,
    Transport,
};
use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::counting_store::{CountingColocated, CountingStore};
use crate::measure::{RunResult, peak_rss_kib, reset_peak_rss};
use crate::observed::Observed;
use crate::producer::{Feed, spawn_producers};

/// A run that makes no progress for this long has lost a message.
const STALL: Duration = Duration::from_secs(60);

/// The one message type. `sent_at_us` is stamped by the producer and copied
/// to the next hop, so latency is measured end to end.
#[derive(Debug, Serialize, Deserialize)]
pub struct Bump {
    pub entity: String,
    pub sent_at_us: u64,
    pub hops_left: u8,
}

impl Message for Bump {
    const TYPE: &'static str = "Bump";
}

/// Messages each first-hop message sends on in the fan-out shape.
pub const FAN_OUT: u64 = 8;

/// Increments a counter; sends the message on while hops are left: to the
/// same entity key on the next endpoint, or with `fan_out` > 1 to that
/// many entities (`{entity}/{j}`), all from this entity's one commit.
struct Counter {
    next: Option<String>,
    fan_out: u64,
}

impl Handler<Bump> for Counter {
    type State = u64;

    fn entity_key(&self, m: &Bump) -> String {
        m.entity.clone()
    }

    async fn handle(&self, n: &mut u64, m: Bump, ctx: &mut Context) -> Result<(), HandlerError> {
        *n += 1;
        let (Some(next), Some(hops_left)) = (&self.next, m.hops_left.checked_sub(1)) else {
            return Ok(());
        };
        if self.fan_out == 1 {
            ctx.send(next, &Bump { hops_left, ..m })?;
            return Ok(());
        }
        for j in 0..self.fan_out {
            let on = Bump {
                entity: format!("{}/{j}", m.entity),
                sent_at_us: m.sent_at_us,
                hops_left,
            };
            ctx.send(next, &on)?;
        }
        Ok(())
    }
}

/// Direct: one hop, nothing sent. Chain: two hops, the first sends one
/// message on. Fan-out: two hops, the first sends [`FAN_OUT`] messages to
/// as many entities of the second endpoint, whose tokens all live in the
/// first hop's entity record (a hot sender).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Direct,
    Chain,
    FanOut,
}

impl Shape {
    /// Endpoints a message passes through.
    pub fn hops(self) -> u64 {
        match self {
            Shape::Direct => 1,
            Shape::Chain | Shape::FanOut => 2,
        }
    }

    /// Messages each first hop sends on to the last.
    pub fn fan_out(self) -> u64 {
        match self {
            Shape::FanOut => FAN_OUT,
            Shape::Direct | Shape::Chain => 1,
        }
    }

    /// Deliveries handled per message fed in, over all hops.
    pub fn deliveries(self) -> u64 {
        match self {
            Shape::Direct => 1,
            Shape::Chain | Shape::FanOut => 1 + self.fan_out(),
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Shape::Direct => "direct",
            Shape::Chain => "2-hop chain",
            Shape::FanOut => "fan-out ×8",
        }
    }
}

pub fn mode_label(mode: Guarantee) -> &'static str {
    match mode {
        Guarantee::ExactlyOnce => "exactly-once",
        Guarantee::AtLeastOnce => "at-least-once",
    }
}

/// One measured run.
#[derive(Clone, Debug)]
pub struct Spec {
    pub mode: Guarantee,
    pub shape: Shape,
    pub messages: u64,
    /// Entities the messages are spread over (1: one hot entity).
    pub entities: u64,
    /// Workers per endpoint.
    pub concurrency: usize,
    /// Messages in flight at most (sent, last hop not yet acked).
    pub window: usize,
    /// Queue every message first, then time the endpoints draining them
    /// (no latency: it would be time spent waiting in the queue).
    pub drain: bool,
    /// Most deliveries a worker handles together.
    pub batch: usize,
    /// Commit, send and ack in one transaction where the backend's queue
    /// shares the store's database (`Fresh::colocated`).
    pub colocated: bool,
    /// The exactly-once producer's `Sender` groups concurrent intent
    /// writes (`Sender::group_commit`).
    pub group_commit: bool,
    /// Producer tasks.
    pub producers: usize,
}

/// A store and transport for one run, fresh, plus whatever keeps them alive.
pub struct Fresh {
    pub store: Arc<dyn Store>,
    pub transport: Arc<dyn Transport>,
    /// The store's and transport's one transaction, on backends whose
    /// queue lives in the store's database (SQLite, PostgreSQL).
    pub colocated: Option<Arc<dyn Colocated>>,
    /// Dropped after the run: a temporary directory, a pool.
    pub _keep: Box<dyn std::any::Any + Send>,
}

/// A name for the next run, no other run's: of this process (a counter)
/// nor of an earlier one (its start time and id), since RabbitMQ, NATS and
/// S3 keep queues and buckets from one invocation to the next.
pub fn run_name() -> String {
    static PROCESS: LazyLock<String> = LazyLock::new(|| {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        format!("{secs:x}-{:x}", std::process::id())
    });
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("{}-{}", *PROCESS, NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Runs `spec` on `fresh`; the queues are named after `run` (see
/// [`run_name`]).
pub async fn run(
    fresh: Fresh,
    spec: &Spec,
    run: &str,
    bar: &ProgressBar,
) -> Result<RunResult, String> {
    let first = format!("bench-{run}-a");
    let last = match spec.shape.hops() {
        1 => first.clone(),
        _ => format!("bench-{run}-b"),
    };
    let window = Arc::new(Semaphore::new(spec.window));
    let observed = Arc::new(Observed::new(
        fresh.transport.clone(),
        &last,
        window.clone(),
        spec.shape.fan_out(),
    ));
    let endpoint_store = Arc::new(CountingStore::new(fresh.store.clone()));
    let producer_store = Arc::new(CountingStore::new(fresh.store.clone()));
    let (endpoint_ops, producer_ops) = (endpoint_store.counts(), producer_store.counts());
    let colocated = match (&fresh.colocated, spec.colocated) {
        (Some(unit), true) => Some(unit.clone()),
        (None, true) => return Err("this backend's queue is not in the store's database".into()),
        (_, false) => None,
    };
    let counted = |store: &Arc<CountingStore>, observed: Option<Arc<Observed>>| {
        colocated.clone().map(|inner| {
            Arc::new(CountingColocated {
                inner,
                store: store.clone(),
                observed,
            }) as Arc<dyn Colocated>
        })
    };
    let endpoint_unit = counted(&endpoint_store, Some(observed.clone()));
    let producer_unit = counted(&producer_store, None);

    let build = |name: &str, next: Option<String>, fan_out: u64| {
        let builder = Endpoint::builder(name, endpoint_store.clone(), observed.clone());
        let builder = match &endpoint_unit {
            Some(unit) => builder.colocated(unit.clone()),
            None => builder,
        };
        builder
            .handler(Counter { next, fan_out })
            .guarantee(spec.mode)
            .concurrency(spec.concurrency)
            .batch(spec.batch)
            // No periodic sweep during the run: a sweep pass reads every
            // entity record, which would blur the per-message counts. Its
            // cost is measured once, after the run.
            .sweep(Duration::from_secs(3600), Duration::from_secs(2))
            .build()
            .map_err(|e| e.to_string())
    };
    let two = spec.shape.hops() == 2;
    let mut endpoints = vec![build(
        &first,
        two.then(|| last.clone()),
        spec.shape.fan_out(),
    )?];
    if two {
        endpoints.push(build(&last, None, 1)?);
    }

    let mut sender = Sender::new(
        "bench-producer",
        producer_store.clone(),
        fresh.transport.clone(),
    )
    .map_err(|e| e.to_string())?
    .group_commit(spec.group_commit);
    if let Some(unit) = producer_unit {
        sender = sender.colocated(unit);
    }
    let feed = Feed {
        spec: spec.clone(),
        queue: first.clone(),
        next: Arc::default(),
        window,
        sender,
        transport: fresh.transport.clone(),
    };
    let mut producers = JoinSet::new();
    if spec.drain {
        // Everything is queued before the endpoints start and the clock
        // runs: the time is the endpoints' alone.
        feed.window.add_permits(spec.messages as usize);
        spawn_producers(&mut producers, &feed);
        while let Some(done) = producers.join_next().await {
            done.map_err(|e| e.to_string())??;
        }
        bar.set_message("queued; draining");
    }

    reset_peak_rss();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut running = JoinSet::new();
    let start = Instant::now();
    for endpoint in &endpoints {
        let (endpoint, mut stop) = (endpoint.clone(), stop_rx.clone());
        running.spawn(async move {
            endpoint
                .run(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await;
        });
    }
    if !spec.drain {
        spawn_producers(&mut producers, &feed);
    }

    let waited = wait(&observed, spec.messages, bar, &mut producers).await;
    let elapsed = start.elapsed();
    let _ = stop_tx.send(true);
    producers.abort_all();
    while running.join_next().await.is_some() {}
    waited?;

    let mut latencies_us = observed.take_latencies();
    latencies_us.sort_unstable();
    if spec.drain {
        latencies_us.clear();
    }
    let stats: Vec<_> = endpoints.iter().map(|e| e.stats().snapshot()).collect();
    let sum = |f: fn(&exactly::StatsSnapshot) -> u64| stats.iter().map(f).sum();
    Ok(RunResult {
        messages: spec.messages,
        deliveries: spec.shape.deliveries(),
        elapsed,
        latencies_us,
        endpoint_store: endpoint_ops.snapshot(),
        producer_store: producer_ops.snapshot(),
        transport: observed.ops(),
        processed: sum(|s| s.processed),
        conflicts: sum(|s| s.conflicts),
        shared_consumes: sum(|s| s.shared_consumes),
        retries: sum(|s| s.retries),
        error_queued: sum(|s| s.error_queued),
        duplicates: sum(|s| s.duplicates),
        peak_rss_kib: peak_rss_kib(),
        sweep_pass: sweep_pass(&endpoints[0], &endpoint_ops).await,
        intent_records: count_keys(fresh.store.as_ref(), "i/bench-producer/").await,
    })
}

/// How many records are stored under `prefix` (uncounted: after the run).
async fn count_keys(store: &dyn Store, prefix: &str) -> Option<u64> {
    let (mut count, mut after) = (0, None::<String>);
    loop {
        let page = store.list(prefix, after.as_deref(), 1000).await.ok()?;
        count += page.len() as u64;
        match page.last() {
            Some(last) if page.len() == 1000 => after = Some(last.clone()),
            _ => return Some(count),
        }
    }
}

/// Store calls of one sweep pass over the first endpoint's entity records.
async fn sweep_pass(
    endpoint: &Endpoint,
    counts: &crate::counting_store::StoreCounts,
) -> Option<crate::counting_store::StoreOps> {
    let before = counts.snapshot();
    endpoint.sweeper().sweep_once().await.ok()?;
    Some(counts.snapshot().since(&before))
}

/// Waits until `messages` completed, updating the bar; fails on a stall or
/// a producer error.
async fn wait(
    observed: &Observed,
    messages: u64,
    bar: &ProgressBar,
    producers: &mut JoinSet<Result<(), String>>,
) -> Result<(), String> {
    let mut done = observed.completions();
    loop {
        let now = *done.borrow_and_update();
        bar.set_position(now);
        if now >= messages {
            return Ok(());
        }
        tokio::select! {
            changed = tokio::time::timeout(STALL, done.changed()) => {
                if changed.is_err() {
                    return Err(format!("no progress for {STALL:?} at {now}/{messages} messages"));
                }
            }
            Some(Ok(Err(e))) = producers.join_next() => return Err(format!("producer: {e}")),
        }
    }
}
