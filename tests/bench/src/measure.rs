//! What one run measured, and the small tools to measure it: a process
//! clock for send timestamps, percentiles, peak RSS.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::counting_store::StoreOps;
use crate::observed::TransportOps;

/// Microseconds since the first call in this process. Timestamps are taken
/// and compared in the same process, so a monotonic clock is enough.
pub fn now_us() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    u64::try_from(EPOCH.get_or_init(Instant::now).elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// The `q` quantile (0..=1) of `sorted`, nearest rank; 0 when empty.
pub fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Resets the peak resident set size to the current one (Linux 4.0+).
/// Returns whether it worked; if not, peaks are since process start.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Peak resident set size (`VmHWM`) in KiB, if the platform reports it.
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// One line about the machine: cores, CPU model, memory.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map_or("unknown CPU", |v| v.trim_start_matches([' ', '\t', ':']));
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let ram_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or("?".into(), |kib| format!("{:.0}", kib / 1024.0 / 1024.0));
    format!("{cores} cores, {model}, {ram_gib} GiB RAM")
}

/// The 1-, 5- and 15-minute load averages: other work on the machine
/// skews every number, so the report states it.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "?".into())
}

/// Everything one run of one mode measured.
#[derive(Clone, Debug, Default)]
pub struct RunResult {
    /// Messages fed in (each completes after all its hops).
    pub messages: u64,
    /// Deliveries handled per message (1, 2 for the chain, 1 + 8 for the
    /// fan-out).
    pub deliveries: u64,
    pub elapsed: Duration,
    /// Send → acked on the last hop, microseconds, sorted.
    pub latencies_us: Vec<u64>,
    /// Store calls made by the endpoints.
    pub endpoint_store: StoreOps,
    /// Store calls made by the producer (the `Sender`'s intent records).
    pub producer_store: StoreOps,
    /// Transport calls made by the endpoints.
    pub transport: TransportOps,
    /// Deliveries whose attempt committed, over all hops.
    pub processed: u64,
    pub conflicts: u64,
    /// Deliveries whose token was consumed with others' in one write of
    /// their holder (`Stats::shared_consumes`).
    pub shared_consumes: u64,
    pub retries: u64,
    pub error_queued: u64,
    pub duplicates: u64,
    pub peak_rss_kib: Option<u64>,
    /// Store calls of one sweep pass over the first endpoint, after the run.
    pub sweep_pass: Option<StoreOps>,
    /// `Sender` intent records still stored after the run.
    pub intent_records: Option<u64>,
}

impl RunResult {
    pub fn msgs_per_sec(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn p50_ms(&self) -> f64 {
        percentile(&self.latencies_us, 0.50) as f64 / 1000.0
    }

    pub fn p99_ms(&self) -> f64 {
        percentile(&self.latencies_us, 0.99) as f64 / 1000.0
    }

    /// Endpoint store round trips per message (all hops).
    pub fn store_per_msg(&self) -> f64 {
        self.per_msg(self.endpoint_store.total())
    }

    pub fn per_msg(&self, count: u64) -> f64 {
        count as f64 / self.messages.max(1) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.5), 50);
        assert_eq!(percentile(&v, 0.99), 99);
        assert_eq!(percentile(&v, 1.0), 100);
        assert_eq!(percentile(&[7], 0.99), 7);
        assert_eq!(percentile(&[], 0.5), 0);
    }

    #[test]
    fn peak_rss_is_readable_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(peak_rss_kib().is_some_and(|k| k > 0));
        }
    }
}
