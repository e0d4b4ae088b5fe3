//! The store conformance suite on the DynamoDB at `EXACTLY_TEST_DYNAMODB_URL`.

mod common;

exactly_conformance::store_conformance!(|_dir| common::store());
