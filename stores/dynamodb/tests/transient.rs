//! An unreachable endpoint is `Unavailable`; DynamoDB's own size limit
//! surfaces as `TooLarge`; a foreign version matches nothing.

mod common;

use exactly::{Precondition, Store, StoreError, Version};
use exactly_store_dynamodb::{DynamoDbStore, endpoint_client};

#[tokio::test]
async fn unreachable_endpoint_is_unavailable() {
    let client = endpoint_client("http://127.0.0.1:1").expect("a client");
    match DynamoDbStore::new(client, "t").await {
        Err(e) if e.is_transient() => {}
        other => panic!("an unreachable endpoint must be Unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn the_servers_item_limit_is_too_large_too() {
    // With our own check lifted, DynamoDB's "Item size has exceeded" answer
    // must still come back typed.
    let store = common::store().await.max_value_bytes(1 << 20);
    let key = format!("big/{}", exactly_conformance::unique_name("x"));
    match store
        .put(&key, vec![0u8; 500 * 1024].into(), Precondition::Absent)
        .await
    {
        Err(StoreError::TooLarge { size, .. }) => assert_eq!(size, 500 * 1024),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert_eq!(store.get(&key).await.expect("get"), None);
}

#[tokio::test]
async fn a_foreign_version_is_a_conflict() {
    let store = common::store().await;
    let key = format!("foreign/{}", exactly_conformance::unique_name("x"));
    store
        .put(&key, "v".into(), Precondition::Absent)
        .await
        .expect("create");
    let foreign = Version::new("\"an-etag\"");
    let refused = store
        .put(&key, "w".into(), Precondition::Matches(foreign.clone()))
        .await;
    assert!(
        matches!(refused, Err(StoreError::Conflict { .. })),
        "{refused:?}"
    );
    let refused = store.delete(&key, &foreign).await;
    assert!(
        matches!(refused, Err(StoreError::Conflict { .. })),
        "{refused:?}"
    );
}
