//! Blob side effects and claim checks for exactly on any `object_store`
//! backend: local files, S3 (and S3-compatible servers), Azure, in-memory.
//!
//! ```
//! use std::sync::Arc;
//! use exactly_blob::ObjectBlobStore;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let dir = tempfile::tempdir().unwrap();
//! let blobs = Arc::new(ObjectBlobStore::local(dir.path()).unwrap());
//! // Give it to an endpoint: `Endpoint::builder(..).blobs(blobs)`.
//! # let _ = blobs;
//! # });
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod store;

pub use object_store;
pub use store::ObjectBlobStore;
