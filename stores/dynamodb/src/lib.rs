//! A DynamoDB [`Store`](exactly::Store) for exactly: versioned
//! conditional writes on one table, one request per call.
//!
//! ```no_run
//! use exactly::{Precondition, Store};
//! use exactly_store_dynamodb::{DynamoDbStore, endpoint_client};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! // For AWS: `Client::new(&aws_config::load_from_env().await)`.
//! let client = endpoint_client("http://127.0.0.1:8000").unwrap();
//! // Creates the table (on-demand) if it is missing.
//! let store = DynamoDbStore::new(client, "exactly").await.unwrap();
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
//! IAM actions needed on the table: `dynamodb:GetItem`, `PutItem`,
//! `DeleteItem`, `Scan` (for `list`), `DescribeTable`, and `CreateTable`
//! unless the table is created beforehand.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod client;
mod error;
mod store;
mod table;

/// The SDK, so callers can build clients without adding it.
pub use aws_sdk_dynamodb;
pub use client::endpoint_client;
pub use error::{MAX_ITEM_BYTES, is_transient};
pub use store::{DEFAULT_MAX_VALUE_BYTES, DynamoDbStore, MAX_KEY_BYTES};
