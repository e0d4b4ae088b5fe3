//! The suites over the in-memory backends of the core crate, with a size
//! limit set so `too_large_is_typed` runs rather than skips.

use std::time::Duration;

use exactly::{MemoryStore, MemoryTransport};

exactly_conformance::store_conformance!(|_dir| async {
    MemoryStore::with_max_value_bytes(64 * 1024)
});

/// With `put_all`.
mod atomic {
    exactly_conformance::store_conformance!(|_dir| async {
        exactly::MemoryStore::with_max_value_bytes(64 * 1024).atomic_multi_key(true)
    });
}

exactly_conformance::transport_conformance!(|_dir| async {
    MemoryTransport::new()
        .visibility_timeout(Duration::from_secs(1))
        .max_message_bytes(64 * 1024)
});
