//! Counters an endpoint keeps about its own work.

use std::sync::atomic::{AtomicU64, Ordering};

/// Running totals for one endpoint (or sweeper).
#[derive(Debug, Default)]
pub struct Stats {
    /// Deliveries whose attempt committed.
    pub processed: AtomicU64,
    /// Deliveries dropped as already processed.
    pub duplicates: AtomicU64,
    /// Deliveries that found and finished an earlier attempt's entry.
    pub recovered: AtomicU64,
    /// Conditional writes that lost a race.
    pub conflicts: AtomicU64,
    /// Failed attempts that were retried (immediately or later).
    pub retries: AtomicU64,
    /// Messages moved to the error queue.
    pub error_queued: AtomicU64,
    /// Outbox entries the sweeper finished.
    pub swept: AtomicU64,
}

impl Stats {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A plain copy of the counters.
    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            processed: get(&self.processed),
            duplicates: get(&self.duplicates),
            recovered: get(&self.recovered),
            conflicts: get(&self.conflicts),
            retries: get(&self.retries),
            error_queued: get(&self.error_queued),
            swept: get(&self.swept),
        }
    }
}

/// A copy of [`Stats`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct StatsSnapshot {
    pub processed: u64,
    pub duplicates: u64,
    pub recovered: u64,
    pub conflicts: u64,
    pub retries: u64,
    pub error_queued: u64,
    pub swept: u64,
}
