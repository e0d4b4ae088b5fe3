//! Conditional writes per second on every exactly store, beside
//! PostgreSQL's raw one-row commit rate (`pgbench`) measured in the same
//! run.
//!
//! ```sh
//! source .services/env   # EXACTLY_TEST_*_URL, EXACTLY_TEST_PGBENCH
//! cargo run --release -p exactly-store-bench -- [TASKS] [SECONDS] [ROUNDS]
//! ```
//!
//! Workloads, each on TASKS concurrent tasks (default 4) for SECONDS
//! (default 5); increment and create run ROUNDS times (default 3), in
//! alternation, and the median is shown:
//! - `increment`: get + `Matches` put of the task's own key (no contention);
//! - `create`: `Absent` puts of fresh keys;
//! - `contended`: increments of one key shared by every task (conflicts
//!   retried; successful writes counted), once.
//!
//! SQLite (a temporary file), local files (a temporary directory),
//! object_store's `InMemory` and `MemoryStore` always run; PostgreSQL, S3, Azure Blob and DynamoDB run when their
//! server's `EXACTLY_TEST_*_URL` is set and are skipped with a note
//! otherwise. On PostgreSQL each round starts with a `pgbench` run on as
//! many connections as there are tasks (when `EXACTLY_TEST_PGBENCH` names
//! the binary), and the store's rates are shown as a multiple of it.

mod pgbench;
mod workload;

/// The object tests' setup of the moto bucket and the Azurite container
/// (object_store cannot create them): one copy for tests and bench.
#[path = "../../object/tests/common/mod.rs"]
mod object_servers;

use std::sync::Arc;
use std::time::Duration;

use exactly::{MemoryStore, Store};
use exactly_store_dynamodb::{DynamoDbStore, endpoint_client};
use exactly_store_object::ObjectStoreStore;
use exactly_store_postgres::{PostgresStore, pool_options, sqlx};
use exactly_store_sqlite::SqliteStore;

use pgbench::Pgbench;
use workload::Load;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The stores, in the order they are measured.
#[derive(Clone, Copy)]
enum Kind {
    Postgres,
    Sqlite,
    S3,
    Azure,
    DynamoDb,
    LocalFiles,
    ObjectInMemory,
    Memory,
}

impl Kind {
    const ALL: [Kind; 8] = [
        Kind::Postgres,
        Kind::Sqlite,
        Kind::S3,
        Kind::Azure,
        Kind::DynamoDb,
        Kind::LocalFiles,
        Kind::ObjectInMemory,
        Kind::Memory,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::Postgres => "PostgreSQL",
            Kind::Sqlite => "SQLite",
            Kind::S3 => "S3 (moto, an emulator)",
            Kind::Azure => "Azure Blob (Azurite, an emulator)",
            Kind::DynamoDb => "DynamoDB (moto, an emulator)",
            Kind::LocalFiles => "object_store local files",
            Kind::ObjectInMemory => "object_store InMemory",
            Kind::Memory => "MemoryStore",
        }
    }

    /// The variable naming the store's server, if it needs one.
    fn server_var(self) -> Option<&'static str> {
        match self {
            Kind::Postgres => Some("EXACTLY_TEST_POSTGRES_URL"),
            Kind::S3 => Some("EXACTLY_TEST_S3_URL"),
            Kind::Azure => Some("EXACTLY_TEST_AZURE_BLOB_URL"),
            Kind::DynamoDb => Some("EXACTLY_TEST_DYNAMODB_URL"),
            Kind::Sqlite | Kind::LocalFiles | Kind::ObjectInMemory | Kind::Memory => None,
        }
    }
}

/// A store ready to measure; for PostgreSQL also `pgbench` on its server.
struct Opened {
    store: Arc<dyn Store>,
    postgres: Option<(PostgresStore, Option<Pgbench>)>,
}

impl Opened {
    fn new(store: impl Store) -> Self {
        Self {
            store: Arc::new(store),
            postgres: None,
        }
    }
}

async fn open(kind: Kind, url: &str, load: Load, dir: &std::path::Path) -> Result<Opened> {
    Ok(match kind {
        Kind::Postgres => {
            let pool = pool_options().max_connections(u32::try_from(load.tasks)?);
            let store = PostgresStore::connect_with(url, pool).await?;
            let (fsync, commit): (String, String) = sqlx::query_as(
                "SELECT current_setting('fsync'), current_setting('synchronous_commit')",
            )
            .fetch_one(store.pool())
            .await?;
            println!("PostgreSQL: fsync={fsync}, synchronous_commit={commit}");
            let pgbench = match std::env::var("EXACTLY_TEST_PGBENCH") {
                Ok(bin) => {
                    let secs = load.duration.as_secs();
                    Some(Pgbench::prepare(bin, url, store.pool(), load.tasks, secs).await?)
                }
                Err(_) => {
                    println!("PostgreSQL: no pgbench ratio, EXACTLY_TEST_PGBENCH is unset");
                    None
                }
            };
            Opened {
                store: Arc::new(store.clone()),
                postgres: Some((store, pgbench)),
            }
        }
        Kind::Sqlite => Opened::new(SqliteStore::open(dir.join("bench.db")).await?),
        Kind::S3 => Opened::new(object_servers::s3().await),
        Kind::Azure => Opened::new(object_servers::azure().await),
        Kind::DynamoDb => {
            Opened::new(DynamoDbStore::new(endpoint_client(url)?, "exactly-bench").await?)
        }
        Kind::LocalFiles => Opened::new(ObjectStoreStore::local(dir.join("objects")).await?),
        Kind::ObjectInMemory => Opened::new(ObjectStoreStore::memory().await?),
        Kind::Memory => Opened::new(MemoryStore::new()),
    })
}

/// Medians over the rounds, in writes/s; `pgbench` in transactions/s.
struct Rates {
    increment: f64,
    create: f64,
    contended: f64,
    pgbench: Option<f64>,
}

async fn measure(opened: &Opened, load: Load, rounds: usize) -> Result<Rates> {
    let pgbench = opened.postgres.as_ref().and_then(|(_, p)| p.as_ref());
    let (mut tps, mut increment, mut create) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        if let Some(pgbench) = pgbench {
            tps.push(pgbench.run()?);
        }
        increment.push(workload::increment(&opened.store, load).await?);
        create.push(workload::create(&opened.store, load).await?);
    }
    Ok(Rates {
        increment: median(increment),
        create: median(create),
        contended: workload::contended(&opened.store, load).await?,
        pgbench: (!tps.is_empty()).then(|| median(tps)),
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>());
    let tasks = args.next().transpose()?.unwrap_or(4);
    let secs = args.next().transpose()?.unwrap_or(5);
    let rounds = args.next().transpose()?.unwrap_or(3).max(1);
    let load = Load {
        tasks,
        duration: Duration::from_secs(u64::try_from(secs)?),
    };
    println!("{tasks} tasks, {secs} s per measurement, median of {rounds} rounds");
    let dir = tempfile::tempdir()?;

    let (mut rows, mut notes) = (Vec::new(), Vec::new());
    for kind in Kind::ALL {
        let url = match kind.server_var().map(std::env::var) {
            Some(Ok(url)) => url,
            Some(Err(_)) => {
                let var = kind.server_var().unwrap_or_default();
                notes.push(format!("{}: skipped, {var} is unset", kind.name()));
                println!("{}", notes[notes.len() - 1]);
                continue;
            }
            None => String::new(),
        };
        let opened = open(kind, &url, load, dir.path()).await?;
        let rates = measure(&opened, load, rounds).await?;
        rows.push(format!(
            "| {} | {:.0} | {:.0} | {:.0} |",
            kind.name(),
            rates.increment,
            rates.create,
            rates.contended
        ));
        println!("{}", rows[rows.len() - 1]);
        if let Some(tps) = rates.pgbench {
            notes.push(format!(
                "PostgreSQL beside pgbench ({tps:.0} one-row commits/s, {tasks} connections): \
                 increment {:.2} ×, create {:.2} ×",
                rates.increment / tps,
                rates.create / tps
            ));
            println!("{}", notes[notes.len() - 1]);
        }
        if let Some((store, Some(pgbench))) = opened.postgres {
            pgbench.finish(store.pool()).await?;
        }
    }

    println!("\n| store | increment w/s | create w/s | contended w/s |\n|---|---:|---:|---:|");
    for line in rows.iter().chain([&String::new()]).chain(&notes) {
        println!("{line}");
    }
    Ok(())
}
