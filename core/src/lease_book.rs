//! [`LeaseBook`]: for transport backends whose broker accepts a stale
//! receipt as if it were the current one.
//!
//! SQS takes any receipt handle a message ever had, and JetStream applies a
//! NAK on an old ack subject to the current delivery. A nack of a receipt
//! whose message was received again since would then release the *newer*
//! lease and let a third copy run beside the second. The `Transport`
//! contract forbids that (a receipt may only act on the delivery it was
//! issued for), so such a backend records the receipts it hands out and
//! asks the book before it nacks.
//!
//! ```
//! use std::time::Duration;
//! use exactly::lease_book::LeaseBook;
//! use tokio::time::Instant;
//!
//! let book = LeaseBook::default();
//! let until = Instant::now() + Duration::from_secs(30);
//! book.issued("m1", "first-handle", until);
//! book.issued("m1", "second-handle", until); // received again
//! assert!(!book.settle("m1", "first-handle")); // stale: leave the newer lease alone
//! assert!(book.settle("m1", "second-handle"));
//! assert!(book.settle("m2", "never-seen")); // another process's receipt: try it
//! ```

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::time::Instant;

/// Past this many entries, expired ones are dropped on the next insert.
const PRUNE_ABOVE: usize = 4096;

/// The receipts a transport handed out and not settled yet, by message id:
/// the latest handle of each message and when its lease ends.
#[derive(Debug, Default)]
pub struct LeaseBook(Mutex<HashMap<String, Lease>>);

#[derive(Debug)]
struct Lease {
    handle: String,
    until: Instant,
}

impl LeaseBook {
    /// Records that message `id` was received with `handle`, leased until
    /// `until`; replaces any earlier receipt of the same message.
    pub fn issued(&self, id: &str, handle: &str, until: Instant) {
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
    pub fn settle(&self, id: &str, handle: &str) -> bool {
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

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Lease>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
