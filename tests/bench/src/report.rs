//! Markdown tables of the results, printed to stdout so they can be pasted
//! into `docs/benchmarks.md` as they are.

use exactly::Guarantee;

use crate::measure::RunResult;
use crate::workload::{Shape, mode_label};

/// One measured run with what it was.
pub struct Row {
    pub shape: Shape,
    pub mode: Guarantee,
    pub entities: u64,
    pub concurrency: usize,
    /// Most deliveries a worker handled together.
    pub batch: usize,
    /// The run reported (the median one when repeated).
    pub result: RunResult,
    /// msgs/s of every repeat, sorted (empty for a single run).
    pub samples: Vec<f64>,
}

/// Median msgs/s, with the range over repeats when there were several.
fn rate(row: &Row) -> String {
    let median = format!("{:.0}", row.result.msgs_per_sec());
    match (row.samples.first(), row.samples.last()) {
        (Some(lo), Some(hi)) if row.samples.len() > 1 => format!("{median} ({lo:.0}–{hi:.0})"),
        _ => median,
    }
}

/// Exactly-once msgs/s over at-least-once msgs/s of the matching run.
fn ratio(rows: &[Row], row: &Row) -> String {
    let partner = rows.iter().find(|r| {
        r.mode == Guarantee::AtLeastOnce
            && r.shape == row.shape
            && r.entities == row.entities
            && r.concurrency == row.concurrency
            && r.batch == row.batch
    });
    match (row.mode, partner) {
        (Guarantee::ExactlyOnce, Some(alo)) => format!(
            "{:.2}×",
            row.result.msgs_per_sec() / alo.result.msgs_per_sec()
        ),
        _ => "—".into(),
    }
}

/// A latency in ms, or a dash for drain runs (no latency measured).
fn ms(r: &RunResult, v: f64) -> String {
    if r.latencies_us.is_empty() {
        "—".into()
    } else {
        format!("{v:.1}")
    }
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or("?".into(), |k| format!("{:.0}", k as f64 / 1024.0))
}

/// The main table: throughput, latency, round trips, memory.
pub fn workload_table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| shape | mode | msgs/s | p50 ms | p99 ms | store ops/msg (reads+writes) \
         | producer store ops/msg | queue ops/msg (send+recv+ack) | conflicts (commit/all) \
         | retries | peak RSS MiB | EO/ALO |\n\
         |---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n",
    );
    for row in rows {
        let r = &row.result;
        let (store, producer, t) = (&r.endpoint_store, &r.producer_store, &r.transport);
        out += &format!(
            "| {} | {} | {} | {} | {} | {:.2} ({:.2}+{:.2}) | {:.2} | {:.2} ({:.2}+{:.2}+{:.2}) | {}/{} | {} | {} | {} |\n",
            row.shape.label(),
            mode_label(row.mode),
            rate(row),
            ms(r, r.p50_ms()),
            ms(r, r.p99_ms()),
            r.store_per_msg(),
            r.per_msg(store.reads()),
            r.per_msg(store.writes()),
            r.per_msg(producer.total()),
            r.per_msg(t.send + t.receive + t.ack),
            r.per_msg(t.send),
            r.per_msg(t.receive),
            r.per_msg(t.ack),
            r.conflicts,
            store.conflict,
            r.retries,
            mib(r.peak_rss_kib),
            ratio(rows, row),
        );
    }
    out
}

/// Contention: one hot entity against many, both modes.
pub fn contention_table(rows: &[Row]) -> String {
    conflict_table(rows, "entities", |row| row.entities.to_string())
}

/// The fan-out: one at a time and in batches, both modes.
pub fn fan_out_table(rows: &[Row]) -> String {
    conflict_table(rows, "batch", |row| row.batch.to_string())
}

/// Throughput, latency and conflicts, per message fed in; the first column
/// says what differs between the rows.
fn conflict_table(rows: &[Row], first: &str, cell: fn(&Row) -> String) -> String {
    let mut out = format!(
        "| {first} | mode | msgs/s | p50 ms | p99 ms | conflicts (commit/all) | all conflicts/msg \
         | store ops/msg | shared consumes/msg | retries | EO/ALO |\n\
         |--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n",
    );
    for row in rows {
        let r = &row.result;
        out += &format!(
            "| {} | {} | {} | {} | {} | {}/{} | {:.2} | {:.2} | {:.2} | {} | {} |\n",
            cell(row),
            mode_label(row.mode),
            rate(row),
            ms(r, r.p50_ms()),
            ms(r, r.p99_ms()),
            r.conflicts,
            r.endpoint_store.conflict,
            r.per_msg(r.endpoint_store.conflict),
            r.store_per_msg(),
            r.per_msg(r.shared_consumes),
            r.retries,
            ratio(rows, row),
        );
    }
    out
}

/// Throughput against concurrency, both modes side by side.
pub fn sweep_table(backend: &str, rows: &[Row]) -> String {
    let mut out = format!(
        "| {backend}: concurrency | exactly-once msgs/s | at-least-once msgs/s | EO/ALO | EO conflicts (commit/all) |\n\
         |--:|--:|--:|--:|--:|\n"
    );
    for eo in rows.iter().filter(|r| r.mode == Guarantee::ExactlyOnce) {
        let alo = rows
            .iter()
            .find(|r| r.mode == Guarantee::AtLeastOnce && r.concurrency == eo.concurrency);
        out += &format!(
            "| {} | {} | {} | {} | {}/{} |\n",
            eo.concurrency,
            rate(eo),
            alo.map_or("—".into(), rate),
            ratio(rows, eo),
            eo.result.conflicts,
            eo.result.endpoint_store.conflict,
        );
    }
    out
}

/// A one-line account of a run, for the log.
pub fn line(backend: &str, row: &Row) -> String {
    let r = &row.result;
    let mut warn = String::new();
    let expected = r.messages * r.deliveries;
    if r.processed != expected {
        warn += &format!(
            " WARNING: processed {} of {expected} deliveries",
            r.processed
        );
    }
    if r.transport.nack > 0 {
        warn += &format!(" ({} nacks)", r.transport.nack);
    }
    if r.error_queued > 0 {
        warn += &format!(" WARNING: {} error-queued", r.error_queued);
    }
    format!(
        "{backend} {} {} entities={} c={}: {:.0} msgs/s, p50 {:.1} ms, p99 {:.1} ms, \
         {:.2} store ops/msg, {}/{} conflicts (commit/all), {} duplicates{warn}",
        row.shape.label(),
        mode_label(row.mode),
        row.entities,
        row.concurrency,
        r.msgs_per_sec(),
        r.p50_ms(),
        r.p99_ms(),
        r.store_per_msg(),
        r.conflicts,
        r.endpoint_store.conflict,
        r.duplicates,
    )
}
