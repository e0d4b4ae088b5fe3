//! A RabbitMQ transport for exactly: durable quorum queues, persistent
//! messages, publisher confirms, manual acks with prefetch, delays through
//! TTL'd delay queues, and reconnection after a dropped connection (lapin).
//!
//! ```no_run
//! use std::time::Duration;
//! use exactly::{Envelope, MessageId, Outgoing, Transport};
//! use exactly_transport_rabbitmq::RabbitQueue;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let queue = RabbitQueue::connect("amqp://guest:guest@127.0.0.1:5672/%2f")
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
//! Each exactly queue is the durable queue of the same name, declared on
//! first use; messages go through the default exchange, the whole envelope
//! as the body ([`Envelope::to_bytes`](exactly::Envelope::to_bytes)). The
//! visibility timeout is kept by the transport (RabbitMQ only redelivers
//! what a closed channel held). See `docs/transports.md`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod error;
mod link;
mod queue;
mod receive;
mod topology;

pub use lapin;
pub use queue::{
    CONTENT_TYPE, DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_PREFETCH, DEFAULT_VISIBILITY_TIMEOUT,
    OPERATION_TIMEOUT, RabbitQueue,
};
pub use receive::DELIVERIES_HEADER;
pub use topology::{DELAY_PREFIX, QueueKind};
