//! What an operator does with an error-queued message once its cause is
//! understood: send it back to be processed ([`ErrorQueue::replay`]), or
//! give it up for good ([`ErrorQueue::discard`]), which also consumes its
//! token so that the sender's record does not keep it forever.

use std::sync::Arc;
use std::time::Duration;

use super::AttemptError;
use super::finish::Finisher;
use crate::blob::{BlobStore, CLAIM_HEADER, parse_claim};
use crate::codec::Json;
use crate::env::Env;
use crate::error::TransportError;
use crate::message::headers;
use crate::record::validate_token;
use crate::store::Store;
use crate::transport::{Delivery, Outgoing, Transport};

/// Why a [`ErrorQueue`] operation did not complete. The delivery is left
/// as it was (leased, then back on the error queue): nothing is lost.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorQueueError {
    /// The message does not say which queue it failed on (header
    /// `exactly-error-source-queue`): it was not put there by an endpoint.
    #[error("message {0} has no exactly-error-source-queue header")]
    NoSourceQueue(String),
    /// Its token names a record outside exactly's: it is not consumed.
    #[error("message {id}: {reason}")]
    InvalidToken {
        /// The message.
        id: String,
        /// What is wrong with the token.
        reason: String,
    },
    /// Its claim-check reference (header `exactly-claim-check`) does not
    /// parse: its body cannot be released, so nothing is done.
    #[error("message {id}: malformed claim-check reference: {reason}")]
    InvalidClaim {
        /// The message.
        id: String,
        /// Why it does not parse.
        reason: String,
    },
    /// The queue refused; a retry may work.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The store refused or kept conflicting; a retry may work.
    #[error("consuming the token: {0}")]
    Store(String),
}

impl From<AttemptError> for ErrorQueueError {
    fn from(e: AttemptError) -> Self {
        Self::Store(match e {
            AttemptError::Conflict => "the token's record kept changing".to_owned(),
            AttemptError::Retry(reason) | AttemptError::Poison(reason) => reason,
        })
    }
}

/// An endpoint's error queue, for an operator: receive what is there, then
/// replay or discard each message.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use exactly::{ErrorQueue, MemoryStore, MemoryTransport};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let store = Arc::new(MemoryStore::new());
/// let transport = Arc::new(MemoryTransport::new());
/// let errors = ErrorQueue::new("error", store, transport);
/// for delivery in errors.receive(16, Duration::ZERO).await.unwrap() {
///     // Fixed the cause? `replay`. A message that must never take effect?
///     errors.discard(&delivery).await.unwrap();
/// }
/// # });
/// ```
#[derive(Clone, Debug)]
pub struct ErrorQueue {
    name: String,
    store: Arc<dyn Store>,
    transport: Arc<dyn Transport>,
    blobs: Option<Arc<dyn BlobStore>>,
    env: Env,
}

impl ErrorQueue {
    /// The error queue `name` (an endpoint's `Config::error_queue`,
    /// `error` by default) on the endpoints' store and transport.
    pub fn new(
        name: impl Into<String>,
        store: Arc<dyn Store>,
        transport: Arc<dyn Transport>,
    ) -> Self {
        Self {
            name: name.into(),
            store,
            transport,
            blobs: None,
            env: Env::system(),
        }
    }

    /// The endpoints' blob store, where messages were claim-checked: a
    /// discarded message's body is then deleted at once (without it, its
    /// reference is released and the blob collector deletes it).
    pub fn blobs(mut self, blobs: Arc<dyn BlobStore>) -> Self {
        self.blobs = Some(blobs);
        self
    }

    /// Up to `max` error-queued messages, waiting up to `wait` for the
    /// first; each is leased to the caller until it replays, discards or
    /// lets its lease run out (then it is back, unchanged).
    pub async fn receive(
        &self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>, TransportError> {
        self.transport.receive(&self.name, max, wait).await
    }

    /// Sends the message back to the queue it failed on, as it was before
    /// it failed — same id, same token, the error and retry headers
    /// removed — then acks it here. Its token still guards it, so replaying
    /// it twice (or a crash between the send and the ack) processes it
    /// once.
    pub async fn replay(&self, delivery: &Delivery) -> Result<(), ErrorQueueError> {
        let mut envelope = delivery.envelope.clone();
        let source = envelope
            .headers
            .remove(headers::ERROR_SOURCE_QUEUE)
            .ok_or_else(|| ErrorQueueError::NoSourceQueue(envelope.id.to_string()))?;
        for header in [
            headers::ERROR_REASON,
            headers::ERROR_ATTEMPTS,
            headers::ERROR_FIRST_FAILURE,
            headers::ERROR_LAST_FAILURE,
            headers::RETRY_COUNT,
            headers::FIRST_FAILURE,
        ] {
            envelope.headers.remove(header);
        }
        self.transport
            .send(vec![Outgoing {
                queue: source,
                envelope,
                delay: Duration::ZERO,
            }])
            .await?;
        self.transport.ack(&delivery.receipt).await?;
        Ok(())
    }

    /// Gives the message up for good: consumes its token as a receiver
    /// would on processing it (so a copy still in flight, or a later replay
    /// of it, is dropped as processed, and the sender's record stops
    /// holding it), releases its claim-checked body if it has one, then
    /// acks it here. Its effect never happens. A message without a token
    /// (identity-inbox mode) is only acked.
    pub async fn discard(&self, delivery: &Delivery) -> Result<(), ErrorQueueError> {
        let envelope = &delivery.envelope;
        let token = envelope.token.as_ref();
        if let Some(token) = token {
            validate_token(token).map_err(|e| ErrorQueueError::InvalidToken {
                id: envelope.id.to_string(),
                reason: e.to_string(),
            })?;
        }
        let claim = match envelope.header(CLAIM_HEADER) {
            Some(reference) => Some(
                parse_claim(reference)
                    .map_err(|e| ErrorQueueError::InvalidClaim {
                        id: envelope.id.to_string(),
                        reason: e.to_string(),
                    })?
                    .key,
            ),
            None => None,
        };
        let finisher = Finisher {
            store: self.store.as_ref(),
            transport: self.transport.as_ref(),
            env: &self.env,
            codec: &Json,
            calls: None,
            blobs: self.blobs.as_deref(),
            probe: None,
            mutant: None,
            stats: None,
        };
        finisher.consume_token(token).await?;
        // Without a blob store the reference still goes: the collector
        // then deletes the body.
        finisher.release_claim(token, claim.as_deref()).await?;
        self.transport.ack(&delivery.receipt).await?;
        Ok(())
    }
}
