//! Test support shared by the exactly transport crates: the server address
//! from `EXACTLY_TEST_*`, a TCP proxy whose connections can be cut, the
//! check that a transport recovers from a dropped connection with nothing
//! lost, the check that bytes another producer put on a queue reach the
//! endpoint as an undecodable message, and the fault harness over
//! `MemoryStore` plus a real transport.
//!
//! ```
//! use exactly_transport_testkit::Proxy;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
//! let proxy = Proxy::start(upstream.local_addr().unwrap()).await.unwrap();
//! let _client = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
//! let (_server, _) = upstream.accept().await.unwrap();
//! proxy.sever(); // both ends now see a reset connection
//! # });
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod foreign;
mod harness;
mod proxy;
mod reconnect;

pub use foreign::foreign_bytes_are_handed_over;
pub use harness::{fault_harness, memory_store_over, memory_store_over_shared, run_prefix};
pub use proxy::Proxy;
pub use reconnect::{probe, reconnect_mid_stream, retry};

/// The address in environment variable `var` (set by `source
/// .services/env` after `scripts/services.sh up`).
///
/// # Panics
///
/// When `var` is unset: a test without its server fails, naming the
/// variable, rather than passing silently.
pub fn server_url(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!(
            "{var} is not set: start the server with `scripts/services.sh up` and \
             `source .services/env` (see docs/services.md)"
        )
    })
}
