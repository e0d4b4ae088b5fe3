//! Injected time and randomness, so a fault schedule replays exactly from its
//! seed. Production uses [`Env::system`]; the harness uses [`Env::seeded`].

use std::fmt;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::message::MessageId;

/// A source of time. Clocks are never trusted for correctness, only for
/// delays, back-off and retention windows.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_millis(&self) -> u64;
    /// Waits for `duration`.
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()>;
}

/// A source of randomness: message ids and back-off jitter.
pub trait Random: Send + Sync + fmt::Debug + 'static {
    /// A uniformly random `u64`.
    fn next_u64(&self) -> u64;
}

/// The wall clock and tokio's timer.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_millis(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// A clock that only moves when told to; `sleep` advances it and returns at once.
#[derive(Debug, Default)]
pub struct ManualClock {
    millis: AtomicU64,
}

impl ManualClock {
    /// A clock starting at `millis`.
    pub fn starting_at(millis: u64) -> Self {
        Self {
            millis: AtomicU64::new(millis),
        }
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        self.millis
            .fetch_add(by.as_millis() as u64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_millis(&self) -> u64 {
        self.millis.load(Ordering::SeqCst)
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        self.advance(duration);
        Box::pin(std::future::ready(()))
    }
}

/// Thread-local OS-seeded randomness.
#[derive(Debug, Default, Clone, Copy)]
pub struct ThreadRandom;

impl Random for ThreadRandom {
    fn next_u64(&self) -> u64 {
        rand::rng().next_u64()
    }
}

/// A deterministic generator (ChaCha8) for reproducible schedules.
pub struct SeededRandom(Mutex<ChaCha8Rng>);

impl SeededRandom {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Self(Mutex::new(ChaCha8Rng::seed_from_u64(seed)))
    }
}

impl fmt::Debug for SeededRandom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SeededRandom")
    }
}

impl Random for SeededRandom {
    fn next_u64(&self) -> u64 {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .random()
    }
}

/// The clock and randomness a runtime uses.
#[derive(Clone, Debug)]
pub struct Env {
    /// Time source.
    pub clock: Arc<dyn Clock>,
    /// Randomness source.
    pub random: Arc<dyn Random>,
}

impl Env {
    /// Wall clock and OS randomness.
    pub fn system() -> Self {
        Self {
            clock: Arc::new(SystemClock),
            random: Arc::new(ThreadRandom),
        }
    }

    /// A manual clock and seeded randomness: fully reproducible.
    pub fn seeded(seed: u64, clock: Arc<ManualClock>) -> Self {
        Self {
            clock,
            random: Arc::new(SeededRandom::new(seed)),
        }
    }

    /// A fresh UUID v7 message id from this clock and randomness.
    pub fn new_id(&self) -> MessageId {
        let mut bytes = [0u8; 10];
        bytes[..8].copy_from_slice(&self.random.next_u64().to_le_bytes());
        bytes[8..].copy_from_slice(&self.random.next_u64().to_le_bytes()[..2]);
        let uuid =
            uuid::Builder::from_unix_timestamp_millis(self.clock.now_millis(), &bytes).into_uuid();
        MessageId::from_uuid(uuid)
    }

    /// A uniformly random duration in `[0, max]` (back-off jitter).
    pub fn jitter(&self, max: Duration) -> Duration {
        let max_micros = max.as_micros() as u64;
        if max_micros == 0 {
            return Duration::ZERO;
        }
        Duration::from_micros(self.random.next_u64() % (max_micros + 1))
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_millis(&self) -> u64 {
        self.clock.now_millis()
    }
}

impl Default for Env {
    fn default() -> Self {
        Self::system()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_ids_replay() {
        let a = Env::seeded(7, Arc::new(ManualClock::starting_at(1_000)));
        let b = Env::seeded(7, Arc::new(ManualClock::starting_at(1_000)));
        let ids_a: Vec<_> = (0..5).map(|_| a.new_id()).collect();
        let ids_b: Vec<_> = (0..5).map(|_| b.new_id()).collect();
        assert_eq!(ids_a, ids_b);
        assert_eq!(ids_a[0].as_uuid().get_version_num(), 7);
        let unique: std::collections::HashSet<_> = ids_a.iter().collect();
        assert_eq!(unique.len(), 5);
    }

    #[test]
    fn jitter_stays_in_range() {
        let env = Env::seeded(1, Arc::new(ManualClock::default()));
        for _ in 0..100 {
            assert!(env.jitter(Duration::from_millis(5)) <= Duration::from_millis(5));
        }
        assert_eq!(env.jitter(Duration::ZERO), Duration::ZERO);
    }
}
