//! Counters an endpoint keeps about its own work. Each is kept twice: in
//! [`Stats`] (read it with `Endpoint::stats`) and through the `metrics`
//! facade as `exactly_<name>_total{endpoint}`, for whatever recorder the
//! application installs (Prometheus, OTLP, ...).

use std::sync::atomic::{AtomicU64, Ordering};

/// Running totals for one endpoint (or sweeper).
#[derive(Debug, Default)]
pub struct Stats {
    /// The endpoint these are for (the metrics label).
    pub endpoint: String,
    /// Deliveries whose attempt committed.
    pub processed: AtomicU64,
    /// Of those, deliveries committed in a batch with others
    /// (`EndpointBuilder::batch`).
    pub batched: AtomicU64,
    /// Processed deliveries whose token was consumed in one write of its
    /// holder together with others' (several messages from one sender: a
    /// fan-out, or a chain's busy entity): the members of one batch, or
    /// commits of workers handling one message each that met at the holder
    /// (grouped consumes).
    pub shared_consumes: AtomicU64,
    /// Deliveries dropped as already processed.
    pub duplicates: AtomicU64,
    /// Deliveries that found and finished an earlier attempt's entry.
    pub recovered: AtomicU64,
    /// Commits (conditional writes of an attempt's new state) that lost a
    /// race and reran the handler.
    pub conflicts: AtomicU64,
    /// Bookkeeping writes that lost a race and were retried: consuming a
    /// token, removing an outbox entry or recording a call result in a
    /// record someone else wrote meanwhile (typically a receiver consuming
    /// its token in the sender's record). The cost of fan-in to one record.
    pub bookkeeping_conflicts: AtomicU64,
    /// Failed attempts that were retried (immediately or later).
    pub retries: AtomicU64,
    /// Messages moved to the error queue.
    pub error_queued: AtomicU64,
    /// Outbox entries the sweeper finished.
    pub swept: AtomicU64,
    /// Finished records the sweeper deleted after their retention
    /// (`Sweeper::expire_finished`).
    pub expired: AtomicU64,
}

/// One of the counters.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Counter {
    Processed,
    Batched,
    SharedConsumes,
    Duplicates,
    Recovered,
    Conflicts,
    BookkeepingConflicts,
    Retries,
    ErrorQueued,
    Swept,
    Expired,
}

impl Stats {
    /// Counters for `endpoint`.
    pub fn for_endpoint(endpoint: &str) -> Self {
        Self {
            endpoint: endpoint.to_owned(),
            ..Self::default()
        }
    }

    pub(crate) fn add(&self, counter: Counter) {
        let (cell, name) = match counter {
            Counter::Processed => (&self.processed, "exactly_processed_total"),
            Counter::Batched => (&self.batched, "exactly_batched_total"),
            Counter::SharedConsumes => (&self.shared_consumes, "exactly_shared_consumes_total"),
            Counter::Duplicates => (&self.duplicates, "exactly_duplicates_dropped_total"),
            Counter::Recovered => (&self.recovered, "exactly_recovered_total"),
            Counter::Conflicts => (&self.conflicts, "exactly_conflicts_total"),
            Counter::BookkeepingConflicts => (
                &self.bookkeeping_conflicts,
                "exactly_bookkeeping_conflicts_total",
            ),
            Counter::Retries => (&self.retries, "exactly_retries_total"),
            Counter::ErrorQueued => (&self.error_queued, "exactly_error_queued_total"),
            Counter::Swept => (&self.swept, "exactly_sweeper_recoveries_total"),
            Counter::Expired => (&self.expired, "exactly_expired_records_total"),
        };
        cell.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(name, "endpoint" => self.endpoint.clone()).increment(1);
    }

    /// A plain copy of the counters.
    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            processed: get(&self.processed),
            batched: get(&self.batched),
            shared_consumes: get(&self.shared_consumes),
            duplicates: get(&self.duplicates),
            recovered: get(&self.recovered),
            conflicts: get(&self.conflicts),
            bookkeeping_conflicts: get(&self.bookkeeping_conflicts),
            retries: get(&self.retries),
            error_queued: get(&self.error_queued),
            swept: get(&self.swept),
            expired: get(&self.expired),
        }
    }
}

/// A copy of [`Stats`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct StatsSnapshot {
    pub processed: u64,
    pub batched: u64,
    pub shared_consumes: u64,
    pub duplicates: u64,
    pub recovered: u64,
    pub conflicts: u64,
    pub bookkeeping_conflicts: u64,
    pub retries: u64,
    pub error_queued: u64,
    pub swept: u64,
    pub expired: u64,
}
