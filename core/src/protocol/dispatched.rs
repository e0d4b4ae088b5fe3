//! What a [`Sender`](crate::Sender) remembers having dispatched: intent
//! entries it sent and left in place for the receiver's consume to drop
//! (`EntityRecord::consume_token`). Kept by intent record key, not message
//! id: an entity record may hold an entry for the same message id, and that
//! one must be finished in full. Its [`Sweeper`](super::Sweeper) shares
//! this memory, so an entry that outlives the grace period (a backlog in
//! the queue, an error-queued message) is removed without being sent
//! again. A sweeper in another process has no such memory, nor does this
//! one for an entry forgotten to make room: it sends the entry once more,
//! and the receiver drops the copy.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

/// How many sent intent entries a `Sender` remembers; past that, the oldest
/// are forgotten first.
pub(crate) const DISPATCHED_CAPACITY: usize = 65_536;

/// A bounded set of sent intent entries, by intent record key.
#[derive(Debug, Default)]
pub(crate) struct Dispatched {
    inner: Mutex<Memory>,
}

#[derive(Debug, Default)]
struct Memory {
    keys: HashSet<String>,
    /// Remembered keys, oldest first; may still hold forgotten ones.
    order: VecDeque<String>,
}

impl Dispatched {
    /// Remembers that the intent entry of the record at `key` was sent,
    /// forgetting the oldest one if the memory is full.
    pub(crate) fn remember(&self, key: &str) {
        let mut memory = self.lock();
        let Memory { keys, order } = &mut *memory;
        if !keys.insert(key.to_owned()) {
            return;
        }
        order.push_back(key.to_owned());
        while keys.len() > DISPATCHED_CAPACITY {
            if let Some(oldest) = order.pop_front() {
                keys.remove(&oldest);
            }
        }
        if order.len() > 2 * DISPATCHED_CAPACITY {
            order.retain(|k| keys.contains(k));
        }
    }

    /// Whether the intent entry of the record at `key` is known to have
    /// been sent.
    pub(crate) fn contains(&self, key: &str) -> bool {
        self.lock().keys.contains(key)
    }

    /// Forgets `key` (its entry is gone, or about to be removed).
    pub(crate) fn forget(&self, key: &str) {
        self.lock().keys.remove(key);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Memory> {
        // The memory stays consistent even if a holder panicked.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(i: usize) -> String {
        format!("i/t/{i}")
    }

    #[test]
    fn remembers_forgets_and_stays_bounded() {
        let d = Dispatched::default();
        assert!(!d.contains(&id(0)));
        d.remember(&id(0));
        assert!(d.contains(&id(0)));
        d.forget(&id(0));
        assert!(!d.contains(&id(0)));
        for i in 1..=DISPATCHED_CAPACITY + 1 {
            d.remember(&id(i));
        }
        assert!(!d.contains(&id(1)), "the oldest is forgotten first");
        assert!(d.contains(&id(2)) && d.contains(&id(DISPATCHED_CAPACITY + 1)));
        // Forgotten ids do not pile up in the order either.
        for i in 0..3 * DISPATCHED_CAPACITY {
            d.remember(&id(10_000_000 + i));
            d.forget(&id(10_000_000 + i));
        }
        let memory = d.lock();
        assert!(memory.order.len() <= 2 * DISPATCHED_CAPACITY + 1);
        assert!(memory.keys.len() <= DISPATCHED_CAPACITY);
    }
}
