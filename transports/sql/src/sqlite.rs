//! The queue table on SQLite.

use async_trait::async_trait;
use exactly::{StoreError, TransportError, Version, Write};
use exactly_store_sqlite::is_transient;
use sqlx::sqlite::SqlitePool;
use sqlx::{Sqlite, SqliteConnection, Transaction};

use crate::table::{Leased, LeasedRow, NewRow, Table, driver_error};

/// Created on every open; a no-op when it exists. `AUTOINCREMENT` keeps
/// `seq` from ever being reused after a delete, so a stale receipt cannot
/// ack a newer message that got the same number.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS exactly_queue (
    seq        INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    queue      TEXT    NOT NULL,
    envelope   BLOB    NOT NULL,
    visible_at INTEGER NOT NULL,
    lease      TEXT,
    deliveries INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS exactly_queue_visible ON exactly_queue (queue, visible_at);
";

/// The queue on a SQLite pool.
#[derive(Debug)]
pub(crate) struct SqliteTable {
    pool: SqlitePool,
}

impl SqliteTable {
    /// Creates the table if missing.
    pub(crate) async fn new(pool: SqlitePool) -> Result<Self, TransportError> {
        sqlx::raw_sql(SCHEMA)
            .execute(&pool)
            .await
            .map_err(map_err)?;
        Ok(Self { pool })
    }
}

impl SqliteTable {
    /// Takes the database's write lock up front (waiting up to the busy
    /// timeout).
    async fn begin(&self) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
        self.pool.begin_with("BEGIN IMMEDIATE").await
    }
}

/// Inserts `rows` in the caller's transaction.
async fn insert_in(tx: &mut SqliteConnection, rows: Vec<NewRow>) -> Result<(), sqlx::Error> {
    for row in rows {
        sqlx::query("INSERT INTO exactly_queue (queue, envelope, visible_at) VALUES (?1, ?2, ?3)")
            .bind(row.queue)
            .bind(row.envelope)
            .bind(row.visible_at)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

/// Deletes the rows named by (`queue`, `seq`) in the caller's transaction.
async fn delete_in(tx: &mut SqliteConnection, rows: &[(&str, i64)]) -> Result<(), sqlx::Error> {
    for (queue, seq) in rows {
        sqlx::query("DELETE FROM exactly_queue WHERE seq = ?1 AND queue = ?2")
            .bind(seq)
            .bind(queue)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

/// Maps every SQLite driver error of the queue.
fn map_err(error: sqlx::Error) -> TransportError {
    driver_error(error, is_transient)
}

#[async_trait]
impl Table for SqliteTable {
    async fn insert(&self, rows: Vec<NewRow>) -> Result<(), TransportError> {
        let mut tx = self.begin().await.map_err(map_err)?;
        insert_in(&mut tx, rows).await.map_err(map_err)?;
        // Ok only once the batch is committed (durably, with the default
        // `synchronous = FULL`); an error before drops `tx`: nothing sent.
        tx.commit().await.map_err(map_err)
    }

    async fn lease(
        &self,
        queue: &str,
        max: i64,
        now: i64,
        lease: &str,
        until: i64,
    ) -> Result<Vec<Leased>, TransportError> {
        // One statement, so choosing and claiming the rows is atomic: two
        // receivers never lease the same row at once.
        let rows: Vec<LeasedRow> = sqlx::query_as(
            "UPDATE exactly_queue SET lease = ?1, visible_at = ?2, deliveries = deliveries + 1 \
             WHERE seq IN (SELECT seq FROM exactly_queue \
                           WHERE queue = ?3 AND visible_at <= ?4 ORDER BY seq LIMIT ?5) \
             RETURNING seq, envelope, deliveries",
        )
        .bind(lease)
        .bind(until)
        .bind(queue)
        .bind(now)
        .bind(max)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(Leased::in_seq_order(rows))
    }

    async fn delete(&self, rows: &[(&str, i64)]) -> Result<(), TransportError> {
        let mut tx = self.begin().await.map_err(map_err)?;
        delete_in(&mut tx, rows).await.map_err(map_err)?;
        tx.commit().await.map_err(map_err)
    }

    /// One `BEGIN IMMEDIATE` transaction: the store's writes, then the
    /// inserts, then the deletes; dropped (rolled back) on any error.
    async fn commit_with(
        &self,
        writes: &[Write],
        max_value_bytes: usize,
        rows: Vec<NewRow>,
        acked: &[(&str, i64)],
    ) -> Result<Vec<Version>, StoreError> {
        let store_err = exactly_store_sqlite::store_error;
        let mut tx = self.begin().await.map_err(store_err)?;
        let versions = exactly_store_sqlite::put_all_in(&mut tx, writes, max_value_bytes).await?;
        insert_in(&mut tx, rows).await.map_err(store_err)?;
        delete_in(&mut tx, acked).await.map_err(store_err)?;
        tx.commit().await.map_err(store_err)?;
        Ok(versions)
    }

    async fn release(
        &self,
        queue: &str,
        seq: i64,
        lease: &str,
        visible_at: i64,
    ) -> Result<(), TransportError> {
        sqlx::query(
            "UPDATE exactly_queue SET lease = NULL, visible_at = ?4 \
             WHERE seq = ?1 AND queue = ?2 AND lease = ?3",
        )
        .bind(seq)
        .bind(queue)
        .bind(lease)
        .bind(visible_at)
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(())
    }
}

impl crate::SqlQueue {
    /// Opens (creating if needed) the SQLite file at `path` with the
    /// settings of [`exactly_store_sqlite::pool`], and creates the queue
    /// table if missing.
    pub async fn open(path: impl AsRef<std::path::Path>) -> Result<Self, TransportError> {
        let pool = exactly_store_sqlite::open_pool(path)
            .await
            .map_err(map_err)?;
        Self::from_pool(pool).await
    }

    /// A queue on an existing SQLite pool, e.g. the one a
    /// [`SqliteStore`](exactly_store_sqlite::SqliteStore) uses, so store and
    /// queue live in one file; creates the queue table if missing.
    pub async fn from_pool(pool: SqlitePool) -> Result<Self, TransportError> {
        let table = SqliteTable::new(pool).await?;
        Ok(Self::with_table(std::sync::Arc::new(table)))
    }
}
