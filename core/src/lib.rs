//! Exactly-once message handling over at-least-once queues and stores that
//! offer nothing stronger than a conditional write.
//!
//! A handler gets an entity's state and a message and returns new state plus
//! *captured* effects. The runtime commits state, effects and the outgoing
//! messages' dedup tokens in one conditional write of the entity's record,
//! then sends, then consumes the incoming message's token, then cleans up —
//! an order that survives crashes, duplicates, reordering and stale workers
//! at every step (see `docs/protocol.md`, checked by `tla/ExactlyOnce.tla`).
//!
//! ```
//! use std::sync::Arc;
//! use exactly::{Context, Endpoint, Handler, HandlerError, MemoryStore, MemoryTransport, Message, Sender};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct PlaceOrder { order: String, item: String }
//! impl Message for PlaceOrder { const TYPE: &'static str = "PlaceOrder"; }
//!
//! #[derive(Serialize, Deserialize)]
//! struct Charge { order: String }
//! impl Message for Charge { const TYPE: &'static str = "Charge"; }
//!
//! #[derive(Serialize, Deserialize, Default)]
//! struct Order { items: Vec<String> }
//!
//! struct Orders;
//! impl Handler<PlaceOrder> for Orders {
//!     type State = Order;
//!     fn entity_key(&self, m: &PlaceOrder) -> String { m.order.clone() }
//!     async fn handle(&self, order: &mut Order, m: PlaceOrder, ctx: &mut Context) -> Result<(), HandlerError> {
//!         order.items.push(m.item);
//!         ctx.send("billing", &Charge { order: m.order })?; // captured, sent after the commit
//!         Ok(())
//!     }
//! }
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let store = Arc::new(MemoryStore::new());
//! let transport = Arc::new(MemoryTransport::new());
//! let orders = Endpoint::builder("orders", store.clone(), transport.clone())
//!     .handler(Orders)
//!     .build()
//!     .unwrap();
//! let web = Sender::new("web", store.clone(), transport.clone()).unwrap();
//! web.send("orders", &PlaceOrder { order: "o1".into(), item: "gift".into() }).await.unwrap();
//!
//! let delivery = orders.receive_one().await.unwrap().unwrap();
//! // A duplicate copy of the same delivery, as an at-least-once queue may produce.
//! let copy = delivery.clone();
//! assert_eq!(orders.handle_delivery(delivery).await, exactly::Outcome::Processed);
//! assert_eq!(orders.handle_delivery(copy).await, exactly::Outcome::Duplicate);
//! assert_eq!(transport.depth("billing"), 1); // one Charge, not two
//! # });
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod base64_bytes;
pub mod blob;
pub mod call;
pub mod codec;
pub mod colocated;
mod context;
pub mod endpoint;
pub mod env;
mod error;
pub mod fault;
mod group_commit;
mod handler;
pub mod lease_book;
pub mod memory;
pub mod message;
mod protocol;
pub mod record;
mod sender;
pub mod store;
pub mod transport;

#[cfg(feature = "harness")]
pub mod harness;

pub use blob::{BlobCollector, BlobRef, BlobStore, MemoryBlobStore};
pub use call::{CallError, CallExecutor, CallResult, HttpCall};
pub use codec::{Codec, CodecExt, Json};
pub use colocated::Colocated;
pub use context::{Context, Routes};
pub use endpoint::{Config, Endpoint, EndpointBuilder, Guarantee, RetryPolicy};
pub use env::Env;
pub use error::{BoxError, CodecError, HandlerError, InvalidName, StoreError, TransportError};
pub use group_commit::DEFAULT_GROUP_ABOVE;
pub use handler::{FnHandler, Handler, handler_fn};
pub use memory::{MemoryColocated, MemoryStore, MemoryTransport};
pub use message::{DedupToken, Envelope, Message, MessageId, UNDECODABLE_TYPE};
pub use protocol::{
    ErrorQueue, ErrorQueueError, Mutant, Outcome, Probe, Stats, StatsSnapshot, Step, Sweeper,
};
pub use sender::{DEFAULT_INTENT_RETENTION, Intent, Once, OnceStep, SendError, Sender};
pub use store::{Precondition, Store, Version, Versioned, Write};
pub use transport::{Delivery, Outgoing, Receipt, Transport};
