//! The scenarios: which runs, in which order, and what gets printed. Every
//! comparison runs both modes back to back on the same backend.

use std::path::Path;
use std::time::Duration;

use exactly::Guarantee;
use indicatif::{ProgressBar, ProgressStyle};

use crate::Table;
use crate::backend::Backend;
use crate::plot::{self, Series};
use crate::report::{self, Row};
use crate::workload::{self, Shape, Spec, mode_label};

/// The batch of the fan-out's batched runs: the fan-out's messages to one
/// endpoint, twice over.
const FAN_OUT_BATCH: usize = 2 * workload::FAN_OUT as usize;

/// What to run, from the command line.
#[derive(Clone, Debug)]
pub struct Settings {
    pub messages: u64,
    pub concurrency: usize,
    pub entities: u64,
    /// Messages in flight; `None`: twice the workers (times the batch).
    pub window: Option<usize>,
    /// Producer tasks; `None`: one per worker.
    pub producers: Option<usize>,
    /// Most deliveries a worker handles together (`EndpointBuilder::batch`).
    pub batch: usize,
    /// Messages of each contention run.
    pub hot_messages: u64,
    /// Messages of each concurrency-sweep run.
    pub sweep_messages: u64,
    pub sweep_levels: Vec<usize>,
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub pgbench_duration: Duration,
    /// Queue everything first and time the drain (see `Spec::drain`).
    pub drain: bool,
    /// The modes measured (normally both).
    pub modes: Vec<Guarantee>,
    /// Runs of each spec; the median is reported.
    pub repeats: usize,
    /// Commits, sends and acks in one transaction (SQLite, PostgreSQL).
    pub colocated: bool,
    /// The producer's `Sender` groups concurrent intent writes.
    pub group_commit: bool,
    /// The tables of a backend to measure.
    pub tables: Vec<Table>,
}

impl Settings {
    fn spec(&self, mode: Guarantee, shape: Shape, entities: u64, concurrency: usize) -> Spec {
        Spec {
            mode,
            shape,
            messages: self.messages,
            entities,
            concurrency,
            window: self
                .window
                .unwrap_or(2 * concurrency * shape.hops() as usize * self.batch),
            drain: self.drain,
            batch: self.batch,
            colocated: self.colocated,
            group_commit: self.group_commit,
            producers: self.producers.unwrap_or(concurrency),
        }
    }
}

/// Runs one spec on a fresh store and transport, with a progress bar.
async fn measure(backend: &Backend, spec: Spec) -> Result<Row, String> {
    let run = workload::run_name();
    // The pool is sized for as many producers as workers; count the
    // producers beyond that as workers.
    let extra_producers = spec.producers.saturating_sub(spec.concurrency);
    let fresh = backend
        .fresh(
            spec.concurrency * spec.shape.hops() as usize + extra_producers,
            spec.batch,
            &run,
        )
        .await?;
    let bar = ProgressBar::new(spec.messages).with_style(
        ProgressStyle::with_template(
            "{prefix:40} [{bar:30}] {pos}/{len} {per_sec} ETA {eta} {msg}",
        )
        .map_err(|e| e.to_string())?,
    );
    bar.set_prefix(format!(
        "{} {} {} c={} b={}",
        backend.label(),
        spec.shape.label(),
        mode_label(spec.mode),
        spec.concurrency,
        spec.batch
    ));
    let result = workload::run(fresh, &spec, &run, &bar).await;
    bar.finish_and_clear();
    let row = Row {
        shape: spec.shape,
        mode: spec.mode,
        entities: spec.entities,
        concurrency: spec.concurrency,
        batch: spec.batch,
        result: result?,
        samples: Vec::new(),
    };
    eprintln!("{}", report::line(backend.label(), &row));
    Ok(row)
}

/// Runs every spec `repeats` times, round-robin, so that a busy spell of
/// the machine falls on all of them alike; keeps per spec the run with the
/// median msgs/s, with every run's msgs/s as its samples.
async fn measure_all(
    backend: &Backend,
    specs: &[Spec],
    repeats: usize,
) -> Result<Vec<Row>, String> {
    let mut runs: Vec<Vec<Row>> = specs.iter().map(|_| Vec::new()).collect();
    for _ in 0..repeats.max(1) {
        for (spec, runs) in specs.iter().zip(&mut runs) {
            runs.push(measure(backend, spec.clone()).await?);
        }
    }
    Ok(runs.into_iter().filter_map(median).collect())
}

fn median(mut runs: Vec<Row>) -> Option<Row> {
    runs.sort_by(|a, b| a.result.msgs_per_sec().total_cmp(&b.result.msgs_per_sec()));
    let samples: Vec<f64> = runs.iter().map(|r| r.result.msgs_per_sec()).collect();
    let mut median = runs.into_iter().nth(samples.len() / 2)?;
    median.samples = samples;
    Some(median)
}

/// The tables of one backend that `s.tables` asks for: the workload
/// (direct and chain, both modes), contention, the fan-out. Returns the
/// exactly-once direct run's msgs/s (for pgbench's ratio).
pub async fn backend_scenario(
    backend: &Backend,
    s: &Settings,
    note: &str,
) -> Result<Option<f64>, String> {
    println!("## {}\n", backend.label());
    if !note.is_empty() {
        println!("{note}");
    }
    let feed = match (s.drain, s.window) {
        (true, _) => "drain: all queued first, then the endpoints timed emptying the queue".into(),
        (false, None) if s.batch > 1 => format!(
            "closed loop: at most 2 × {} messages in flight per worker",
            s.batch
        ),
        (false, None) => "closed loop: at most 2 messages in flight per worker".into(),
        (false, Some(w)) => format!("closed loop: at most {w} messages in flight"),
    };
    let batch = match s.batch {
        1 => String::new(),
        n => format!(" taking batches of up to {n} deliveries"),
    };
    println!(
        "{} messages over {} entities, {} workers per endpoint{batch}, {feed}.\n",
        s.messages, s.entities, s.concurrency,
    );
    let eo = match s.tables.contains(&Table::Workload) {
        true => workload_table(backend, s).await?,
        false => None,
    };
    if s.tables.contains(&Table::Contention) {
        contention(backend, s).await?;
    }
    if s.tables.contains(&Table::FanOut) {
        fan_out(backend, s).await?;
    }
    Ok(eo)
}

/// Direct and chain, both modes; the exactly-once direct run's msgs/s.
async fn workload_table(backend: &Backend, s: &Settings) -> Result<Option<f64>, String> {
    let mut specs = Vec::new();
    for shape in [Shape::Direct, Shape::Chain] {
        for &mode in &s.modes {
            specs.push(s.spec(mode, shape, s.entities, s.concurrency));
        }
    }
    let rows = measure_all(backend, &specs, s.repeats).await?;
    println!("{}", report::workload_table(&rows));
    for row in rows.iter().filter(|r| r.mode == Guarantee::ExactlyOnce) {
        if let Some(n) = row.result.intent_records {
            println!(
                "After the {} exactly-once run: {n} `Sender` intent records still stored \
                 ({} messages sent).\n",
                row.shape.label(),
                row.result.messages
            );
        }
    }
    if let Some(pass) = rows.first().and_then(|r| r.result.sweep_pass) {
        println!(
            "One `Sweeper` pass over the {} entity records afterwards: {} list + {} get calls.\n",
            s.entities, pass.list, pass.get
        );
    }
    Ok(rows
        .iter()
        .find(|r| r.mode == Guarantee::ExactlyOnce && r.shape == Shape::Direct)
        .map(|r| r.result.msgs_per_sec()))
}

/// One hot entity against all of them, direct.
async fn contention(backend: &Backend, s: &Settings) -> Result<(), String> {
    let mut specs = Vec::new();
    for entities in [1, s.entities] {
        for &mode in &s.modes {
            specs.push(Spec {
                messages: s.hot_messages,
                ..s.spec(mode, Shape::Direct, entities, s.concurrency)
            });
        }
    }
    let hot = measure_all(backend, &specs, s.repeats).await?;
    println!(
        "### {}: contention ({} messages, direct)\n\n{}",
        backend.label(),
        s.hot_messages,
        report::contention_table(&hot)
    );
    Ok(())
}

/// A hot sender: every first-hop message sends `FAN_OUT` on, their tokens
/// all in its entity's record, which each receiver writes to consume its
/// own; one at a time and in batches.
async fn fan_out(backend: &Backend, s: &Settings) -> Result<(), String> {
    let mut specs = Vec::new();
    for batch in [1, FAN_OUT_BATCH] {
        for &mode in &s.modes {
            specs.push(Spec {
                messages: s.hot_messages,
                batch,
                window: s.window.unwrap_or(2 * s.concurrency * batch),
                ..s.spec(mode, Shape::FanOut, s.entities, s.concurrency)
            });
        }
    }
    let fanned = measure_all(backend, &specs, s.repeats).await?;
    println!(
        "### {}: fan-out ({} messages, each sending {} on)\n\n{}",
        backend.label(),
        s.hot_messages,
        workload::FAN_OUT,
        report::fan_out_table(&fanned)
    );
    Ok(())
}

/// Throughput against concurrency for both modes on each backend; returns
/// the series for the plot.
pub async fn sweep(backends: &[Backend], s: &Settings) -> Result<Vec<Series>, String> {
    let mut series = Vec::new();
    for backend in backends {
        let mut specs = Vec::new();
        for &c in &s.sweep_levels {
            for &mode in &s.modes {
                specs.push(Spec {
                    messages: s.sweep_messages,
                    ..s.spec(mode, Shape::Direct, s.entities, c)
                });
            }
        }
        let rows = measure_all(backend, &specs, s.repeats).await?;
        println!(
            "### {}: concurrency sweep ({} messages, direct)\n\n{}",
            backend.label(),
            s.sweep_messages,
            report::sweep_table(backend.label(), &rows)
        );
        for &mode in &s.modes {
            series.push(Series {
                label: format!("{} {}", backend.label(), mode_label(mode)),
                points: rows
                    .iter()
                    .filter(|r| r.mode == mode)
                    .map(|r| (r.concurrency as f64, r.result.msgs_per_sec()))
                    .collect(),
            });
        }
    }
    Ok(series)
}

/// The sweep, written as a plot at `path`.
pub async fn sweep_and_plot(backends: &[Backend], s: &Settings, path: &Path) -> Result<(), String> {
    let series = sweep(backends, s).await?;
    #[cfg(feature = "postgres")]
    check_durability(&backends.iter().flat_map(backends_pg).collect::<Vec<_>>()).await;
    plot::throughput(path, &series)?;
    println!("Plot written to {}.\n", path.display());
    Ok(())
}

/// The PostgreSQL scenario and `pgbench` at the same client count; skipped,
/// saying what is missing, when there is no server.
#[cfg(feature = "postgres")]
pub async fn postgres(s: &Settings) -> Result<(), String> {
    let pg = match crate::pg::Postgres::connect().await {
        Ok(pg) => pg,
        Err(why) => return skipped("postgres", &why),
    };
    let note = format!("Server settings: {}.\n", pg.durability);
    let pgbench = pg
        .pgbench(s.entities, s.concurrency, s.pgbench_duration)
        .await;
    let backend = Backend::Postgres(pg);
    let eo = backend_scenario(&backend, s, &note).await?;
    check_durability(&backends_pg(&backend)).await;
    match pgbench.and_then(|tps| Ok((tps, eo.ok_or("no exactly-once run")?))) {
        Ok((tps, eo)) => println!(
            "### postgres: physical limit\n\n`pgbench`, one-row `UPDATE` of one of {} rows, \
             {} clients, {:?}: **{tps:.0} tps**. Exactly-once direct: {eo:.0} msgs/s = \
             **{:.2}×** pgbench (target ≥ 0.5×).\n",
            s.entities,
            s.concurrency,
            s.pgbench_duration,
            eo / tps
        ),
        Err(why) => println!("### postgres: physical limit\n\npgbench skipped: {why}\n"),
    }
    Ok(())
}

#[cfg(feature = "postgres")]
fn backends_pg(backend: &Backend) -> Vec<&crate::pg::Postgres> {
    match backend {
        Backend::Postgres(pg) => vec![pg],
        #[cfg(feature = "rabbitmq")]
        Backend::PostgresRabbit(pg, _) => vec![pg],
        _ => Vec::new(),
    }
}

/// `PostgresStore` + `RabbitQueue`: the store as in [`postgres`], the
/// queue on RabbitMQ (`EXACTLY_TEST_RABBITMQ_URL`). Skipped with a note
/// when either server is not configured.
#[cfg(feature = "rabbitmq")]
pub async fn postgres_rabbitmq(s: &Settings) -> Result<(), String> {
    let servers = crate::pg::Postgres::connect().await.and_then(|pg| {
        crate::backend::server_url("EXACTLY_TEST_RABBITMQ_URL", "rabbitmq").map(|url| (pg, url))
    });
    let (pg, url) = match servers {
        Ok(servers) => servers,
        Err(why) => return skipped("postgres + rabbitmq", &why),
    };
    let note = format!("Server settings: {}.\n", pg.durability);
    let backend = Backend::PostgresRabbit(pg, url);
    backend_scenario(&backend, s, &note).await?;
    check_durability(&backends_pg(&backend)).await;
    Ok(())
}

/// `ObjectStoreStore` on S3 (`EXACTLY_TEST_S3_URL`: moto) + `NatsQueue`
/// (`EXACTLY_TEST_NATS_URL`), a new bucket and new streams for every run.
/// Skipped with a note when either server is not configured. moto serves
/// only a few hundred S3 requests/s, so `main` gives this scenario 300
/// messages by default instead of 5,000 (contention runs: 60).
#[cfg(feature = "s3-nats")]
pub async fn s3_nats(s: &Settings) -> Result<(), String> {
    let backend = match crate::s3_nats::S3Nats::from_env() {
        Ok(servers) => Backend::S3Nats(servers),
        Err(why) => return skipped("s3 + nats", &why),
    };
    let note = "S3 on moto, an emulator (one Python process): msgs/s are moto's, not S3's. \
                object_store has no `put_all`, so a commit and the token's consume are \
                separate writes.\n";
    backend_scenario(&backend, s, note).await.map(drop)
}

/// Prints scenario `title` as skipped, saying why.
pub fn skipped(title: &str, why: &str) -> Result<(), String> {
    println!("## {title}\n\nSkipped: {why}\n");
    Ok(())
}

/// Warns when the server's durability settings changed during the runs.
#[cfg(feature = "postgres")]
pub async fn check_durability(servers: &[&crate::pg::Postgres]) {
    for pg in servers {
        match pg.durability_now().await {
            Ok(now) if now == pg.durability => {}
            Ok(now) => println!(
                "**WARNING: PostgreSQL settings changed during the runs: {} at the start, \
                 {now} at the end.**\n",
                pg.durability
            ),
            Err(e) => println!("PostgreSQL settings could not be read again: {e}\n"),
        }
    }
}

/// The backends the sweep runs on: SQLite, and PostgreSQL when reachable.
pub async fn sweep_backends() -> Vec<Backend> {
    #[allow(unused_mut)]
    let mut backends = vec![Backend::Sqlite];
    #[cfg(feature = "postgres")]
    match crate::pg::Postgres::connect().await {
        Ok(pg) => {
            println!("PostgreSQL settings for the sweep: {}.\n", pg.durability);
            backends.push(Backend::Postgres(pg));
        }
        Err(why) => println!("PostgreSQL left out of the sweep: {why}\n"),
    }
    backends
}
