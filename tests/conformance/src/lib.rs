//! The conformance suites every exactly [`Store`](exactly::Store) and
//! [`Transport`](exactly::Transport) backend must pass: one `pub async fn`
//! per clause of each trait's `# Contract`.
//!
//! ```
//! use std::sync::Arc;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! // Any check runs on its own, given a backend and a fresh namespace.
//! let store = Arc::new(exactly::MemoryStore::new());
//! exactly_conformance::store::cas_counter_is_exact(store, "doc/").await;
//! # });
//! ```
//!
//! A backend's whole conformance file is one macro call, which expands to
//! one named `#[test]` per clause in a module `store_conformance` (or
//! `transport_conformance`), so every failure names the clause it broke.
//! The factory gets a fresh temp directory for file-based backends and
//! returns the backend; each test runs it on its own multi-threaded tokio
//! runtime, so the backend crate needs no tokio dev-dependency. Transport
//! factories should set a visibility timeout of about a second: the lease
//! checks wait for leases to run out.
//!
//! ```
//! exactly_conformance::store_conformance!(|_dir| async { exactly::MemoryStore::new() });
//! # fn main() {}
//! ```
//!
//! With feature `harness`, the module `harness` runs the fault harness of `exactly`
//! over a backend, as the store crates' `fault_harness` tests do.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod colocated;
#[cfg(feature = "harness")]
pub mod harness;
mod run;
pub mod store;
pub mod transport;

pub use run::unique_name;
#[doc(hidden)]
pub use run::{run_colocated, run_store, run_transport};

/// Expands to module `store_conformance` with one `#[test]` per store
/// check, each on a fresh backend from `$factory`: a closure taking a
/// `PathBuf` (an empty temp directory) and returning a future of a
/// [`Store`](exactly::Store).
#[macro_export]
macro_rules! store_conformance {
    ($factory:expr) => {
        $crate::__conformance_tests!(store_conformance, run_store, store, $factory;
            get_returns_latest
            get_all_reads_like_get
            get_all_reads_in_order
            conditional_put_conflicts
            create_race_has_one_winner
            cas_counter_is_exact
            versions_never_repeat
            delete_checks_version
            too_large_is_typed
            list_pages_in_byte_order
            list_prefix_is_literal
            odd_keys_round_trip
            put_all_is_all_or_nothing
            put_all_counters_stay_equal
        );
    };
}

/// Expands to module `transport_conformance` with one `#[test]` per
/// transport check, each on a fresh backend from `$factory`: a closure
/// taking a `PathBuf` (an empty temp directory) and returning a future of
/// a [`Transport`](exactly::Transport).
#[macro_export]
macro_rules! transport_conformance {
    ($factory:expr) => {
        $crate::__conformance_tests!(transport_conformance, run_transport, transport, $factory;
            round_trip
            batch_send
            nack_redelivers
            unacked_redelivers
            ack_removes
            ack_all_removes_each
            delay_not_early
            duplicates_tolerated
            too_large_is_typed
            competing_consumers
            stale_receipt_harmless
            zero_wait_is_prompt
        );
    };
}

/// Expands to module `colocated_conformance` with one `#[test]` per
/// [`Colocated`](exactly::Colocated) check, each on a fresh backend from
/// `$factory`: a closure taking a `PathBuf` and returning a future of one
/// object that is a store, a transport and their one transaction
/// ([`colocated::Shared`]), with a visibility timeout of about a second.
#[macro_export]
macro_rules! colocated_conformance {
    ($factory:expr) => {
        $crate::__conformance_tests!(colocated_conformance, run_colocated, colocated, $factory;
            writes_sends_and_acks_together
            refused_write_sends_and_acks_nothing
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_tests {
    ($module:ident, $run:ident, $checks:ident, $factory:expr; $($check:ident)*) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[test]
                fn $check() {
                    $crate::$run(stringify!($check), $factory, |backend, namespace| async move {
                        $crate::$checks::$check(backend, &namespace).await
                    });
                }
            )*
        }
    };
}
