//! In-memory [`Store`](crate::Store) and [`Transport`](crate::Transport):
//! for unit tests, examples and fault injection — not for production, where
//! a crash loses everything.

mod colocated;
mod store;
mod transport;

pub use colocated::MemoryColocated;
pub use store::MemoryStore;
pub use transport::MemoryTransport;
