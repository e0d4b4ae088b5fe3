//! Conditional writes per second on PostgreSQL beside PostgreSQL's raw
//! one-row commit rate (`pgbench`, same number of connections), measured
//! in alternating rounds of the same run; SQLite and the in-memory store
//! for scale.
//!
//! ```sh
//! EXACTLY_SERVICES_DURABLE=1 scripts/services.sh up postgres && source .services/env
//! cargo run -p exactly-store-postgres --example cas_bench -- [TASKS] [SECONDS] [ROUNDS]
//! ```
//!
//! Workloads, each TASKS concurrent tasks for SECONDS:
//! - `increment`: get + `Matches` put of the task's own key (no contention:
//!   every write succeeds; two round trips, one commit);
//! - `create`: `Absent` puts of fresh keys (one round trip, one commit);
//! - `contended`: increments of one shared key (conflicts retried; counts
//!   successful writes).
//!
//! `pgbench` runs `UPDATE … SET n = n + 1 WHERE id = :client_id + 1`: each
//! connection its own row, one autocommitted one-row UPDATE per transaction.

use std::future::Future;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use exactly::{MemoryStore, Precondition, Store, StoreError};
use exactly_store_postgres::{PostgresStore, pool_options};
use exactly_store_sqlite::SqliteStore;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>());
    let tasks = args.next().transpose()?.unwrap_or(4);
    let secs = args.next().transpose()?.unwrap_or(5);
    let rounds = args.next().transpose()?.unwrap_or(3);
    let url = std::env::var("EXACTLY_TEST_POSTGRES_URL")
        .map_err(|_| "EXACTLY_TEST_POSTGRES_URL is unset: source .services/env")?;
    let pool = pool_options().max_connections(u32::try_from(tasks)?);
    let postgres = PostgresStore::connect_with(&url, pool).await?;
    let (fsync, sync_commit): (String, String) =
        sqlx::query_as("SELECT current_setting('fsync'), current_setting('synchronous_commit')")
            .fetch_one(postgres.pool())
            .await?;
    println!(
        "{tasks} tasks, {secs} s per measurement; fsync={fsync}, synchronous_commit={sync_commit}"
    );
    let duration = Duration::from_secs(u64::try_from(secs)?);
    let postgres: Arc<dyn Store> = Arc::new(postgres.clone());
    let bench = Pgbench::prepare(&url, tasks, secs).await?;

    let (mut tps, mut inc, mut new) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=rounds {
        tps.push(bench.run()?);
        inc.push(increments(&postgres, tasks, duration, false).await?);
        new.push(creates(&postgres, tasks, duration).await?);
        println!(
            "round {round}: pgbench {:.0} tps; increment {:.0} w/s; create {:.0} w/s",
            tps[round - 1],
            inc[round - 1],
            new[round - 1]
        );
    }
    let (tps, inc, new) = (median(tps), median(inc), median(new));
    println!(
        "PostgreSQL, median of {rounds}: increment {inc:.0} w/s = {:.2} × pgbench, \
         create {new:.0} w/s = {:.2} × pgbench ({tps:.0} tps)",
        inc / tps,
        new / tps
    );

    let dir = tempfile::tempdir()?;
    let sqlite = SqliteStore::open(dir.path().join("bench.db")).await?;
    let stores: [(&str, Arc<dyn Store>); 3] = [
        ("PostgreSQL", postgres),
        ("SQLite", Arc::new(sqlite)),
        ("memory", Arc::new(MemoryStore::new())),
    ];
    for (name, store) in stores {
        let contended = increments(&store, tasks, duration, true).await?;
        let line = if name == "PostgreSQL" {
            format!("contended {contended:.0} w/s")
        } else {
            let inc = increments(&store, tasks, duration, false).await?;
            let new = creates(&store, tasks, duration).await?;
            format!("increment {inc:.0} w/s, create {new:.0} w/s, contended {contended:.0} w/s")
        };
        println!("{name}: {line}");
    }
    bench.drop_table(&url).await
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs `op(task, i)` on `tasks` tasks for `duration`; successful ops/s.
async fn run<F, Fut>(tasks: usize, duration: Duration, op: F) -> Result<f64>
where
    F: Fn(usize, usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = std::result::Result<(), StoreError>> + Send,
{
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut done = 0;
                while start.elapsed() < duration {
                    op(t, done).await?;
                    done += 1;
                }
                Ok::<_, StoreError>(done)
            })
        })
        .collect();
    let mut total = 0;
    for handle in handles {
        total += handle.await??;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

/// get + `Matches` put of `n + 1`, on each task's own key or on one shared key.
async fn increments(
    store: &Arc<dyn Store>,
    tasks: usize,
    d: Duration,
    shared: bool,
) -> Result<f64> {
    let ns = exactly_conformance::unique_name("bench");
    let key = move |t: usize| format!("{ns}/inc/{}", if shared { 0 } else { t });
    for t in 0..if shared { 1 } else { tasks } {
        store.put(&key(t), "0".into(), Precondition::Absent).await?;
    }
    let store = store.clone();
    run(tasks, d, move |t, _| increment(store.clone(), key(t))).await
}

async fn increment(store: Arc<dyn Store>, key: String) -> std::result::Result<(), StoreError> {
    loop {
        let current = store
            .get(&key)
            .await?
            .ok_or(StoreError::NotFound { key: key.clone() })?;
        let n: u64 = std::str::from_utf8(&current.value)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let next = Bytes::from((n + 1).to_string());
        match store
            .put(&key, next, Precondition::Matches(current.version))
            .await
        {
            Err(StoreError::Conflict { .. }) => continue,
            other => return other.map(drop),
        }
    }
}

/// `Absent` puts of fresh keys.
async fn creates(store: &Arc<dyn Store>, tasks: usize, d: Duration) -> Result<f64> {
    let ns = exactly_conformance::unique_name("bench");
    let store = store.clone();
    run(tasks, d, move |t, i| {
        let (store, key) = (store.clone(), format!("{ns}/new/{t}/{i}"));
        async move {
            store
                .put(&key, Bytes::from_static(b"0"), Precondition::Absent)
                .await
                .map(drop)
        }
    })
    .await
}

/// `pgbench` with one row per connection and a one-row UPDATE script.
struct Pgbench {
    bin: String,
    url: String,
    clients: usize,
    secs: usize,
    script: tempfile::NamedTempFile,
}

impl Pgbench {
    async fn prepare(url: &str, clients: usize, secs: usize) -> Result<Self> {
        let bin = std::env::var("EXACTLY_TEST_PGBENCH")
            .map_err(|_| "EXACTLY_TEST_PGBENCH is unset: source .services/env")?;
        let pool = sqlx::PgPool::connect(url).await?;
        sqlx::raw_sql(
            "DROP TABLE IF EXISTS exactly_bench; \
             CREATE TABLE exactly_bench (id INT PRIMARY KEY, n BIGINT NOT NULL)",
        )
        .execute(&pool)
        .await?;
        sqlx::query("INSERT INTO exactly_bench SELECT g, 0 FROM generate_series(1, $1) g")
            .bind(i32::try_from(clients)?)
            .execute(&pool)
            .await?;
        let script = tempfile::NamedTempFile::new()?;
        std::fs::write(
            script.path(),
            "UPDATE exactly_bench SET n = n + 1 WHERE id = :client_id + 1;\n",
        )?;
        let url = url.to_owned();
        Ok(Self {
            bin,
            url,
            clients,
            secs,
            script,
        })
    }

    /// One run; its transactions per second.
    fn run(&self) -> Result<f64> {
        let (c, t) = (self.clients.to_string(), self.secs.to_string());
        let output = Command::new(&self.bin)
            .args(["-n", "-T", &t, "-c", &c, "-j", &c, "-f"])
            .arg(self.script.path())
            .arg(&self.url)
            .output()?;
        let text = String::from_utf8_lossy(&output.stdout);
        text.lines()
            .find_map(|l| l.strip_prefix("tps = "))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| {
                let err = String::from_utf8_lossy(&output.stderr);
                format!("no tps in pgbench output: {text}{err}").into()
            })
    }

    async fn drop_table(&self, url: &str) -> Result<()> {
        let pool = sqlx::PgPool::connect(url).await?;
        sqlx::raw_sql("DROP TABLE exactly_bench")
            .execute(&pool)
            .await?;
        Ok(())
    }
}
