//! A SQL-table queue for exactly: an at-least-once [`Transport`](exactly::Transport)
//! with leases, native delays and all-or-nothing batch sends, in the same
//! database as the store: SQLite (feature `sqlite`, on by default) or
//! PostgreSQL (feature `postgres`).
//!
//! ```
//! use std::time::Duration;
//! use exactly::{Envelope, MessageId, Outgoing, Transport};
//! use exactly_transport_sql::SqlQueue;
//!
//! # #[cfg(feature = "sqlite")]
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let dir = tempfile::tempdir().unwrap();
//! let queue = SqlQueue::open(dir.path().join("exactly.db")).await.unwrap();
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
//!
//! let got = queue.receive("pings", 10, Duration::from_secs(1)).await.unwrap();
//! assert_eq!(got[0].envelope, envelope);
//! // Leased: nobody else gets it until it is acked, nacked or the lease runs out.
//! assert!(queue.receive("pings", 10, Duration::ZERO).await.unwrap().is_empty());
//! queue.ack(&got[0].receipt).await.unwrap();
//! # });
//! ```
//!
//! On PostgreSQL the same queue claims rows with `FOR UPDATE SKIP LOCKED`
//! and wakes waiting receivers in every process with `LISTEN`/`NOTIFY`:
//!
//! ```no_run
//! # #[cfg(feature = "postgres")]
//! # async fn doc() -> Result<(), exactly::TransportError> {
//! use exactly_transport_sql::SqlQueue;
//! let queue = SqlQueue::connect_postgres("postgres://app@db.example/app").await?;
//! # Ok(()) }
//! ```
//!
//! One table holds every queue: a row per message with its `seq` (never
//! reused), queue name, envelope ([`Envelope::to_bytes`](exactly::Envelope::to_bytes)),
//! `visible_at`, lease and delivery count. See `docs/transports.md`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
// Without a database feature there is nothing to construct the queue with.
#![cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]

#[cfg(feature = "postgres")]
mod postgres;
mod queue;
mod shared;
#[cfg(feature = "sqlite")]
mod sqlite;
mod table;

#[cfg(feature = "postgres")]
pub use postgres::NOTIFY_CHANNEL;
pub use queue::{
    DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_POLL_INTERVAL, DEFAULT_VISIBILITY_TIMEOUT, SqlQueue,
};
pub use shared::StoreAndQueue;
