//! The [`Transport`] seam: an at-least-once queue with ack, nack and delays.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::TransportError;
use crate::message::Envelope;

/// One message to put on a queue, possibly after a delay.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outgoing {
    /// The queue to put it on (usually `envelope.destination`).
    pub queue: String,
    /// The message.
    pub envelope: Envelope,
    /// How long to hold it back before it may be received.
    #[serde(default, skip_serializing_if = "Duration::is_zero")]
    pub delay: Duration,
}

impl Outgoing {
    /// A message for its own destination queue, without delay.
    pub fn new(envelope: Envelope) -> Self {
        Self {
            queue: envelope.destination.clone(),
            envelope,
            delay: Duration::ZERO,
        }
    }
}

/// The transport's handle on one delivery, used to ack or nack it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Receipt {
    /// The queue it was received from.
    pub queue: String,
    /// Backend-specific handle (lease id, delivery tag, ...).
    pub handle: String,
}

/// A received message, leased to the receiver until acked or nacked.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// The message.
    pub envelope: Envelope,
    /// Handle for ack / nack.
    pub receipt: Receipt,
    /// How many times this copy has been delivered (1 the first time), if
    /// the backend counts.
    pub delivery_count: u32,
}

/// What a transport can do, reported by the backend.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// Largest encoded message the transport accepts, in bytes.
    pub max_message_bytes: Option<usize>,
    /// Longest delay the transport supports, if limited.
    pub max_delay: Option<Duration>,
    /// Whether delays are native to the broker (otherwise emulated).
    pub native_delay: bool,
}

impl Capabilities {
    /// Sets the message size limit.
    pub fn with_max_message_bytes(mut self, limit: usize) -> Self {
        self.max_message_bytes = Some(limit);
        self
    }

    /// Marks delays as native.
    pub fn with_native_delay(mut self) -> Self {
        self.native_delay = true;
        self
    }
}

/// An at-least-once message queue.
///
/// # Contract
///
/// - A sent message MUST be delivered at least once to a receiver of its
///   queue, with id, type, headers, token and body intact. (`round_trip`)
/// - A delivered message MUST stay on the queue until acked; `nack` (or the
///   receiver's disappearance, after the backend's lease expires) MUST make
///   it deliverable again. (`nack_redelivers`, `unacked_redelivers`)
/// - A message sent with a delay MUST NOT be delivered before the delay has
///   passed. (`delay_not_early`)
/// - `send` of a batch MAY deliver its messages in any order and MAY deliver
///   duplicates; it MUST NOT return `Ok` before every message in the batch is
///   durably accepted.
/// - A message over the transport's limit MUST fail with
///   [`TransportError::TooLarge`] and nothing of the batch is sent.
/// - `receive` with `wait` zero MUST return promptly, possibly empty.
/// - `ack_all` MUST remove exactly the messages `ack` of each receipt would.
///   (`ack_all_removes_each`)
/// - Acking a receipt twice, or a receipt whose lease expired, MUST NOT fail
///   with a permanent error and MUST NOT remove a message other than the one
///   the receipt was issued for.
#[async_trait]
pub trait Transport: Send + Sync + fmt::Debug + 'static {
    /// Sends a batch of messages.
    async fn send(&self, batch: Vec<Outgoing>) -> Result<(), TransportError>;

    /// Receives up to `max` messages from `queue`, waiting up to `wait` for
    /// the first one.
    async fn receive(
        &self,
        queue: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>, TransportError>;

    /// Removes a delivered message from its queue.
    async fn ack(&self, receipt: &Receipt) -> Result<(), TransportError>;

    /// Removes several delivered messages from their queues, as `ack` of
    /// each would. The default acks them one after another; a backend that
    /// can remove them in one round trip overrides it. On an error, some of
    /// them may have been removed: the others are redelivered, and dropped
    /// as duplicates.
    async fn ack_all(&self, receipts: &[Receipt]) -> Result<(), TransportError> {
        for receipt in receipts {
            self.ack(receipt).await?;
        }
        Ok(())
    }

    /// Returns a delivered message to its queue, deliverable after `delay`.
    async fn nack(&self, receipt: &Receipt, delay: Duration) -> Result<(), TransportError>;

    /// What this backend can do.
    fn capabilities(&self) -> Capabilities;
}
