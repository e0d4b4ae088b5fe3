//! The server address, read from the environment: a missing server is a
//! failure naming the variable, never a silent skip.

#![allow(dead_code)]

use exactly_store_dynamodb::{DynamoDbStore, endpoint_client};

/// The table every test shares (created by the store if missing).
pub const TABLE: &str = "exactly-tests";

/// `EXACTLY_TEST_DYNAMODB_URL`.
pub fn url() -> String {
    std::env::var("EXACTLY_TEST_DYNAMODB_URL").expect(
        "EXACTLY_TEST_DYNAMODB_URL is unset: run `scripts/services.sh up moto && source .services/env`",
    )
}

/// moto sizes a binary attribute by its base64 text (4/3 of the bytes),
/// so it refuses items DynamoDB takes; 300 KiB less the key's share fits
/// both.
pub const MOTO_MAX_VALUE_BYTES: usize = 300 * 1024 - 1024;

/// The store on the test server's shared table.
pub async fn store() -> DynamoDbStore {
    let client = endpoint_client(&url()).expect("a client");
    DynamoDbStore::new(client, TABLE)
        .await
        .expect("the table")
        .max_value_bytes(MOTO_MAX_VALUE_BYTES)
}
