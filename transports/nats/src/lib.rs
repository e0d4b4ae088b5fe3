//! A NATS JetStream transport for exactly: a work-queue stream and a
//! durable pull consumer per queue, explicit acks, `ack_wait` as the lease,
//! NAK with delay for delayed redelivery.
//!
//! ```no_run
//! use std::time::Duration;
//! use exactly::{Envelope, MessageId, Outgoing, Transport};
//! use exactly_transport_nats::NatsQueue;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let queue = NatsQueue::connect("nats://127.0.0.1:4222")
//!     .await
//!     .unwrap()
//!     .visibility_timeout(Duration::from_secs(30));
//!
//! let envelope = Envelope {
//!     id: MessageId::derived("docs", "m1"),
//!     message_type: "Ping".into(),
//!     destination: "pings".into(),
//!     headers: Default::default(),
//!     correlation_id: None,
//!     causation_id: None,
//!     reply_to: None,
//!     token: None,
//!     content_type: "application/json".into(),
//!     body: "{}".into(),
//! };
//! queue.send(vec![Outgoing::new(envelope.clone())]).await.unwrap();
//! let got = queue.receive("pings", 10, Duration::from_secs(1)).await.unwrap();
//! assert_eq!(got[0].envelope, envelope);
//! queue.ack(&got[0].receipt).await.unwrap();
//! # });
//! ```
//!
//! Queue `q` is the stream `EXACTLY_q` on subject `exactly.q` with the
//! consumer `exactly`; the whole envelope is the payload
//! ([`Envelope::to_bytes`](exactly::Envelope::to_bytes)). A delayed send
//! carries a not-before header, and a receiver that gets it early hands it
//! back with a NAK delayed until it is due. See `docs/transports.md`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod error;
mod queue;
mod receipt;
mod topology;

pub use async_nats;
pub use queue::{DEFAULT_VISIBILITY_TIMEOUT, NOT_BEFORE_HEADER, NatsQueue};
pub use topology::{CONSUMER, STREAM_PREFIX, SUBJECT_PREFIX};
