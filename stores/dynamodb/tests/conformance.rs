//! The store conformance suite on the DynamoDB at `EXACTLY_TEST_DYNAMODB_URL`.

mod common;

exactly_conformance::store_conformance!(|_dir| common::store());

/// `put_all` through `TransactWriteItems`: all or nothing, the conflict
/// naming the key. Not the race with concurrent `put`s
/// (`put_all_counters_stay_equal`): moto does not isolate a transaction
/// from them (`DynamoDbStore::transactions`).
#[test]
fn transactions_are_all_or_nothing() {
    exactly_conformance::run_store(
        "put_all_is_all_or_nothing",
        |_dir| async { common::store().await.transactions(true) },
        |store, ns| async move {
            exactly_conformance::store::put_all_is_all_or_nothing(store, &ns).await
        },
    );
}
