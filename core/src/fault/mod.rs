//! Fault-injection wrappers: a [`FaultyStore`] and a [`FaultyTransport`]
//! that fail, lie about failing, and duplicate on a seeded schedule. Crashes
//! and stale (paused) workers are injected through a [`Probe`](crate::Probe)
//! by the harness instead.

mod store;
mod transport;

pub use store::{FaultyColocated, FaultyStore, StoreFaults};
pub use transport::{FaultyTransport, TransportFaults};

use std::sync::atomic::{AtomicU64, Ordering};

use crate::env::Random;

/// Whether an event of probability `ppm` (parts per million) happens now.
pub fn roll(random: &dyn Random, ppm: u32) -> bool {
    ppm > 0 && (random.next_u64() % 1_000_000) < u64::from(ppm)
}

pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}
