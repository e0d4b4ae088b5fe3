//! The soak's progress bar and its final table.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use super::client::ClientStats;
use super::verify::Findings;
use crate::payments::ProviderStats;

/// A progress bar on a terminal, a plain line every 5 s otherwise.
pub struct Progress {
    bar: ProgressBar,
    plain: bool,
    last_line: std::sync::Mutex<Instant>,
}

impl Progress {
    /// Progress towards `orders` shipped.
    pub fn new(orders: u64, off: bool) -> Self {
        let bar = if off {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(orders)
        };
        let style = ProgressStyle::with_template(
            "{elapsed_precise} [{bar:40.cyan/blue}] {pos}/{len} shipped · {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        Self {
            plain: bar.is_hidden(),
            bar,
            last_line: std::sync::Mutex::new(Instant::now()),
        }
    }

    /// New counts.
    pub fn update(&self, placed: u64, completed: u64, kills: u64) {
        self.bar.set_position(completed);
        self.bar
            .set_message(format!("{placed} placed · {kills} kills"));
        if self.plain {
            let mut last = self
                .last_line
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if last.elapsed() >= Duration::from_secs(5) {
                *last = Instant::now();
                println!("soak: {placed} placed, {completed} shipped, {kills} kills");
            }
        }
    }

    /// Leaves the bar as it is.
    pub fn finish(&self) {
        self.bar.abandon();
    }
}

/// Everything the soak measured.
pub struct Report {
    /// Orders planned.
    pub orders: u64,
    /// Orders the API accepted (202).
    pub accepted: u64,
    /// Accepted orders with an attachment.
    pub attachments_sent: u64,
    /// What verification found.
    pub findings: Findings,
    /// The payment provider's counts.
    pub provider: ProviderStats,
    /// The client's counts.
    pub client: Arc<ClientStats>,
    /// Whether the service became quiet before the deadline.
    pub quiet: bool,
    /// Whether queue depths were part of that (SQLite queue only).
    pub queues_checked: bool,
    /// Kills, unexpected exits, graceful stops, worker processes.
    pub fleet: (u64, u64, u64, usize),
    /// When the last accepted order shipped.
    pub all_shipped_at: Option<Duration>,
    /// The whole run.
    pub elapsed: Duration,
    /// The plans' seed.
    pub seed: u64,
}

impl Report {
    /// Accepted orders that never shipped.
    pub fn lost(&self) -> u64 {
        self.accepted.saturating_sub(self.findings.completed)
    }

    /// Whether the promises held.
    pub fn passed(&self) -> bool {
        self.failures().is_empty()
    }

    fn failures(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.lost() > 0 {
            out.push("orders lost");
        }
        if self.provider.double_charged_orders > 0 {
            out.push("double charges");
        }
        if self.findings.duplicated > 0 {
            out.push("effects applied twice");
        }
        if self.client.unexpected.load(Ordering::Relaxed) > 0 {
            out.push("unexpected API answers");
        }
        out
    }

    /// Prints the table.
    pub fn print(&self) {
        let f = &self.findings;
        let c = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let (kills, crashes, graceful, workers) = self.fleet;
        let rate = self.all_shipped_at.map_or_else(
            || "n/a (not all shipped)".to_owned(),
            |t| {
                format!(
                    "{:.1} orders/s ({:.1} s to ship all)",
                    self.accepted as f64 / t.as_secs_f64(),
                    t.as_secs_f64()
                )
            },
        );
        let rows: Vec<(&str, String)> = vec![
            ("orders planned", self.orders.to_string()),
            ("orders accepted (202)", self.accepted.to_string()),
            ("orders completed (shipped)", f.completed.to_string()),
            ("lost (must be 0)", self.lost().to_string()),
            (
                "double charges at the provider (must be 0)",
                self.provider.double_charged_orders.to_string(),
            ),
            (
                "effects applied twice (must be 0)",
                f.duplicated.to_string(),
            ),
            ("orders charged", self.provider.orders_charged.to_string()),
            (
                "charge requests / replays by key / injected failures",
                format!(
                    "{} / {} / {}",
                    self.provider.requests, self.provider.replays, self.provider.injected_failures
                ),
            ),
            (
                "invoices present (checksum verified)",
                format!("{} (missing or corrupt: {})", f.invoices, f.bad_invoices),
            ),
            (
                "attachments shipped via claim check",
                format!("{} of {}", f.attachments, self.attachments_sent),
            ),
            (
                "orphan blobs after GC (must be 0)",
                format!(
                    "{} (GC deleted {}, blobs left {}, claim bodies left {})",
                    f.orphans, f.gc_deleted, f.blobs_left, f.claims_left
                ),
            ),
            ("error-queued", f.errors.values().sum::<u64>().to_string()),
            (
                "API requests / client retries",
                format!("{} / {}", c(&self.client.requests), c(&self.client.retries)),
            ),
            (
                "repeats answered identically",
                c(&self.client.identical_repeats).to_string(),
            ),
            (
                "reused keys refused with 422",
                c(&self.client.reuse_refused).to_string(),
            ),
            (
                "unexpected API answers (must be 0)",
                c(&self.client.unexpected).to_string(),
            ),
            (
                "worker processes / SIGKILLs / crashes",
                format!("{workers} / {kills} / {crashes}"),
            ),
            (
                "graceful stops at the end",
                format!("{graceful} of {workers}"),
            ),
            (
                "quiescent (no outbox entry, no token left)",
                match (self.quiet, self.queues_checked) {
                    (true, true) => "yes, and every queue empty".into(),
                    (true, false) => "yes (queue depths not checked on this queue)".into(),
                    (false, _) => "NO".into(),
                },
            ),
            ("throughput", rate),
            ("total time", format!("{:.1} s", self.elapsed.as_secs_f64())),
            ("seed", self.seed.to_string()),
        ];
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        println!();
        for (k, v) in &rows {
            println!("  {k:<width$}  {v}");
        }
        for (reason, n) in &f.errors {
            println!("    error queue: {n} × {reason}");
        }
        let failures = self.failures();
        if failures.is_empty() {
            println!("\nsoak PASSED");
        } else {
            println!("\nsoak FAILED: {}", failures.join(", "));
        }
    }
}
