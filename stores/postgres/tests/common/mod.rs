//! The server address, read from the environment: a missing server is a
//! failure naming the variable, never a silent skip.

#![allow(dead_code)]

/// `EXACTLY_TEST_POSTGRES_URL`.
pub fn url() -> String {
    std::env::var("EXACTLY_TEST_POSTGRES_URL").expect(
        "EXACTLY_TEST_POSTGRES_URL is unset: run `scripts/services.sh up postgres && source .services/env`",
    )
}
