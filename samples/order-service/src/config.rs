//! Command line and environment: which role to run, where the data lives,
//! how to log. Every flag also reads an environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::soak::SoakArgs;

/// The order service sample of exactly: an HTTP API, three endpoints
/// (orders → billing → shipping) and a fake payment provider, exactly once
/// end to end.
///
/// With no flags everything runs in this one process on one SQLite file.
/// `--role` splits it into separate processes sharing that file (start as
/// many replicas of each worker role as you like).
#[derive(Debug, Parser)]
#[command(
    name = "order-service",
    version,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// What to run besides serving (default: serve `--role`).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Serving options.
    #[command(flatten)]
    pub serve: ServeArgs,
    /// Options shared by serving and the soak.
    #[command(flatten)]
    pub common: Common,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Places orders through the API while killing worker processes with
    /// SIGKILL, then checks that nothing was lost or charged twice.
    Soak(SoakArgs),
}

/// Options of every mode.
#[derive(Debug, Args, Clone)]
pub struct Common {
    /// Directory of the SQLite file and the blobs [default:
    /// target/order-service-data, or target/order-service-soak for `soak`].
    #[arg(long, env = "ORDER_SERVICE_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// Log format (filter with RUST_LOG, default `info`).
    #[arg(long, env = "ORDER_SERVICE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// Export spans over OTLP/HTTP (protobuf) to this collector, e.g.
    /// http://127.0.0.1:4318 (spans go to .../v1/traces). Needs the `otlp`
    /// feature; without it, a warning.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", global = true)]
    pub otlp_endpoint: Option<String>,
    /// Which spans are exported over OTLP (`RUST_LOG` syntax): by default
    /// the `exactly.message` span of every delivery and its protocol steps.
    #[arg(
        long,
        env = "ORDER_SERVICE_OTLP_FILTER",
        default_value = "info,exactly=debug",
        global = true
    )]
    pub otlp_filter: String,
}

/// How logs are written (to stderr).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One line per event, `key=value` fields.
    Text,
    /// One JSON object per line.
    Json,
}

/// A part of the service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Role {
    /// API, Orders, Billing, Shipping and the fake payment provider.
    All,
    /// The HTTP API only (`POST /orders`, `GET /orders/{id}`, ...).
    Api,
    /// The Orders endpoint's workers.
    Orders,
    /// The Billing endpoint's workers (needs `--payments-url`).
    Billing,
    /// The Shipping endpoint's workers.
    Shipping,
    /// The fake payment provider only.
    Payments,
}

impl Role {
    /// The name used in logs and process lists.
    pub fn name(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Api => "api",
            Self::Orders => "orders",
            Self::Billing => "billing",
            Self::Shipping => "shipping",
            Self::Payments => "payments",
        }
    }
}

/// Options of the serving roles.
#[derive(Debug, Args, Clone)]
pub struct ServeArgs {
    /// Which part of the service this process runs.
    #[arg(long, env = "ORDER_SERVICE_ROLE", value_enum, default_value_t = Role::All)]
    pub role: Role,
    /// Address of this process's HTTP listener: the API (`all`, `api`), the
    /// provider (`payments`), or only `/metrics` and `/healthz` (workers)
    /// [default: 127.0.0.1:8080 for all/api, 127.0.0.1:8081 for payments,
    /// 127.0.0.1:0 (any free port) for workers].
    #[arg(long, env = "ORDER_SERVICE_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Where the in-process payment provider listens (role `all`).
    #[arg(
        long,
        env = "ORDER_SERVICE_PAYMENTS_LISTEN",
        default_value = "127.0.0.1:0"
    )]
    pub payments_listen: SocketAddr,
    /// Base URL of the payment provider (role `billing`; `all` uses its
    /// own in-process provider unless this is set).
    #[arg(long, env = "ORDER_SERVICE_PAYMENTS_URL")]
    pub payments_url: Option<String>,
    /// The store: `sqlite:PATH`, or `postgres://...` (feature `postgres`)
    /// [default: sqlite:DATA_DIR/exactly.sqlite].
    #[arg(long, env = "EXACTLY_STORE")]
    pub store: Option<String>,
    /// The queue: `sqlite:PATH`, `postgres://...` (feature `postgres`),
    /// `amqp://...` (RabbitMQ, feature `rabbitmq`) or `nats://...` (NATS
    /// JetStream, feature `nats`) [default: the store's location; the same
    /// SQLite file shares one connection pool].
    #[arg(long, env = "EXACTLY_TRANSPORT")]
    pub transport: Option<String>,
    /// The blob store: a directory, or `s3://BUCKET` (endpoint from
    /// `AWS_ENDPOINT_URL`, credentials from `AWS_*`) [default: DATA_DIR/blobs].
    #[arg(long, env = "EXACTLY_BLOBS")]
    pub blobs: Option<PathBuf>,
    /// Deliveries each endpoint handles at once, per process.
    #[arg(long, env = "ORDER_SERVICE_CONCURRENCY", default_value_t = 8)]
    pub concurrency: usize,
    /// Queue lease: a delivery whose worker died is redelivered after this.
    #[arg(long, env = "ORDER_SERVICE_LEASE_SECS", default_value_t = 10)]
    pub lease_secs: u64,
    /// How often each endpoint's sweeper looks for unfinished outbox entries.
    #[arg(long, env = "ORDER_SERVICE_SWEEP_SECS", default_value_t = 2)]
    pub sweep_secs: u64,
    /// How often the blob collector runs (roles `all` and `orders`); 0: never.
    #[arg(long, env = "ORDER_SERVICE_GC_SECS", default_value_t = 60)]
    pub gc_secs: u64,
    /// Unreferenced blobs younger than this are left alone by the collector.
    #[arg(long, env = "ORDER_SERVICE_GC_GRACE_SECS", default_value_t = 600)]
    pub gc_grace_secs: u64,
    /// Fraction of payment requests the fake provider fails on purpose
    /// (half with 503 before charging, half with 502 after).
    #[arg(
        long,
        env = "ORDER_SERVICE_PAYMENT_FAILURE_RATE",
        default_value_t = 0.0
    )]
    pub payment_failure_rate: f64,
    /// Delete the data directory first.
    #[arg(long)]
    pub fresh: bool,
    /// Stop gracefully when standard input closes (the soak runs its
    /// workers this way, so they never outlive it).
    #[arg(long, hide = true)]
    pub stop_on_stdin_eof: bool,
}

impl ServeArgs {
    /// The listener address for this role.
    pub fn listen_addr(&self) -> SocketAddr {
        let default = match self.role {
            Role::All | Role::Api => "127.0.0.1:8080",
            Role::Payments => "127.0.0.1:8081",
            Role::Orders | Role::Billing | Role::Shipping => "127.0.0.1:0",
        };
        self.listen.unwrap_or_else(|| {
            default
                .parse()
                .unwrap_or_else(|_| unreachable!("a valid literal"))
        })
    }
}
