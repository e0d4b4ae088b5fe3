//! [`SqliteStore`]: the `Store` contract on one SQLite table.

use std::path::Path;

use async_trait::async_trait;
use bytes::Bytes;
use exactly::store::{Capabilities, in_key_order, prefix_end};
use exactly::{Precondition, Store, StoreError, Version, Versioned, Write};
use sqlx::SqliteConnection;
use sqlx::sqlite::SqlitePool;

use crate::pool::{is_transient, open_pool};

/// Default largest value accepted: 16 MiB. Entity records are meant to be
/// small; large payloads belong in a blob store behind a claim check.
pub const DEFAULT_MAX_VALUE_BYTES: usize = 16 * 1024 * 1024;

/// Created on every open; each statement is a no-op when it already ran.
///
/// Keys are BLOBs of their UTF-8 bytes, so the primary-key order is plain
/// byte order and `list` can take a byte range of it. Versions come from
/// one counter row that only ever grows (see [`SqliteStore`]).
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS exactly_kv (
    key     BLOB    NOT NULL PRIMARY KEY,
    value   BLOB    NOT NULL,
    version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS exactly_kv_version (
    id   INTEGER NOT NULL PRIMARY KEY CHECK (id = 0),
    last INTEGER NOT NULL
);
INSERT OR IGNORE INTO exactly_kv_version (id, last) VALUES (0, 0);
";

/// A [`Store`] in a SQLite file.
///
/// Every write bumps one counter row, in the same `BEGIN IMMEDIATE`
/// transaction as the write, and takes its new value as the key's version.
/// The counter never goes back, so a version never repeats for any key —
/// not after a delete and re-create, not across processes sharing the file
/// (the `versions_never_repeat` clause of the contract, deterministically
/// rather than with the odds of a random id). SQLite has one writer at a
/// time anyway, so the shared counter costs no concurrency.
///
/// Values are never logged; errors name the key, never the value.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    max_value_bytes: usize,
}

impl SqliteStore {
    /// Opens (creating if needed) the SQLite file at `path` with the
    /// settings of [`crate::pool`], and creates the table if missing.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let pool = open_pool(path).await.map_err(store_error)?;
        Self::from_pool(pool).await
    }

    /// A store on an existing pool (e.g. one shared with the SQL queue);
    /// creates the table if missing.
    pub async fn from_pool(pool: SqlitePool) -> Result<Self, StoreError> {
        sqlx::raw_sql(SCHEMA)
            .execute(&pool)
            .await
            .map_err(store_error)?;
        Ok(Self {
            pool,
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
        })
    }

    /// Refuses values over `limit` bytes with [`StoreError::TooLarge`]
    /// (default [`DEFAULT_MAX_VALUE_BYTES`]; SQLite itself stops at about
    /// 1 GB).
    pub fn max_value_bytes(mut self, limit: usize) -> Self {
        self.max_value_bytes = limit;
        self
    }

    /// The pool this store runs on.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

/// Maps every driver error of this store: the one place that decides what
/// a caller may retry.
pub fn store_error(error: sqlx::Error) -> StoreError {
    if is_transient(&error) {
        StoreError::unavailable(error)
    } else {
        StoreError::generic(error)
    }
}

/// Our versions are decimal counters; any other string matches no row.
fn parse_version(version: &Version) -> Option<i64> {
    version.as_str().parse().ok()
}

fn to_version(counter: i64) -> Version {
    Version::new(counter.to_string())
}

impl SqliteStore {
    /// Writes every key under its precondition in one transaction, at one
    /// new counter value, which it returns; the first refused precondition
    /// rolls all back.
    async fn write_all(&self, writes: &[Write]) -> Result<i64, StoreError> {
        check_sizes(writes, self.max_value_bytes)?;
        // IMMEDIATE takes the write lock up front (waiting up to the busy
        // timeout), so the counter bump and the writes commit together.
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(store_error)?;
        let version = write_in(&mut tx, writes).await?;
        tx.commit().await.map_err(store_error)?;
        Ok(version)
    }
}

/// [`Store::put_all`] of `writes` inside a transaction the caller holds
/// (begun `IMMEDIATE`) and commits: for the SQL queue's one transaction
/// of a commit, its sends and its ack. Checks sizes against
/// `max_value_bytes`; on an error the caller must roll back (drop) the
/// transaction.
pub async fn put_all_in(
    tx: &mut SqliteConnection,
    writes: &[Write],
    max_value_bytes: usize,
) -> Result<Vec<Version>, StoreError> {
    check_sizes(writes, max_value_bytes)?;
    let version = write_in(tx, writes).await?;
    Ok(vec![to_version(version); writes.len()])
}

/// `TooLarge` for the first value over `max_value_bytes`.
fn check_sizes(writes: &[Write], max_value_bytes: usize) -> Result<(), StoreError> {
    writes
        .iter()
        .try_for_each(|w| StoreError::check_size(&w.key, w.value.len(), max_value_bytes))
}

/// Bumps the version counter and writes every key under its precondition
/// at the new value, which it returns; `Conflict` on the first refused
/// precondition (the caller's transaction then rolls everything back).
async fn write_in(tx: &mut SqliteConnection, writes: &[Write]) -> Result<i64, StoreError> {
    let version: i64 = sqlx::query_scalar(
        "UPDATE exactly_kv_version SET last = last + 1 WHERE id = 0 RETURNING last",
    )
    .fetch_one(&mut *tx)
    .await
    .map_err(store_error)?;
    for w in writes {
        let written = match &w.precondition {
            Precondition::Absent => sqlx::query(
                "INSERT INTO exactly_kv (key, value, version) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (key) DO NOTHING",
            )
            .bind(w.key.as_bytes())
            .bind(&w.value[..])
            .bind(version),
            Precondition::Matches(v) => {
                // Our versions are decimal counters; any other matches no row.
                let expected = parse_version(v).ok_or_else(|| StoreError::conflict(&w.key))?;
                sqlx::query(
                    "UPDATE exactly_kv SET value = ?2, version = ?3 \
                     WHERE key = ?1 AND version = ?4",
                )
                .bind(w.key.as_bytes())
                .bind(&w.value[..])
                .bind(version)
                .bind(expected)
            }
        }
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
        if written.rows_affected() == 0 {
            return Err(StoreError::conflict(&w.key));
        }
    }
    Ok(version)
}

#[async_trait]
impl Store for SqliteStore {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        let row: Option<(Vec<u8>, i64)> =
            sqlx::query_as("SELECT value, version FROM exactly_kv WHERE key = ?1")
                .bind(key.as_bytes())
                .fetch_optional(&self.pool)
                .await
                .map_err(store_error)?;
        Ok(row.map(|(value, version)| Versioned {
            value: Bytes::from(value),
            version: to_version(version),
        }))
    }

    /// One statement: one snapshot of all the keys.
    async fn get_all(&self, keys: &[&str]) -> Result<Vec<Option<Versioned>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        // Only placeholders are spliced in; the keys are bound.
        let marks = vec!["?"; keys.len()].join(", ");
        let sql = format!("SELECT key, value, version FROM exactly_kv WHERE key IN ({marks})");
        let mut query = sqlx::query_as::<_, (Vec<u8>, Vec<u8>, i64)>(sqlx::AssertSqlSafe(sql));
        for key in keys {
            query = query.bind(key.as_bytes());
        }
        let rows = query.fetch_all(&self.pool).await.map_err(store_error)?;
        Ok(in_key_order(keys, rows, to_version))
    }

    async fn put(
        &self,
        key: &str,
        value: Bytes,
        precondition: Precondition,
    ) -> Result<Version, StoreError> {
        let write = Write {
            key: key.to_owned(),
            value,
            precondition,
        };
        Ok(to_version(self.write_all(&[write]).await?))
    }

    /// One `BEGIN IMMEDIATE` transaction for all the writes, as for one.
    async fn put_all(&self, writes: Vec<Write>) -> Result<Vec<Version>, StoreError> {
        let version = self.write_all(&writes).await?;
        Ok(vec![to_version(version); writes.len()])
    }

    async fn delete(&self, key: &str, version: &Version) -> Result<(), StoreError> {
        if let Some(expected) = parse_version(version) {
            let deleted = sqlx::query("DELETE FROM exactly_kv WHERE key = ?1 AND version = ?2")
                .bind(key.as_bytes())
                .bind(expected)
                .execute(&self.pool)
                .await
                .map_err(store_error)?;
            if deleted.rows_affected() == 1 {
                return Ok(());
            }
        }
        // Nothing deleted: say why. Versions never repeat, so if the key
        // exists now it holds some other version — a Conflict at this read.
        let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM exactly_kv WHERE key = ?1")
            .bind(key.as_bytes())
            .fetch_optional(&self.pool)
            .await
            .map_err(store_error)?;
        match exists {
            Some(_) => Err(StoreError::conflict(key)),
            None => Err(StoreError::not_found(key)),
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
        // A byte range of the primary key, not LIKE: `%` and `_` in keys
        // are ordinary characters here.
        let query = match start_after {
            Some(after) if after >= prefix => sqlx::query_scalar(
                "SELECT key FROM exactly_kv WHERE key > ?1 AND key < ?2 ORDER BY key LIMIT ?3",
            )
            .bind(after.as_bytes()),
            _ => sqlx::query_scalar(
                "SELECT key FROM exactly_kv WHERE key >= ?1 AND key < ?2 ORDER BY key LIMIT ?3",
            )
            .bind(prefix.as_bytes()),
        };
        let keys: Vec<Vec<u8>> = query
            .bind(prefix_end(prefix))
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await
            .map_err(store_error)?;
        keys.into_iter()
            .map(|key| String::from_utf8(key).map_err(StoreError::generic))
            .collect()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
            .with_max_value_bytes(self.max_value_bytes)
            .with_atomic_multi_key()
            .with_one_trip_get_all()
    }
}
