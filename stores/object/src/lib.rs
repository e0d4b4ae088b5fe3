//! A [`Store`](exactly::Store) for exactly on any object store that
//! honours conditional writes: S3, Azure Blob, GCS, local files or
//! memory, through [`object_store`].
//!
//! ```
//! use exactly::{Precondition, Store};
//! use exactly_store_object::ObjectStoreStore;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! // Or `ObjectStoreStore::s3(Some("http://127.0.0.1:9000"), "bucket")`, `azure(..)`, ...
//! let store = ObjectStoreStore::memory().await.unwrap();
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
//! Every constructor first probes the backend (create twice, update at a
//! wrong ETag) and refuses one that does not honour conditional writes
//! with `StoreError::NotSupported` — a plain `LocalFileSystem`, for one,
//! has no compare-and-swap; [`LocalFiles`] adds it. Keys map to object names reversibly and in order
//! ([`key`] docs); deletes leave a small tombstone.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod backends;
mod body;
mod error;
pub mod key;
mod local_files;
mod local_names;
mod probe;
mod store;

pub use backends::{Builder, retry_config};
pub use error::is_transient;
pub use local_files::LocalFiles;
/// The object_store crate, so callers can build backends without adding it.
pub use object_store;
pub use store::{DEFAULT_MAX_VALUE_BYTES, MAX_NAME_BYTES, ObjectStoreStore};
