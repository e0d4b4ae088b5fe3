//! What a process remembers having dispatched: outbox entries that only
//! send messages, sent and left in place for the receivers' consumes to
//! drop (`EntityRecord::consume_token`). A [`Sender`](crate::Sender)
//! remembers its intent entries; an endpoint the entries its commits left
//! (`tla/ExactlyOnce.tla`, `WorkerLeavesEntry`). An entry is remembered by
//! its record's key and its incoming message id: an entity record may hold
//! an entry for the same message id as an intent record, and that one is
//! another entry.
//!
//! A load of the record skips a remembered entry (its messages were sent;
//! the consumes will drop it), and the [`Sweeper`](super::Sweeper) that
//! shares the memory removes one that outlives the grace period (a backlog
//! in the queue, an error-queued message) without sending it again. A
//! process without the memory — another one, a restart, an entry forgotten
//! to make room — finishes the entry as any pending entry: it sends the
//! messages once more, and the receivers drop the copies.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use crate::message::MessageId;
use crate::record::EntityRecord;

/// How many sent entries a process remembers; past that, the oldest are
/// forgotten first.
pub(crate) const DISPATCHED_CAPACITY: usize = 65_536;

/// A bounded set of sent entries, by record key and incoming message id.
#[derive(Debug, Default)]
pub(crate) struct Dispatched {
    inner: Mutex<Memory>,
}

/// One remembered entry per send of a `Sender` (each in its own intent
/// record), so the memory is built for that: a record's key is stored
/// once, shared with the order, and its few entries are a short list.
#[derive(Debug, Default)]
struct Memory {
    /// Record key → the remembered entries of that record.
    entries: HashMap<Arc<str>, Vec<MessageId>>,
    /// How many entries are remembered.
    len: usize,
    /// Remembered entries, oldest first; may still hold forgotten ones.
    order: VecDeque<(Arc<str>, MessageId)>,
}

impl Memory {
    fn remove(&mut self, key: &str, entry: MessageId) -> bool {
        let Some(ids) = self.entries.get_mut(key) else {
            return false;
        };
        let Some(at) = ids.iter().position(|id| *id == entry) else {
            return false;
        };
        ids.swap_remove(at);
        if ids.is_empty() {
            self.entries.remove(key);
        }
        self.len -= 1;
        true
    }

    fn contains(&self, key: &str, entry: MessageId) -> bool {
        self.entries
            .get(key)
            .is_some_and(|ids| ids.contains(&entry))
    }
}

impl Dispatched {
    /// Remembers that the entry for `entry` in the record at `key` was
    /// sent, forgetting the oldest one if the memory is full.
    pub(crate) fn remember(&self, key: &str, entry: MessageId) {
        let mut memory = self.lock();
        let memory = &mut *memory;
        let shared = match memory.entries.get_key_value(key) {
            Some((_, ids)) if ids.contains(&entry) => return,
            Some((shared, _)) => shared.clone(),
            None => Arc::from(key),
        };
        memory
            .entries
            .entry(shared.clone())
            .or_default()
            .push(entry);
        memory.len += 1;
        memory.order.push_back((shared, entry));
        while memory.len > DISPATCHED_CAPACITY {
            if let Some((oldest, id)) = memory.order.pop_front() {
                memory.remove(&oldest, id);
            }
        }
        if memory.order.len() > 2 * DISPATCHED_CAPACITY {
            let Memory { entries, order, .. } = memory;
            order.retain(|(k, id)| entries.get(k).is_some_and(|ids| ids.contains(id)));
        }
    }

    /// Whether the entry for `entry` in the record at `key` is known to
    /// have been sent.
    pub(crate) fn contains(&self, key: &str, entry: MessageId) -> bool {
        self.lock().contains(key, entry)
    }

    /// Forgets an entry (it is gone, or about to be removed).
    pub(crate) fn forget(&self, key: &str, entry: MessageId) {
        self.lock().remove(key, entry);
    }

    /// Forgets the remembered entries of the record at `key` that `record`
    /// (as just read) no longer holds: their messages' consumes dropped
    /// them.
    pub(crate) fn forget_gone(&self, key: &str, record: &EntityRecord) {
        let mut memory = self.lock();
        let Some(ids) = memory.entries.get_mut(key) else {
            return;
        };
        let before = ids.len();
        ids.retain(|id| record.entry(*id).is_some());
        let gone = before - ids.len();
        if ids.is_empty() {
            memory.entries.remove(key);
        }
        memory.len -= gone;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Memory> {
        // The memory stays consistent even if a holder panicked.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: usize) -> String {
        format!("i/t/{i}")
    }

    fn id(i: usize) -> MessageId {
        MessageId::derived("dispatched", &i.to_string())
    }

    #[test]
    fn remembers_forgets_and_stays_bounded() {
        let d = Dispatched::default();
        assert!(!d.contains(&key(0), id(0)));
        d.remember(&key(0), id(0));
        assert!(d.contains(&key(0), id(0)));
        assert!(!d.contains(&key(0), id(1)), "another entry of the record");
        assert!(!d.contains(&key(1), id(0)), "the same id in another record");
        d.forget(&key(0), id(0));
        assert!(!d.contains(&key(0), id(0)));
        for i in 1..=DISPATCHED_CAPACITY + 1 {
            d.remember(&key(i), id(i));
        }
        assert!(!d.contains(&key(1), id(1)), "the oldest is forgotten first");
        assert!(d.contains(&key(2), id(2)));
        assert!(d.contains(&key(DISPATCHED_CAPACITY + 1), id(DISPATCHED_CAPACITY + 1)));
        // Forgotten entries do not pile up in the order either.
        for i in 0..3 * DISPATCHED_CAPACITY {
            d.remember(&key(10_000_000 + i), id(i));
            d.forget(&key(10_000_000 + i), id(i));
        }
        let memory = d.lock();
        assert!(memory.order.len() <= 2 * DISPATCHED_CAPACITY + 1);
        assert!(memory.len <= DISPATCHED_CAPACITY);
    }

    #[test]
    fn forgets_the_entries_a_record_no_longer_holds() {
        let d = Dispatched::default();
        d.remember("e/a/k", id(1));
        d.remember("e/a/k", id(2));
        let mut record = EntityRecord::default();
        record.outbox.push(crate::record::OutboxEntry {
            incoming: id(2),
            ..Default::default()
        });
        d.forget_gone("e/a/k", &record);
        assert!(!d.contains("e/a/k", id(1)), "its entry is gone");
        assert!(d.contains("e/a/k", id(2)), "still in the record");
    }
}
