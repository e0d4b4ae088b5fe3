//! `order-service soak`: the payment provider and the API run in this
//! process, the workers (orders, billing, shipping) as child processes of
//! this binary. Orders are placed through the HTTP API while workers are
//! killed with SIGKILL at random and restarted; then the soak waits for
//! quiescence and checks the promises: nothing lost, nothing charged twice,
//! nothing applied twice.

mod client;
mod fleet;
mod report;
mod verify;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use exactly_http::IntentFront;
use tokio::sync::{Mutex as AsyncMutex, watch};
use tracing::info;

use crate::backend::{self, Location};
use crate::config::Common;
use crate::payments::Provider;
use crate::{api, metrics};
use client::{Accepted, Client, ClientStats, Mix};
use fleet::{Fleet, WorkerSpec};
use report::{Progress, Report};

/// Default data directory of the soak (wiped at the start).
pub const DEFAULT_SOAK_DIR: &str = "target/order-service-soak";

/// Options of `order-service soak`.
#[derive(Debug, Args, Clone)]
pub struct SoakArgs {
    /// Orders to place.
    #[arg(long, default_value_t = 10_000)]
    pub orders: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// Processes of each worker role.
    #[arg(long, default_value_t = 2)]
    pub replicas: usize,
    /// Mean time between two SIGKILLs (jittered ±50%).
    #[arg(long, default_value_t = 2000)]
    pub kill_every_ms: u64,
    /// Keep killing until at least this many kills, even if all orders
    /// shipped sooner.
    #[arg(long, default_value_t = 3)]
    pub min_kills: u64,
    /// Pause before a killed worker is restarted.
    #[arg(long, default_value_t = 300)]
    pub restart_after_ms: u64,
    /// Give up waiting for all orders to ship after this (they count as lost).
    #[arg(long, default_value_t = 1800)]
    pub timeout_secs: u64,
    /// Fraction of orders sent twice in a row with the same key.
    #[arg(long, default_value_t = 0.10)]
    pub repeat_rate: f64,
    /// Fraction of orders sent twice at the same moment.
    #[arg(long, default_value_t = 0.05)]
    pub concurrent_rate: f64,
    /// Fraction of orders whose key is then reused with a different body.
    #[arg(long, default_value_t = 0.01)]
    pub reuse_rate: f64,
    /// Fraction of orders with a 100–300 KiB attachment (claim-checked).
    #[arg(long, default_value_t = 0.02)]
    pub attachment_rate: f64,
    /// Fraction of payment requests the provider fails on purpose.
    #[arg(long, default_value_t = 0.05)]
    pub payment_failure_rate: f64,
    /// `--concurrency` of each worker process.
    #[arg(long, default_value_t = 8)]
    pub worker_concurrency: usize,
    /// Queue lease of the workers: how soon a killed worker's deliveries
    /// come back.
    #[arg(long, default_value_t = 3)]
    pub lease_secs: u64,
    /// The store, as for serving (default: a fresh
    /// `sqlite:DATA_DIR/exactly.sqlite`). Use an empty database: the soak
    /// wipes only the data directory.
    #[arg(long)]
    pub store: Option<String>,
    /// The queue, as for serving (default: the store's location).
    #[arg(long)]
    pub transport: Option<String>,
    /// The blob store, as for serving: a directory or `s3://BUCKET`
    /// (default: DATA_DIR/blobs).
    #[arg(long)]
    pub blobs: Option<PathBuf>,
    /// Seed of the order plans (default: random).
    #[arg(long)]
    pub seed: Option<u64>,
    /// No progress bar (a line every 5 s instead).
    #[arg(long)]
    pub no_progress: bool,
}

/// Runs the soak; returns whether every check passed.
pub async fn run(args: SoakArgs, common: Common) -> anyhow::Result<bool> {
    let started = Instant::now();
    let data_dir = common
        .data_dir
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOAK_DIR));
    if data_dir.exists() {
        std::fs::remove_dir_all(&data_dir)
            .with_context(|| format!("removing {}", data_dir.display()))?;
    }
    std::fs::create_dir_all(&data_dir)?;
    let seed = args.seed.unwrap_or_else(rand::random);
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };

    // In this process: the payment provider and the API.
    let provider = Provider::new(args.payment_failure_rate);
    let payments = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let payments_url = format!("http://{}", payments.local_addr()?);
    let provider_task = tokio::spawn(
        axum::serve(payments, provider.router())
            .with_graceful_shutdown(stopped())
            .into_future(),
    );
    let lease = Duration::from_secs(args.lease_secs.max(1));
    let store = match &args.store {
        Some(text) => Location::parse(text)?,
        None => Location::Sqlite(data_dir.join("exactly.sqlite")),
    };
    let transport = args.transport.as_deref().map(Location::parse).transpose()?;
    let blobs = args.blobs.clone().unwrap_or_else(|| data_dir.join("blobs"));
    let backend = backend::open(&store, transport.as_ref(), &blobs, lease).await?;
    let front = IntentFront::new(backend.store.clone(), backend.transport.clone());
    let router = api::routes(front.clone(), backend.store.clone(), backend.blobs.clone())
        .merge(metrics::routes("soak", Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let api_url = format!("http://{}", listener.local_addr()?);
    let api_task = tokio::spawn(
        axum::serve(listener, router)
            .with_graceful_shutdown(stopped())
            .into_future(),
    );
    let front_task = tokio::spawn({
        let front = front.clone();
        let stop = stopped();
        async move { front.run(stop).await }
    });

    // Child processes: the workers.
    let spec = WorkerSpec {
        exe: std::env::current_exe()?,
        data_dir: data_dir.clone(),
        payments_url,
        concurrency: args.worker_concurrency.max(1),
        lease_secs: args.lease_secs.max(1),
        store: args.store.clone(),
        transport: args.transport.clone(),
        blobs: args.blobs.clone(),
    };
    let fleet = Arc::new(AsyncMutex::new(Fleet::start(spec, args.replicas)?));
    let workers = fleet.lock().await.size();
    println!(
        "soak: {} orders, {workers} worker processes, API {api_url}, seed {seed}, data {}",
        args.orders,
        data_dir.display()
    );

    let kills = Arc::new(AtomicU64::new(0));
    let (chaos_tx, chaos_rx) = watch::channel(false);
    let chaos = tokio::spawn(fleet::chaos(
        fleet.clone(),
        kills.clone(),
        Duration::from_millis(args.kill_every_ms.max(1)),
        Duration::from_millis(args.restart_after_ms),
        chaos_rx,
    ));

    // Place the orders; watch them ship.
    let stats = Arc::new(ClientStats::default());
    let accepted = Accepted::default();
    let placing = tokio::spawn(client::place_all(
        client::Placing {
            orders: args.orders,
            clients: args.clients,
            seed,
            mix: Mix {
                repeat: args.repeat_rate,
                concurrent: args.concurrent_rate,
                reuse: args.reuse_rate,
                attachment: args.attachment_rate,
            },
        },
        Client::new(api_url.clone())?,
        stats.clone(),
        accepted.clone(),
    ));
    let progress = Progress::new(args.orders as u64, args.no_progress);
    let deadline = started + Duration::from_secs(args.timeout_secs);
    let mut shipped = Shipped::default();
    let all_shipped_at = loop {
        // Read before polling: an order accepted after the poll read the
        // list must not be missed.
        let placing_done = placing.is_finished();
        let placed = shipped.poll(backend.store.as_ref(), &accepted).await;
        let killed = kills.load(Ordering::Relaxed);
        progress.update(placed, shipped.count, killed);
        let all_shipped = placing_done && shipped.pending() == 0;
        if all_shipped && shipped.at.is_none() {
            shipped.at = Some(started.elapsed());
        }
        if (all_shipped && killed >= args.min_kills) || Instant::now() > deadline {
            break shipped.at;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    progress.finish();
    let _ = chaos_tx.send(true);
    let _ = chaos.await;
    placing.abort();

    // Quiescence: every worker up, every outbox entry finished, every token
    // consumed, every queue drained.
    let mut fleet = fleet.lock().await;
    fleet.restart_missing()?;
    info!("waiting for quiescence");
    let quiet = verify::quiesce(&backend, Duration::from_secs(120)).await?;
    fleet.stop(Duration::from_secs(20)).await;
    let _ = stop_tx.send(true);
    let _ = tokio::join!(api_task, front_task, provider_task);

    let accepted = std::mem::take(&mut *accepted.lock().unwrap_or_else(PoisonError::into_inner));
    let mut findings = verify::Findings::default();
    verify::check_orders(
        backend.store.as_ref(),
        backend.blobs.as_ref(),
        &accepted,
        &mut findings,
    )
    .await?;
    verify::check_blobs(backend.store.clone(), backend.blobs.clone(), &mut findings).await?;
    verify::check_errors(backend.transport.as_ref(), &mut findings).await?;
    let report = Report {
        orders: args.orders as u64,
        accepted: accepted.len() as u64,
        attachments_sent: accepted.iter().filter(|(_, a)| a.is_some()).count() as u64,
        findings,
        provider: provider.stats(),
        client: stats,
        quiet,
        queues_checked: backend.queue_pool.is_some(),
        fleet: (
            fleet.kills,
            fleet.unexpected_exits,
            fleet.graceful_stops,
            fleet.size(),
        ),
        all_shipped_at,
        elapsed: started.elapsed(),
        seed,
    };
    report.print();
    Ok(report.passed())
}

/// Orders checked per poll at most.
const POLL_BATCH: usize = 500;

/// Which accepted orders have shipped, polled from the Orders records.
#[derive(Debug, Default)]
struct Shipped {
    /// Accepted orders looked at so far.
    seen: usize,
    /// Accepted, not shipped yet.
    waiting: Vec<String>,
    /// Shipped.
    count: u64,
    /// When the last one shipped, since the start.
    at: Option<Duration>,
}

impl Shipped {
    /// Picks up newly accepted orders and checks the waiting ones; returns
    /// how many were accepted so far.
    async fn poll(&mut self, store: &dyn exactly::Store, accepted: &Accepted) -> u64 {
        {
            let accepted = accepted.lock().unwrap_or_else(PoisonError::into_inner);
            self.waiting
                .extend(accepted[self.seen..].iter().map(|(id, _)| id.clone()));
            self.seen = accepted.len();
        }
        // The oldest first, a bounded number per poll: reads compete with
        // the workers for the same database.
        let mut still = Vec::with_capacity(self.waiting.len());
        for (i, id) in self.waiting.drain(..).enumerate() {
            if i < POLL_BATCH && verify::shipped(store, &id).await {
                self.count += 1;
            } else {
                still.push(id);
            }
        }
        self.waiting = still;
        self.seen as u64
    }

    fn pending(&self) -> usize {
        self.waiting.len()
    }
}
