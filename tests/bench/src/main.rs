//! Exactly-once against the at-least-once baseline, on the same store,
//! transport and machine in the same run: throughput, latency, store round
//! trips per message, contention and a concurrency sweep. Results and how
//! to read them: `docs/benchmarks.md`.
//!
//! ```text
//! cargo run --release -p exactly-bench -- sqlite
//! cargo run --release -p exactly-bench -- postgres-rabbitmq
//! cargo run --release -p exactly-bench -- s3-nats
//! cargo run --release -p exactly-bench -- memory --quick
//! ```

mod backend;
mod counting_store;
mod measure;
mod observed;
#[cfg(feature = "postgres")]
mod pg;
mod plot;
mod producer;
mod report;
#[cfg(feature = "s3-nats")]
mod s3_nats;
mod scenario;
mod workload;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use exactly::Guarantee;

use backend::Backend;
use scenario::Settings;

/// Messages per run of the workload table, unless `--messages` says.
const MESSAGES: u64 = 5_000;

/// The same for `s3-nats`: moto, one Python process, served only ~450
/// S3 requests/s in the benchmark here (`docs/benchmarks.md`), and an
/// exactly-once message costs 8 of them (6 by the endpoint, 2 by the
/// producer; 14 in the chain), so 300 messages take 5–10 s per
/// exactly-once run.
const S3_MESSAGES: u64 = 300;

/// Exactly-once against at-least-once: both modes, same backend, same run.
#[derive(Debug, Parser)]
#[command(name = "exactly-bench")]
struct Cli {
    /// What to measure.
    scenario: Scenario,
    /// Messages per run of the workload table [default: 5000; s3-nats:
    /// 300, as moto serves only a few hundred S3 requests/s].
    #[arg(long)]
    messages: Option<u64>,
    /// Workers per endpoint.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Entities the messages are spread over.
    #[arg(long, default_value_t = 1_000)]
    entities: u64,
    /// Messages in flight at most (default: twice the workers, times the
    /// batch).
    #[arg(long)]
    window: Option<usize>,
    /// Producer tasks, each sending one message (or batch) at a time
    /// (default: one per worker). More than the workers keeps a slow send
    /// (exactly-once: the intent's commit, then the send) from capping the
    /// closed loop.
    #[arg(long)]
    producers: Option<usize>,
    /// Most deliveries a worker handles together (1: one at a time).
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Messages per contention run (default: messages / 5).
    #[arg(long)]
    hot_messages: Option<u64>,
    /// Messages per concurrency-sweep run (default: messages / 2).
    #[arg(long)]
    sweep_messages: Option<u64>,
    /// Concurrency levels of the sweep.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8,16")]
    levels: Vec<usize>,
    /// Seconds pgbench runs for.
    #[arg(long, default_value_t = 15)]
    pgbench_seconds: u64,
    /// Where the sweep writes its plot.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/benchmarks-throughput.svg"))]
    plot: PathBuf,
    /// Queue all messages first, then time only the endpoints draining
    /// them (no producer in the timed part; no latency).
    #[arg(long)]
    drain: bool,
    /// Runs of each measurement, interleaved; tables show the median and
    /// the range.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// Which modes to measure (one alone gives a clean peak RSS).
    #[arg(long, value_enum, default_value_t = Modes::Both)]
    mode: Modes,
    /// A fast smoke run: few messages, two sweep levels.
    #[arg(long)]
    quick: bool,
    /// Both modes commit, send and ack in one transaction
    /// (`EndpointBuilder::colocated`, `StoreAndQueue`): sqlite and postgres
    /// only.
    #[arg(long)]
    colocated: bool,
    /// The exactly-once producer's `Sender` writes each intent alone
    /// (`Sender::group_commit(false)`): the before of group commit.
    #[arg(long)]
    no_group_commit: bool,
    /// Which tables of a backend to measure (comma-separated; default
    /// all).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Table>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Scenario {
    /// MemoryStore + MemoryTransport: the endpoint's own CPU cost.
    Memory,
    /// SqliteStore + SqlQueue on one SQLite file.
    Sqlite,
    /// PostgresStore + SqlQueue on PostgreSQL, and pgbench.
    Postgres,
    /// PostgresStore + RabbitQueue (PostgreSQL and RabbitMQ servers).
    PostgresRabbitmq,
    /// ObjectStoreStore on S3 (moto) + NatsQueue; 300 messages by default.
    S3Nats,
    /// Throughput vs concurrency on SQLite (and PostgreSQL), with the plot.
    Sweep,
    /// All of the above.
    All,
}

/// A table of one backend's measurements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Table {
    /// Direct and chain, both modes.
    Workload,
    /// One hot entity against many.
    Contention,
    /// One sender's message fanned out to 8 entities, one at a time and in
    /// batches.
    FanOut,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Modes {
    Both,
    ExactlyOnce,
    AtLeastOnce,
}

impl Cli {
    /// The settings, with `messages` messages per run unless `--messages`
    /// or `--quick` says otherwise.
    fn settings(&self, messages: u64) -> Settings {
        let quick = |full: u64, smoke: u64| if self.quick { smoke } else { full };
        let messages = quick(self.messages.unwrap_or(messages), 200);
        Settings {
            messages,
            concurrency: self.concurrency,
            entities: quick(self.entities, 50),
            window: self.window,
            producers: self.producers,
            batch: self.batch.max(1),
            hot_messages: self.hot_messages.unwrap_or(messages / 5).max(1),
            sweep_messages: self.sweep_messages.unwrap_or(messages / 2).max(1),
            sweep_levels: if self.quick {
                vec![1, 4]
            } else {
                self.levels.clone()
            },
            pgbench_duration: Duration::from_secs(quick(self.pgbench_seconds, 2)),
            drain: self.drain,
            repeats: self.repeat.max(1),
            colocated: self.colocated,
            group_commit: !self.no_group_commit,
            tables: if self.only.is_empty() {
                vec![Table::Workload, Table::Contention, Table::FanOut]
            } else {
                self.only.clone()
            },
            modes: match self.mode {
                Modes::Both => vec![Guarantee::ExactlyOnce, Guarantee::AtLeastOnce],
                Modes::ExactlyOnce => vec![Guarantee::ExactlyOnce],
                Modes::AtLeastOnce => vec![Guarantee::AtLeastOnce],
            },
        }
    }
}

async fn run(cli: &Cli) -> Result<(), String> {
    let s = cli.settings(MESSAGES);
    println!(
        "Machine: {}. Load average at the start: {}.{}\n",
        measure::machine(),
        measure::load_average(),
        if cli.colocated {
            " Commit, sends and ack in one transaction (--colocated)."
        } else {
            ""
        },
    );
    if cli.no_group_commit {
        println!("The producer's intents are written one per send (--no-group-commit).\n");
    }
    let quiet = "";
    match cli.scenario {
        Scenario::Memory => scenario::backend_scenario(&Backend::Memory, &s, quiet)
            .await
            .map(drop),
        Scenario::Sqlite => scenario::backend_scenario(&Backend::Sqlite, &s, quiet)
            .await
            .map(drop),
        Scenario::Postgres => postgres(&s).await,
        Scenario::PostgresRabbitmq => postgres_rabbitmq(&s).await,
        Scenario::S3Nats => s3_nats(&cli.settings(S3_MESSAGES)).await,
        Scenario::Sweep => sweep(&s, &cli.plot).await,
        Scenario::All => {
            scenario::backend_scenario(&Backend::Memory, &s, quiet).await?;
            scenario::backend_scenario(&Backend::Sqlite, &s, quiet).await?;
            postgres(&s).await?;
            postgres_rabbitmq(&s).await?;
            s3_nats(&cli.settings(S3_MESSAGES)).await?;
            sweep(&s, &cli.plot).await
        }
    }
}

async fn sweep(s: &Settings, plot: &std::path::Path) -> Result<(), String> {
    let backends = scenario::sweep_backends().await;
    scenario::sweep_and_plot(&backends, s, plot).await
}

#[cfg(feature = "postgres")]
async fn postgres(s: &Settings) -> Result<(), String> {
    scenario::postgres(s).await
}

#[cfg(feature = "rabbitmq")]
async fn postgres_rabbitmq(s: &Settings) -> Result<(), String> {
    scenario::postgres_rabbitmq(s).await
}

#[cfg(feature = "s3-nats")]
async fn s3_nats(s: &Settings) -> Result<(), String> {
    scenario::s3_nats(s).await
}

#[cfg(not(feature = "postgres"))]
async fn postgres(_: &Settings) -> Result<(), String> {
    scenario::skipped("postgres", "built without the `postgres` feature.")
}

#[cfg(not(feature = "rabbitmq"))]
async fn postgres_rabbitmq(_: &Settings) -> Result<(), String> {
    scenario::skipped(
        "postgres + rabbitmq",
        "built without the `rabbitmq` feature.",
    )
}

#[cfg(not(feature = "s3-nats"))]
async fn s3_nats(_: &Settings) -> Result<(), String> {
    scenario::skipped("s3 + nats", "built without the `s3-nats` feature.")
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    log_if_asked();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("exactly-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&cli)) {
        Ok(()) => {
            println!("Load average at the end: {}.", measure::load_average());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("exactly-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// With `RUST_LOG` set (e.g. `exactly::protocol::batch=debug`), the
/// protocol's events go to stderr: to find out why a run is slow. Without
/// it no subscriber is installed, so the measured runs pay nothing for
/// tracing.
fn log_if_asked() {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
}
