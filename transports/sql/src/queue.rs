//! [`SqlQueue`]: the `Transport` contract on a database table.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use exactly::env::{Clock, SystemClock};
use exactly::transport::Capabilities;
use exactly::{Delivery, Envelope, Outgoing, Receipt, Transport, TransportError};
use tokio::sync::Notify;

use crate::table::{NewRow, Table};

/// Default lease: how long a received message stays hidden before it is
/// delivered again if neither acked nor nacked.
pub const DEFAULT_VISIBILITY_TIMEOUT: Duration = Duration::from_secs(30);

/// Default interval at which a waiting `receive` looks at the table again,
/// for messages sent by other processes, delays ending and leases expiring.
/// Sends through the same [`SqlQueue`] wake it at once.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Default largest message body: 1 MiB. Larger bodies belong in a blob
/// store behind a claim check.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// An at-least-once queue in one database table, with leases, native
/// delays and batch sends in one transaction.
///
/// Cloning is cheap and shares the in-process wake-up: clone one queue for
/// every endpoint of a process rather than opening several.
#[derive(Clone, Debug)]
pub struct SqlQueue {
    table: Arc<dyn Table>,
    notify: Arc<Notify>,
    clock: Arc<dyn Clock>,
    visibility_timeout: Duration,
    poll_interval: Duration,
    max_message_bytes: usize,
}

impl SqlQueue {
    pub(crate) fn with_table(table: Arc<dyn Table>) -> Self {
        Self {
            table,
            notify: Arc::new(Notify::new()),
            clock: Arc::new(SystemClock),
            visibility_timeout: DEFAULT_VISIBILITY_TIMEOUT,
            poll_interval: DEFAULT_POLL_INTERVAL,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
        }
    }

    /// Reads time from `clock` (delays, leases) instead of the system
    /// clock; the fault harness passes its manual clock.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Sets how long a delivery stays leased (default
    /// [`DEFAULT_VISIBILITY_TIMEOUT`]). Longer than the slowest handler, or
    /// a second copy runs beside it (harmless to the protocol, but wasted).
    pub fn visibility_timeout(mut self, timeout: Duration) -> Self {
        self.visibility_timeout = timeout;
        self
    }

    /// Sets how often a waiting `receive` polls (default
    /// [`DEFAULT_POLL_INTERVAL`]).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Refuses message bodies over `limit` bytes with
    /// [`TransportError::TooLarge`] (default [`DEFAULT_MAX_MESSAGE_BYTES`]).
    pub fn max_message_bytes(mut self, limit: usize) -> Self {
        self.max_message_bytes = limit;
        self
    }

    /// The in-process wake-up of waiting receivers, for a backend that
    /// learns of other processes' sends (PostgreSQL's `LISTEN`).
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn waker(&self) -> &Arc<Notify> {
        &self.notify
    }

    fn now(&self) -> i64 {
        millis(self.clock.now_millis())
    }

    /// The table's rows for `batch`: `TooLarge` for a body over the limit,
    /// before anything is written.
    pub(crate) fn rows(&self, batch: Vec<Outgoing>) -> Result<Vec<NewRow>, TransportError> {
        let limit = self.max_message_bytes;
        if let Some(big) = batch.iter().find(|o| o.envelope.body.len() > limit) {
            return Err(TransportError::TooLarge {
                size: big.envelope.body.len(),
                limit,
            });
        }
        let now = self.now();
        batch
            .into_iter()
            .map(|out| {
                Ok(NewRow {
                    envelope: out.envelope.to_bytes().map_err(TransportError::generic)?,
                    visible_at: after(now, out.delay),
                    queue: out.queue,
                })
            })
            .collect()
    }

    /// The table, for a transaction shared with the store.
    pub(crate) fn table(&self) -> &dyn Table {
        self.table.as_ref()
    }

    /// Wakes this process's waiting receivers (after a send).
    pub(crate) fn wake(&self) {
        self.notify.notify_waiters();
    }
}

/// The (queue, seq) rows `receipts` name.
pub(crate) fn acked_rows(receipts: &[Receipt]) -> Result<Vec<(&str, i64)>, TransportError> {
    receipts
        .iter()
        .map(|r| Ok((r.queue.as_str(), parse_handle(r)?.0)))
        .collect()
}

/// Milliseconds as SQL integers; saturates (u64 ms overflow i64 in 292 My).
fn millis(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

fn after(now: i64, delay: Duration) -> i64 {
    now.saturating_add(millis(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX)))
}

/// A receipt's handle is `{seq}:{lease}`: ack needs the row, nack the lease.
fn handle(seq: i64, lease: &str) -> String {
    format!("{seq}:{lease}")
}

fn parse_handle(receipt: &Receipt) -> Result<(i64, &str), TransportError> {
    receipt
        .handle
        .split_once(':')
        .and_then(|(seq, lease)| Some((seq.parse().ok()?, lease)))
        .ok_or_else(|| TransportError::generic(format!("malformed receipt {:?}", receipt.handle)))
}

#[async_trait]
impl Transport for SqlQueue {
    async fn send(&self, batch: Vec<Outgoing>) -> Result<(), TransportError> {
        if batch.is_empty() {
            return Ok(());
        }
        let rows = self.rows(batch)?;
        self.table.insert(rows).await?;
        self.notify.notify_waiters();
        Ok(())
    }

    async fn receive(
        &self,
        queue: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>, TransportError> {
        let deadline = tokio::time::Instant::now() + wait;
        let max = i64::try_from(max.max(1)).unwrap_or(i64::MAX);
        loop {
            // Registered before the read, so a send landing between the
            // read and the wait still wakes us.
            let notified = self.notify.notified();
            let now = self.now();
            let lease = uuid::Uuid::now_v7().simple().to_string();
            let until = after(now, self.visibility_timeout);
            let leased = self.table.lease(queue, max, now, &lease, until).await?;
            if !leased.is_empty() {
                let deliveries = leased.into_iter().map(|row| Delivery {
                    // A row that is no envelope (written by something
                    // else) goes to the endpoint as such, for its error
                    // queue.
                    envelope: Envelope::from_bytes(&row.envelope).unwrap_or_else(|e| {
                        Envelope::undecodable(queue, &row.seq.to_string(), row.envelope.clone(), e)
                    }),
                    receipt: Receipt {
                        queue: queue.to_owned(),
                        handle: handle(row.seq, &lease),
                    },
                    delivery_count: u32::try_from(row.deliveries).unwrap_or(u32::MAX),
                });
                return Ok(deliveries.collect());
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Ok(Vec::new());
            }
            let _ = tokio::time::timeout(left.min(self.poll_interval), notified).await;
        }
    }

    async fn ack(&self, receipt: &Receipt) -> Result<(), TransportError> {
        self.ack_all(std::slice::from_ref(receipt)).await
    }

    /// One `DELETE` for all the receipts.
    async fn ack_all(&self, receipts: &[Receipt]) -> Result<(), TransportError> {
        let rows = acked_rows(receipts)?;
        if rows.is_empty() {
            return Ok(());
        }
        self.table.delete(&rows).await
    }

    async fn nack(&self, receipt: &Receipt, delay: Duration) -> Result<(), TransportError> {
        let (seq, lease) = parse_handle(receipt)?;
        let visible_at = after(self.now(), delay);
        self.table
            .release(&receipt.queue, seq, lease, visible_at)
            .await?;
        self.notify.notify_waiters();
        Ok(())
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
            .with_native_delay()
            .with_max_message_bytes(self.max_message_bytes)
    }
}
