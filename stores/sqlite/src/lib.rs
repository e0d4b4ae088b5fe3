//! A SQLite [`Store`](exactly::Store) for exactly: versioned conditional
//! writes on one embedded file, no server needed.
//!
//! ```
//! use exactly::{Precondition, Store};
//! use exactly_store_sqlite::SqliteStore;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let dir = tempfile::tempdir().unwrap();
//! let store = SqliteStore::open(dir.path().join("exactly.db")).await.unwrap();
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
//! The file is opened in WAL mode with a busy timeout ([`pool`]); the same
//! pool can carry the SQL queue of `exactly-transport-sql`
//! ([`SqliteStore::pool`], [`SqliteStore::from_pool`]).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod pool;
mod store;

pub use pool::{connect_options, is_transient, open_pool, pool_options};
/// The driver, so callers can name pool and option types without adding it.
pub use sqlx;
pub use store::{DEFAULT_MAX_VALUE_BYTES, SqliteStore, put_all_in, store_error};
