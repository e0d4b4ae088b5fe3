//! HTTP at the edges of exactly: an idempotent axum front end that turns
//! requests into messages exactly once, and a `reqwest` executor for the
//! third-party calls handlers capture.
//!
//! ```no_run
//! use std::sync::Arc;
//! use axum::{Router, routing::post, extract::State};
//! use exactly::{MemoryStore, MemoryTransport, Message};
//! use exactly_http::{Answer, FrontError, Intent, IntentFront};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct PlaceOrder { item: String }
//! impl Message for PlaceOrder { const TYPE: &'static str = "PlaceOrder"; }
//!
//! async fn place(State(front): State<IntentFront>, intent: Intent<PlaceOrder>) -> Result<Answer, FrontError> {
//!     let order = PlaceOrder { item: intent.body.item.clone() };
//!     front.submit(&intent, "orders", &order).await
//! }
//!
//! # async fn run() {
//! let front = IntentFront::new(Arc::new(MemoryStore::new()), Arc::new(MemoryTransport::new()));
//! let app: Router = Router::new()
//!     .route("/orders", post(place))
//!     .with_state(front.clone())
//!     .merge(front.status_routes());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await.unwrap();
//! axum::serve(listener, app).await.unwrap();
//! # }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod executor;
pub mod front;
pub mod rpc;

pub use executor::ReqwestExecutor;
pub use front::{
    Anonymous, Answer, FrontConfig, FrontError, HeaderPrincipal, Intent, IntentFront, IntentStatus,
    PrincipalSource,
};
pub use rpc::{RpcServer, RpcServerBuilder};
