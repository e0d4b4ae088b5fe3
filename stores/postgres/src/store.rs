//! [`PostgresStore`]: the `Store` contract on one PostgreSQL table, one
//! round trip per call.

use std::fmt;

use async_trait::async_trait;
use bytes::Bytes;
use exactly::store::{Capabilities, in_key_order, prefix_end};
use exactly::{Precondition, Store, StoreError, Version, Versioned, Write};
use sqlx::postgres::{PgPool, PgPoolOptions};

use crate::error::map_err;
use crate::pool::{describe, open, pool_options};
use crate::schema::{CONFLICT_STATE, migrate};

/// Default largest value accepted: 16 MiB. Entity records are meant to be
/// small; large payloads belong in a blob store behind a claim check.
pub const DEFAULT_MAX_VALUE_BYTES: usize = 16 * 1024 * 1024;

/// A [`Store`] in a PostgreSQL table (`exactly_kv`).
///
/// Each write takes its version from one sequence (`nextval` inside the
/// same statement), so a version never repeats for any key — not after a
/// delete and re-create, not across processes (the `versions_never_repeat`
/// clause). Conditional writes are single statements: `INSERT ... ON
/// CONFLICT DO NOTHING` for [`Precondition::Absent`], `UPDATE ... WHERE
/// version = $v` for [`Precondition::Matches`]; PostgreSQL's row locks
/// make the second of two racing writers re-check its `WHERE` against the
/// first one's row, so it matches nothing and gets `Conflict`.
///
/// `Debug` shows `user@host:port/db`, never the password; values are never
/// logged.
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    max_value_bytes: usize,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("database", &describe(&self.pool))
            .field("max_value_bytes", &self.max_value_bytes)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user:password@host:port/db`) with
    /// [`pool_options`], and creates or migrates the schema.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, pool_options()).await
    }

    /// Like [`connect`](Self::connect) with your pool settings, e.g.
    /// `pool_options().max_connections(32)`.
    pub async fn connect_with(url: &str, options: PgPoolOptions) -> Result<Self, StoreError> {
        Self::from_pool(open(url, options).await?).await
    }

    /// A store on an existing pool; creates or migrates the schema.
    pub async fn from_pool(pool: PgPool) -> Result<Self, StoreError> {
        migrate(&pool).await?;
        Ok(Self {
            pool,
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
        })
    }

    /// Refuses values over `limit` bytes with [`StoreError::TooLarge`]
    /// (default [`DEFAULT_MAX_VALUE_BYTES`]; PostgreSQL itself stops at
    /// 1 GB per `BYTEA`).
    pub fn max_value_bytes(mut self, limit: usize) -> Self {
        self.max_value_bytes = limit;
        self
    }

    /// The pool this store runs on.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// Our versions are decimal sequence values in canonical form; any other
/// string (`007` included) matches no row.
fn parse_version(version: &Version) -> Option<i64> {
    let v = version.as_str();
    v.parse().ok().filter(|n: &i64| n.to_string() == v)
}

/// The 0-based index of the write `exactly_put_all` refused, if `error`
/// is that refusal.
fn conflict_index(error: &sqlx::Error) -> Option<usize> {
    let db = error.as_database_error()?;
    if db.code().as_deref() != Some(CONFLICT_STATE) {
        return None;
    }
    db.message().parse::<usize>().ok()?.checked_sub(1)
}

/// The arguments of `exactly_put_all(keys, vals, expected)` for `writes`
/// (sizes checked against `max_value_bytes`; expected version 0 means
/// absent): for [`Store::put_all`] and for a statement that runs the same
/// function beside other work, as the SQL queue's one transaction of a
/// commit, its sends and its ack does.
///
/// The arguments are in key order, whatever the order of `writes`: every
/// such transaction then locks its rows in one order, so two that write
/// some of the same keys wait for each other instead of deadlocking (a
/// deadlock costs both PostgreSQL's `deadlock_timeout`, 1 s by default,
/// before one is aborted). [`PutAllArgs::order`] maps errors and versions
/// back to `writes`.
pub fn put_all_args(writes: &[Write], max_value_bytes: usize) -> Result<PutAllArgs, StoreError> {
    let mut order: Vec<usize> = (0..writes.len()).collect();
    order.sort_by(|&a, &b| writes[a].key.as_bytes().cmp(writes[b].key.as_bytes()));
    let mut args = PutAllArgs {
        keys: Vec::with_capacity(writes.len()),
        values: Vec::with_capacity(writes.len()),
        expected: Vec::with_capacity(writes.len()),
        order: WriteOrder(order),
    };
    for &i in &args.order.0 {
        let w = &writes[i];
        StoreError::check_size(&w.key, w.value.len(), max_value_bytes)?;
        args.keys.push(w.key.as_bytes().to_vec());
        args.values.push(w.value.to_vec());
        args.expected.push(match &w.precondition {
            Precondition::Absent => 0,
            Precondition::Matches(v) => {
                parse_version(v).ok_or_else(|| StoreError::conflict(&w.key))?
            }
        });
    }
    Ok(args)
}

/// `exactly_put_all`'s arguments, in key order.
#[derive(Debug)]
pub struct PutAllArgs {
    /// The keys (their UTF-8 bytes), ascending.
    pub keys: Vec<Vec<u8>>,
    /// The value of each key.
    pub values: Vec<Vec<u8>>,
    /// The version each key must have; 0: absent.
    pub expected: Vec<i64>,
    /// Which of the caller's writes each argument is.
    pub order: WriteOrder,
}

/// Which of the caller's writes each of `exactly_put_all`'s arguments is:
/// maps what the statement returns back to the caller's order.
#[derive(Debug)]
pub struct WriteOrder(Vec<usize>);

impl WriteOrder {
    /// Maps an error of a statement running `exactly_put_all` on `writes`:
    /// a refused precondition is a `Conflict` naming its key.
    pub fn error(&self, error: sqlx::Error, writes: &[Write]) -> StoreError {
        match conflict_index(&error).and_then(|j| self.0.get(j)) {
            Some(&i) if i < writes.len() => StoreError::conflict(&writes[i].key),
            _ => map_err(error),
        }
    }

    /// `exactly_put_all`'s result as versions, in the caller's order.
    pub fn versions(&self, versions: Vec<i64>) -> Vec<Version> {
        let mut out = vec![None; self.0.len()];
        for (&i, v) in self.0.iter().zip(versions) {
            out[i] = Some(Version::new(v.to_string()));
        }
        out.into_iter().flatten().collect()
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        let row: Option<(Vec<u8>, i64)> =
            sqlx::query_as("SELECT value, version FROM exactly_kv WHERE key = $1")
                .bind(key.as_bytes())
                .fetch_optional(&self.pool)
                .await
                .map_err(map_err)?;
        Ok(row.map(|(value, version)| Versioned {
            value: Bytes::from(value),
            version: Version::new(version.to_string()),
        }))
    }

    /// One statement: one snapshot of all the keys.
    async fn get_all(&self, keys: &[&str]) -> Result<Vec<Option<Versioned>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let wanted: Vec<Vec<u8>> = keys.iter().map(|k| k.as_bytes().to_vec()).collect();
        let rows: Vec<(Vec<u8>, Vec<u8>, i64)> =
            sqlx::query_as("SELECT key, value, version FROM exactly_kv WHERE key = ANY($1)")
                .bind(&wanted)
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
        Ok(in_key_order(keys, rows, |version: i64| {
            Version::new(version.to_string())
        }))
    }

    async fn put(
        &self,
        key: &str,
        value: Bytes,
        precondition: Precondition,
    ) -> Result<Version, StoreError> {
        StoreError::check_size(key, value.len(), self.max_value_bytes)?;
        let query = match &precondition {
            Precondition::Absent => sqlx::query_scalar(
                "INSERT INTO exactly_kv (key, value, version) \
                 VALUES ($1, $2, nextval('exactly_kv_version')) \
                 ON CONFLICT (key) DO NOTHING RETURNING version",
            )
            .bind(key.as_bytes())
            .bind(&value[..]),
            Precondition::Matches(v) => sqlx::query_scalar(
                "UPDATE exactly_kv SET value = $2, version = nextval('exactly_kv_version') \
                 WHERE key = $1 AND version = $3 RETURNING version",
            )
            .bind(key.as_bytes())
            .bind(&value[..])
            .bind(parse_version(v).ok_or_else(|| StoreError::conflict(key))?),
        };
        let version: Option<i64> = query.fetch_optional(&self.pool).await.map_err(map_err)?;
        version
            .map(|v| Version::new(v.to_string()))
            .ok_or_else(|| StoreError::conflict(key))
    }

    /// One statement (`exactly_put_all`, a function the schema installs):
    /// one round trip, one transaction.
    async fn put_all(&self, writes: Vec<Write>) -> Result<Vec<Version>, StoreError> {
        let args = put_all_args(&writes, self.max_value_bytes)?;
        let versions: Vec<i64> = sqlx::query_scalar("SELECT exactly_put_all($1, $2, $3)")
            .bind(args.keys)
            .bind(args.values)
            .bind(args.expected)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| args.order.error(e, &writes))?;
        Ok(args.order.versions(versions))
    }

    async fn delete(&self, key: &str, version: &Version) -> Result<(), StoreError> {
        // One statement: the data-modifying CTE deletes at the version, the
        // outer SELECT (on the statement's snapshot, before the delete)
        // tells a wrong version (row present) from a missing key.
        let (deleted, present): (bool, bool) = sqlx::query_as(
            "WITH d AS (DELETE FROM exactly_kv WHERE key = $1 AND version = $2 RETURNING 1) \
             SELECT EXISTS (SELECT 1 FROM d), \
                    EXISTS (SELECT 1 FROM exactly_kv WHERE key = $1)",
        )
        .bind(key.as_bytes())
        .bind(parse_version(version).unwrap_or(-1))
        .fetch_one(&self.pool)
        .await
        .map_err(map_err)?;
        match (deleted, present) {
            (true, _) => Ok(()),
            (false, true) => Err(StoreError::conflict(key)),
            (false, false) => Err(StoreError::not_found(key)),
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
                "SELECT key FROM exactly_kv WHERE key > $1 AND key < $2 ORDER BY key LIMIT $3",
            )
            .bind(after.as_bytes()),
            _ => sqlx::query_scalar(
                "SELECT key FROM exactly_kv WHERE key >= $1 AND key < $2 ORDER BY key LIMIT $3",
            )
            .bind(prefix.as_bytes()),
        };
        let keys: Vec<Vec<u8>> = query
            .bind(prefix_end(prefix))
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn write(key: &str, precondition: Precondition) -> Write {
        Write {
            key: key.to_owned(),
            value: Bytes::from(key.to_owned()),
            precondition,
        }
    }

    #[test]
    fn put_all_args_are_in_key_order_and_map_back() {
        let writes = [
            write("b", Precondition::Matches(Version::new("7"))),
            write("a", Precondition::Absent),
            write("c", Precondition::Matches(Version::new("9"))),
        ];
        let args = put_all_args(&writes, 1024).expect("valid writes");
        assert_eq!(args.keys, [b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
        assert_eq!(args.values, args.keys, "each value stays with its key");
        assert_eq!(args.expected, [0, 7, 9]);
        // The statement returns versions in its (key) order: a, b, c.
        let versions = args.order.versions(vec![101, 102, 103]);
        assert_eq!(
            versions,
            [
                Version::new("102"),
                Version::new("101"),
                Version::new("103")
            ],
            "versions in the caller's order: b, a, c"
        );
    }
}
