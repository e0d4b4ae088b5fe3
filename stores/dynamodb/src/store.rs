//! [`DynamoDbStore`]: the `Store` contract on one DynamoDB table.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeValue, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
};
use bytes::Bytes;
use exactly::store::Capabilities;
use exactly::{Precondition, Store, StoreError, Version, Versioned, Write};

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
    transactions: bool,
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
            transactions: false,
        })
    }

    /// Offers [`Store::put_all`] through `TransactWriteItems` (and so
    /// claims `atomic_multi_key`: the protocol's commit then consumes the
    /// incoming token in the same write). Off by default: DynamoDB
    /// isolates a transaction from concurrent `PutItem`s, but moto, the
    /// server the tests run on, does not (its transactions lose concurrent
    /// updates), so this path is checked here only for all-or-nothing, not
    /// under concurrency. Turn it on against real DynamoDB only.
    pub fn transactions(mut self, on: bool) -> Self {
        self.transactions = on;
        self
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

/// The condition of a conditional put.
struct Condition {
    expression: &'static str,
    /// The version `:v` must be.
    expected: Option<AttributeValue>,
}

impl DynamoDbStore {
    /// The item of a put of `value` at `key` at a fresh version, and its
    /// condition; `Conflict` for a version that cannot be ours.
    fn conditional(
        &self,
        key: &str,
        value: &Bytes,
        precondition: &Precondition,
    ) -> Result<(HashMap<String, AttributeValue>, Condition, Version), StoreError> {
        Self::check_key(key)?;
        StoreError::check_size(key, value.len(), self.max_value_bytes)?;
        let condition = match precondition {
            Precondition::Absent => Condition {
                expression: "attribute_not_exists(pk)",
                expected: None,
            },
            // No version of ours: matches nothing.
            Precondition::Matches(expected) if !is_ours(expected) => {
                return Err(StoreError::conflict(key));
            }
            Precondition::Matches(expected) => Condition {
                expression: "v = :v",
                expected: Some(AttributeValue::N(expected.to_string())),
            },
        };
        let version = new_version();
        let item = HashMap::from([
            (PK.to_owned(), pk(key)),
            (V.to_owned(), AttributeValue::N(version.clone())),
            (VAL.to_owned(), AttributeValue::B(Blob::new(value.to_vec()))),
        ]);
        Ok((item, condition, Version::new(version)))
    }
}

/// The index of the write a cancelled transaction refused: its condition
/// failed, or another transaction held the item.
fn refused<R>(error: &SdkError<TransactWriteItemsError, R>) -> Option<usize> {
    let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) =
        error.as_service_error()
    else {
        return None;
    };
    cancelled.cancellation_reasons().iter().position(|r| {
        matches!(
            r.code(),
            Some("ConditionalCheckFailed" | "TransactionConflict")
        )
    })
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
        let size = value.len();
        let (item, condition, version) = self.conditional(key, &value, &precondition)?;
        let mut request = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(condition.expression);
        if let Some(expected) = condition.expected {
            request = request.expression_attribute_values(":v", expected);
        }
        request.send().await.map_err(|e| map_err(e, key, size))?;
        Ok(version)
    }

    /// One `TransactWriteItems` of conditional puts (up to 100 items, 4 MB
    /// in all; each costs twice the write capacity of a `PutItem`).
    async fn put_all(&self, writes: Vec<Write>) -> Result<Vec<Version>, StoreError> {
        if !self.transactions {
            return Err(StoreError::NotSupported(
                "put_all on DynamoDB needs DynamoDbStore::transactions(true)".into(),
            ));
        }
        let mut items = Vec::with_capacity(writes.len());
        let mut versions = Vec::with_capacity(writes.len());
        for w in &writes {
            let (item, condition, version) = self.conditional(&w.key, &w.value, &w.precondition)?;
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression(condition.expression)
                .set_expression_attribute_values(
                    condition
                        .expected
                        .map(|v| HashMap::from([(":v".to_owned(), v)])),
                )
                .build()
                .map_err(StoreError::generic)?;
            items.push(TransactWriteItem::builder().put(put).build());
            versions.push(version);
        }
        let first = writes.first().map_or("", |w| w.key.as_str());
        let size = writes.iter().map(|w| w.value.len()).sum();
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => Ok(versions),
            Err(error) => Err(match refused(&error) {
                Some(i) if i < writes.len() => StoreError::conflict(&writes[i].key),
                _ => map_err(error, first, size),
            }),
        }
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
        let caps = Capabilities::default()
            .with_max_value_bytes(self.max_value_bytes)
            .with_max_key_bytes(MAX_KEY_BYTES);
        if self.transactions {
            caps.with_atomic_multi_key()
        } else {
            caps
        }
    }
}
