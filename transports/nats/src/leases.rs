//! The receipts this transport handed out, so that a stale nack — for a
//! message received again since — does not release the newer lease
//! (JetStream applies a NAK on an old ack subject to the current delivery).

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::time::Instant;

/// Past this many entries, expired ones are dropped on the next insert.
const PRUNE_ABOVE: usize = 4096;

#[derive(Debug, Default)]
pub(crate) struct Leases(Mutex<HashMap<String, Lease>>);

#[derive(Debug)]
struct Lease {
    handle: String,
    until: Instant,
}

impl Leases {
    /// Records that message `id` was received with `handle`, leased until `until`.
    pub(crate) fn issued(&self, id: &str, handle: &str, until: Instant) {
        let mut map = self.lock();
        if map.len() > PRUNE_ABOVE {
            let now = Instant::now();
            map.retain(|_, l| l.until > now);
        }
        let lease = Lease {
            handle: handle.to_owned(),
            until,
        };
        map.insert(id.to_owned(), lease);
    }

    /// Forgets `handle`'s lease and says whether releasing it can still
    /// matter: false when this process received the message again since, or
    /// the lease already ran out (the message is visible anyway). Unknown
    /// receipts (another process's, or forgotten) are worth trying.
    pub(crate) fn settle(&self, id: &str, handle: &str) -> bool {
        let mut map = self.lock();
        match map.get(id) {
            None => true,
            Some(lease) if lease.handle != handle => false,
            Some(lease) => {
                let live = lease.until > Instant::now();
                map.remove(id);
                live
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Lease>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
