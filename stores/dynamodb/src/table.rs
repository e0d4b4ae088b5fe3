//! Creating the table when it is missing, and checking its key schema.

use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::client::Waiters;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use exactly::StoreError;

use crate::error::map_err;

/// The partition key attribute: the store key.
pub(crate) const PK: &str = "pk";

/// How long to wait for a new table to become `ACTIVE`.
const ACTIVE_WITHIN: Duration = Duration::from_secs(120);

/// Makes sure `table` exists with partition key `pk` (a string) and is
/// `ACTIVE`: creates it (on-demand billing) if `DescribeTable` says it is
/// missing. Two processes starting at once are fine: the loser's
/// `CreateTable` answers `ResourceInUseException` and both wait.
pub(crate) async fn ensure(client: &Client, table: &str) -> Result<(), StoreError> {
    let described = client.describe_table().table_name(table).send().await;
    let exists = match described {
        Ok(out) => {
            let keys = out.table().map(|t| t.key_schema()).unwrap_or_default();
            let ours = keys.len() == 1
                && keys[0].attribute_name() == PK
                && keys[0].key_type() == &KeyType::Hash;
            if !ours {
                return Err(StoreError::NotSupported(format!(
                    "table {table} exists but its key is not a single string partition key `pk`"
                )));
            }
            true
        }
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            false
        }
        Err(e) => return Err(map_err(e, table, 0)),
    };
    if !exists {
        let created = client
            .create_table()
            .table_name(table)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(PK)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .map_err(StoreError::generic)?,
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(PK)
                    .key_type(KeyType::Hash)
                    .build()
                    .map_err(StoreError::generic)?,
            )
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await;
        match created {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_in_use_exception()) => {}
            Err(e) => return Err(map_err(e, table, 0)),
        }
    }
    client
        .wait_until_table_exists()
        .table_name(table)
        .wait(ACTIVE_WITHIN)
        .await
        .map_err(|e| {
            StoreError::unavailable(format!("table {table} did not become ACTIVE: {e}"))
        })?;
    Ok(())
}
