//! The server address, read from the environment: a missing server is a
//! failure naming the variable, never a silent skip.

#![allow(dead_code)]

/// `EXACTLY_TEST_POSTGRES_URL`.
pub fn url() -> String {
    std::env::var("EXACTLY_TEST_POSTGRES_URL").expect(
        "EXACTLY_TEST_POSTGRES_URL is unset: run `scripts/services.sh up postgres && source .services/env`",
    )
}

/// A name unique to this run, for namespacing schedules in a shared database.
pub fn run_id() -> String {
    exactly_conformance::unique_name("r").replace('-', "")
}
