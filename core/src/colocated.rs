//! The [`Colocated`] seam: a store whose database also holds the queues, so
//! that a commit, the messages it sends and the ack of the message it
//! handled are one transaction.
//!
//! The protocol never needs this: it is correct over any
//! [`Store`](crate::Store) and any [`Transport`](crate::Transport). Where
//! the queue lives in the store's database (the SQL queue beside the SQLite
//! or PostgreSQL store), it saves round trips and
//! commits. Running step 3 (commit), step 4 (dispatch) and step 6 (ack) of
//! one worker as one transaction is a schedule the protocol already allows
//! — the same steps, in the same order, with no crash and no other step in
//! between — so every property checked of the protocol (`tla/`) holds of it
//! (`docs/protocol.md`, "One transaction where the queue shares the
//! database").

use std::fmt;

use async_trait::async_trait;

use crate::error::StoreError;
use crate::store::{Version, Write};
use crate::transport::{Outgoing, Receipt};

/// A store and a transport in one database, able to commit store writes,
/// sends and acks in one transaction.
///
/// # Contract
///
/// - `put_all_with` MUST be all or nothing: every write, every send and
///   every ack happen, or none does; a refused precondition fails with
///   [`StoreError::Conflict`] naming the key, and nothing is written, sent
///   or acked. (`refused_write_sends_and_acks_nothing`)
/// - The writes MUST behave as [`Store::put_all`](crate::Store::put_all)
///   of the same writes would (one write as [`Store::put`](crate::Store::put)),
///   the sends as [`Transport::send`](crate::Transport::send) (durable
///   before `Ok`) and the acks as
///   [`Transport::ack_all`](crate::Transport::ack_all) of the same
///   receipts. (`writes_sends_and_acks_together`)
/// - The store and the transport it commits to MUST be the ones the
///   endpoint (or sender) given it reads and receives with: the SQL
///   backend's `StoreAndQueue` is all three in one object, passed as each.
#[async_trait]
pub trait Colocated: Send + Sync + fmt::Debug + 'static {
    /// Writes `writes`, sends `send` and acks `ack`, in one transaction;
    /// returns the writes' new versions in order.
    async fn put_all_with(
        &self,
        writes: Vec<Write>,
        send: Vec<Outgoing>,
        ack: Vec<Receipt>,
    ) -> Result<Vec<Version>, StoreError>;
}
