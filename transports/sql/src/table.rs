//! The seam between the queue's logic and one database's SQL. Each
//! database gets a module implementing [`Table`]: `sqlite` (one writer,
//! one `UPDATE … RETURNING` claims rows) and `postgres` (`FOR UPDATE SKIP
//! LOCKED`, `NOTIFY` on send and nack).

use std::fmt;

use async_trait::async_trait;
use exactly::{StoreError, TransportError, Version, Write};

/// A message to insert.
#[derive(Debug)]
pub(crate) struct NewRow {
    pub queue: String,
    /// `Envelope::to_bytes`.
    pub envelope: Vec<u8>,
    /// Milliseconds since the epoch, on the queue's clock.
    pub visible_at: i64,
}

/// A row `lease` just claimed.
#[derive(Debug)]
pub(crate) struct Leased {
    pub seq: i64,
    pub envelope: Vec<u8>,
    /// Deliveries including this one.
    pub deliveries: i64,
}

/// What the claiming statement returns: `seq`, `envelope`, `deliveries`.
pub(crate) type LeasedRow = (i64, Vec<u8>, i64);

impl Leased {
    /// The claimed rows in `seq` order (`RETURNING` has no defined order).
    pub(crate) fn in_seq_order(mut rows: Vec<LeasedRow>) -> Vec<Self> {
        rows.sort_unstable_by_key(|(seq, _, _)| *seq);
        rows.into_iter()
            .map(|(seq, envelope, deliveries)| Self {
                seq,
                envelope,
                deliveries,
            })
            .collect()
    }
}

/// Maps a driver error of the queue: `Unavailable` when the database's
/// `is_transient` (the store crate's, so store and queue agree) says a
/// retry may work, else `Generic`.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn driver_error(
    error: sqlx::Error,
    is_transient: fn(&sqlx::Error) -> bool,
) -> TransportError {
    if is_transient(&error) {
        TransportError::unavailable(error)
    } else {
        TransportError::generic(error)
    }
}

/// The queue table: one row per message, `seq` never reused, so a receipt
/// can only ever name the message it was issued for.
#[async_trait]
pub(crate) trait Table: Send + Sync + fmt::Debug + 'static {
    /// Inserts all rows or none.
    async fn insert(&self, rows: Vec<NewRow>) -> Result<(), TransportError>;

    /// Atomically claims up to `max` rows of `queue` visible at `now`, in
    /// `seq` order: sets `lease`, hides them until `until`, counts the
    /// delivery. Returns them in `seq` order.
    async fn lease(
        &self,
        queue: &str,
        max: i64,
        now: i64,
        lease: &str,
        until: i64,
    ) -> Result<Vec<Leased>, TransportError>;

    /// Removes the rows named by (`queue`, `seq`), whoever holds them now,
    /// in one transaction.
    async fn delete(&self, rows: &[(&str, i64)]) -> Result<(), TransportError>;

    /// The store's `put_all` of `writes` (sizes checked against
    /// `max_value_bytes`), the insert of `rows` and the delete of `acked`,
    /// in one transaction of the database both live in
    /// ([`exactly::Colocated`]).
    async fn commit_with(
        &self,
        writes: &[Write],
        max_value_bytes: usize,
        rows: Vec<NewRow>,
        acked: &[(&str, i64)],
    ) -> Result<Vec<Version>, StoreError>;

    /// Makes the row visible at `visible_at` if `lease` still holds it.
    async fn release(
        &self,
        queue: &str,
        seq: i64,
        lease: &str,
        visible_at: i64,
    ) -> Result<(), TransportError>;
}
