//! An Amazon SQS transport for exactly: standard queues created on first
//! use, batch sends, long polling, visibility timeouts as leases and
//! native delays (`DelaySeconds`, up to 15 minutes).
//!
//! ```no_run
//! use std::time::Duration;
//! use exactly::{Envelope, MessageId, Outgoing, Transport};
//! use exactly_transport_sqs::SqsQueue;
//! use exactly_transport_sqs::aws_sdk_sqs::{Client, Config, config::{Credentials, Region}};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! // Any SQS client: from `aws-config` in production, or pointed at a local emulator.
//! let config = Config::builder()
//!     .behavior_version_latest()
//!     .region(Region::new("us-east-1"))
//!     .credentials_provider(Credentials::new("testing", "testing", None, None, "docs"))
//!     .endpoint_url("http://127.0.0.1:25000")
//!     .build();
//! let queue = SqsQueue::new(Client::from_conf(config)).visibility_timeout(Duration::from_secs(30));
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
//! let got = queue.receive("pings", 10, Duration::from_secs(5)).await.unwrap();
//! assert_eq!(got[0].envelope, envelope);
//! queue.ack(&got[0].receipt).await.unwrap();
//! # });
//! ```
//!
//! Each exactly queue is the SQS queue of the same name (ASCII letters,
//! digits, `-`, `_`; at most 80). The whole envelope travels as the
//! message body ([`Envelope::to_bytes`](exactly::Envelope::to_bytes)).
//! `ack` is `DeleteMessage`, `nack(delay)` is `ChangeMessageVisibility`.
//! See `docs/transports.md`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod codec;
mod error;
mod names;
mod queue;

pub use aws_sdk_sqs;
pub use codec::SQS_MAX_MESSAGE_BYTES;
pub use queue::{DEFAULT_VISIBILITY_TIMEOUT, MAX_DELAY, MAX_VISIBILITY, SqsQueue};
