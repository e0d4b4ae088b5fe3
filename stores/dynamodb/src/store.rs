//! [`DynamoDbStore`]: the `Store` contract on one DynamoDB table.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use bytes::Bytes;
use exactly::store::Capabilities;
use exactly::{Precondition, Store, StoreError, Version, Versioned};

use crate::error::{MAX_ITEM_BYTES, map_err};
use crate::table::{PK, ensure};

/// The version attribute (a number).
const V: &str = "v";
/// The value attribute (binary).
const VAL: &str = "val";

/// Largest value accepted by default: DynamoDB's 400 KB item limit less
/// 1 KiB for the key (up to 512 bytes), the version and attribute names.
pub const DEFAULT_MAX_VALUE_BYTES: usize = MAX_ITEM_BYTES - 1024;

/// Longest key DynamoDB accepts as a partition key, in bytes.
pub const MAX_KEY_BYTES: usize = 2048;

/// A [`Store`] in a DynamoDB table of items `{pk: S, v: N, val: B}`.
///
/// `Absent` is a `PutItem` with `attribute_not_exists(pk)`, `Matches` one
/// with `v = :v`; reads are strongly consistent. Each write's version is a
/// fresh UUID v7 (as a 120-bit number: 48 bits of milliseconds, then 72
/// random bits): unique without a second write to a counter item, so a
/// version never repeats, not even after delete and re-create.
#[derive(Clone, Debug)]
pub struct DynamoDbStore {
    client: Client,
    table: String,
    max_value_bytes: usize,
}

fn new_version() -> String {
    (uuid::Uuid::now_v7().as_u128() >> 8).to_string()
}

impl DynamoDbStore {
    /// A store on `table`, created (on-demand billing) if missing; waits
    /// until it is `ACTIVE`.
    pub async fn new(client: Client, table: impl Into<String>) -> Result<Self, StoreError> {
        let table = table.into();
        ensure(&client, &table).await?;
        Ok(Self {
            client,
            table,
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
        })
    }

    /// Refuses values over `limit` bytes with [`StoreError::TooLarge`]
    /// before sending them (default [`DEFAULT_MAX_VALUE_BYTES`]; DynamoDB
    /// itself refuses items over 400 KB, which is also `TooLarge`).
    pub fn max_value_bytes(mut self, limit: usize) -> Self {
        self.max_value_bytes = limit;
        self
    }

    /// The SDK client this store uses.
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn check_key(key: &str) -> Result<(), StoreError> {
        if key.is_empty() || key.len() > MAX_KEY_BYTES {
            return Err(StoreError::InvalidKey {
                key: key.chars().take(80).collect(),
                reason: "DynamoDB partition keys are 1 to 2048 bytes",
            });
        }
        Ok(())
    }
}

/// Whether `version` is one of ours: a decimal number in canonical form
/// (DynamoDB compares numbers, so `007` would match `7`). Any other string
/// matches no item.
fn is_ours(version: &Version) -> bool {
    let v = version.as_str();
    v.parse::<u128>().is_ok_and(|n| n.to_string() == v)
}

fn pk(key: &str) -> AttributeValue {
    AttributeValue::S(key.to_owned())
}

#[async_trait]
impl Store for DynamoDbStore {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        Self::check_key(key)?;
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, pk(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| map_err(e, key, 0))?;
        let Some(item) = out.item else {
            return Ok(None);
        };
        let bad = || StoreError::generic(format!("item {key:?} is not an exactly record"));
        let version = item.get(V).and_then(|v| v.as_n().ok()).ok_or_else(bad)?;
        let value = item.get(VAL).and_then(|v| v.as_b().ok()).ok_or_else(bad)?;
        Ok(Some(Versioned {
            value: Bytes::copy_from_slice(value.as_ref()),
            version: Version::new(version.clone()),
        }))
    }

    async fn put(
        &self,
        key: &str,
        value: Bytes,
        precondition: Precondition,
    ) -> Result<Version, StoreError> {
        Self::check_key(key)?;
        let size = value.len();
        StoreError::check_size(key, size, self.max_value_bytes)?;
        if let Precondition::Matches(expected) = &precondition
            && !is_ours(expected)
        {
            return Err(StoreError::conflict(key)); // no version of ours: matches nothing
        }
        let version = new_version();
        let request = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(PK, pk(key))
            .item(V, AttributeValue::N(version.clone()))
            .item(VAL, AttributeValue::B(Blob::new(value.to_vec())));
        let request = match &precondition {
            Precondition::Absent => request.condition_expression("attribute_not_exists(pk)"),
            Precondition::Matches(expected) => request
                .condition_expression("v = :v")
                .expression_attribute_values(":v", AttributeValue::N(expected.to_string())),
        };
        request.send().await.map_err(|e| map_err(e, key, size))?;
        Ok(Version::new(version))
    }

    async fn delete(&self, key: &str, version: &Version) -> Result<(), StoreError> {
        Self::check_key(key)?;
        if !is_ours(version) {
            return match self.get(key).await? {
                Some(_) => Err(StoreError::conflict(key)),
                None => Err(StoreError::not_found(key)),
            };
        }
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(PK, pk(key))
            .condition_expression("v = :v")
            .expression_attribute_values(":v", AttributeValue::N(version.to_string()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let error = match result {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        let Some(DeleteItemError::ConditionalCheckFailedException(failed)) =
            error.as_service_error()
        else {
            return Err(map_err(error, key, 0));
        };
        // Say why: the failed check returns the item when there is one.
        let present = match failed.item() {
            Some(item) => !item.is_empty(),
            None => self.get(key).await?.is_some(),
        };
        if present {
            Err(StoreError::conflict(key))
        } else {
            Err(StoreError::not_found(key))
        }
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // A consistent Scan of the whole table, filtered on the server:
        // DynamoDB has no ordered index over all keys without a GSI (see
        // docs/stores.md for why not). Only the Sweeper lists.
        let mut keys = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let mut scan = self
                .client
                .scan()
                .table_name(&self.table)
                .consistent_read(true)
                .projection_expression(PK)
                .filter_expression("begins_with(pk, :p)")
                .expression_attribute_values(":p", AttributeValue::S(prefix.to_owned()))
                .set_exclusive_start_key(start.take());
            if prefix.is_empty() {
                scan = scan
                    .set_filter_expression(None)
                    .set_expression_attribute_values(None);
            }
            let page = scan.send().await.map_err(|e| map_err(e, prefix, 0))?;
            for item in page.items() {
                if let Some(Ok(key)) = item.get(PK).map(AttributeValue::as_s)
                    && key.starts_with(prefix)
                    && start_after.is_none_or(|after| key.as_str() > after)
                {
                    keys.push(key.clone());
                }
            }
            match page.last_evaluated_key {
                Some(last) if !last.is_empty() => start = Some(last),
                _ => break,
            }
        }
        keys.sort_unstable();
        keys.truncate(limit);
        Ok(keys)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
            .with_max_value_bytes(self.max_value_bytes)
            .with_max_key_bytes(MAX_KEY_BYTES)
    }
}
