//! A PostgreSQL [`Store`](exactly::Store) for exactly: versioned
//! conditional writes in one table, one round trip per call.
//!
//! ```no_run
//! use exactly::{Precondition, Store};
//! use exactly_store_postgres::PostgresStore;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! // Creates (or migrates) the schema on connect.
//! let store = PostgresStore::connect("postgres://app:secret@127.0.0.1/app").await.unwrap();
//!
//! let v1 = store.put("e/orders/o1", "placed".into(), Precondition::Absent).await.unwrap();
//! let v2 = store
//!     .put("e/orders/o1", "paid".into(), Precondition::Matches(v1.clone()))
//!     .await
//!     .unwrap();
//! // A second writer that also read v1 loses: its write is refused, not merged.
//! let stale = store.put("e/orders/o1", "shipped".into(), Precondition::Matches(v1)).await;
//! assert!(stale.unwrap_err().is_conflict());
//! assert_eq!(store.get("e/orders/o1").await.unwrap().unwrap().version, v2);
//! # });
//! ```
//!
//! Pool settings are in [`pool`] ([`pool_options`], then
//! [`PostgresStore::connect_with`]); which errors are transient is decided
//! in one function, [`is_transient`].

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod error;
pub mod pool;
mod schema;
mod store;

pub use error::is_transient;
pub use pool::{connect_options, pool_options, redact};
pub use schema::SCHEMA_VERSION;
/// The driver, so callers can name pool and option types without adding it.
pub use sqlx;
pub use store::{DEFAULT_MAX_VALUE_BYTES, PostgresStore, PutAllArgs, WriteOrder, put_all_args};
