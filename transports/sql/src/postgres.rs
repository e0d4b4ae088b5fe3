//! The queue table on PostgreSQL: rows claimed with `FOR UPDATE SKIP
//! LOCKED`, waiting receivers woken by `LISTEN`/`NOTIFY`.

use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use exactly::{StoreError, TransportError, Version, Write};
use exactly_store_postgres::{is_transient, put_all_args};
use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::{Notify, oneshot};

use crate::table::{Leased, LeasedRow, NewRow, Table, driver_error};

/// The channel `send` and `nack` notify (payload: the queue name) and every
/// [`SqlQueue`](crate::SqlQueue) on PostgreSQL listens to.
pub const NOTIFY_CHANNEL: &str = "exactly_queue";

/// Serialises concurrent first opens: `CREATE TABLE IF NOT EXISTS` racing
/// itself in two sessions can fail on the catalog's unique index.
const SCHEMA_LOCK: i64 = 0x6578_6163_746c_7971; // "exactlyq"

/// Created on every open; a no-op when it exists. An identity `seq` is
/// never reused, so a stale receipt cannot ack a newer message. The index
/// serves the claim: visible rows of one queue in `visible_at` order.
const SCHEMA: [&str; 2] = [
    "CREATE TABLE IF NOT EXISTS exactly_queue (
        seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        queue      TEXT   NOT NULL,
        envelope   BYTEA  NOT NULL,
        visible_at BIGINT NOT NULL,
        lease      TEXT,
        deliveries BIGINT NOT NULL DEFAULT 0
    )",
    "CREATE INDEX IF NOT EXISTS exactly_queue_visible ON exactly_queue (queue, visible_at, seq)",
];

/// A CTE that turns off `synchronous_commit` for the statement's own
/// (implicit) transaction, for the writes whose loss is harmless: a lease
/// or an ack lost when the *server* crashes within its WAL writer delay
/// only makes the message deliverable again — a duplicate, which the
/// receiver drops — while the commit stops waiting for a WAL flush of its
/// own. A later durable commit (a send, a store commit) flushes it anyway:
/// WAL is written in order. Sends keep the server's setting: a lost send
/// would be a lost message.
macro_rules! relaxed {
    () => {
        "relaxed AS (SELECT set_config('synchronous_commit', 'off', true))"
    };
}

/// Claims up to `$5` visible rows of queue `$3` at time `$4` and leases
/// them (`$1` until `$2`). The locking CTE runs once; `SKIP LOCKED` lets
/// concurrent receivers claim disjoint rows instead of queueing behind
/// each other's locks.
const LEASE: &str = concat!(
    "WITH picked AS (
         SELECT seq FROM exactly_queue
         WHERE queue = $3 AND visible_at <= $4
         ORDER BY visible_at, seq LIMIT $5
         FOR UPDATE SKIP LOCKED), ",
    relaxed!(),
    " UPDATE exactly_queue AS q
     SET lease = $1, visible_at = $2, deliveries = q.deliveries + 1
     FROM picked, relaxed WHERE q.seq = picked.seq
     RETURNING q.seq, q.envelope, q.deliveries"
);

/// Deletes the acked rows (`$1` queues, `$2` seqs).
const ACK: &str = concat!(
    "WITH ",
    relaxed!(),
    " DELETE FROM exactly_queue AS q
     USING UNNEST($1::text[], $2::int8[]) AS acked (queue, seq), relaxed
     WHERE q.seq = acked.seq AND q.queue = acked.queue"
);

/// The ack of rows (`$4` queues, `$5` seqs) as a data-modifying CTE, for
/// the statements below. Such a CTE runs whether or not the outer query
/// reads it; a refused precondition raises in `exactly_put_all` and so
/// undoes it too.
macro_rules! acked {
    () => {
        "WITH acked AS (
         DELETE FROM exactly_queue AS q
         USING UNNEST($4::text[], $5::int8[]) AS a (queue, seq)
         WHERE q.seq = a.seq AND q.queue = a.queue)"
    };
}

/// The store's `exactly_put_all` (`$1`–`$3`) and the ack of rows, as one
/// statement: one round trip, one transaction, durable (no `relaxed`: the
/// commit is the store's). For a commit that sends nothing.
const COMMIT_ACK: &str = concat!(acked!(), " SELECT exactly_put_all($1, $2, $3)");

/// [`COMMIT_ACK`] and the insert of new rows (`$6`–`$8`), notifying `$9`
/// once per queue on commit. `notified` is a plain `SELECT`, which runs
/// only if the outer query reads it: the always-true `WHERE` does.
const COMMIT_WITH: &str = concat!(
    acked!(),
    ",
     sent AS (
         INSERT INTO exactly_queue (queue, envelope, visible_at)
         SELECT * FROM UNNEST($6::text[], $7::bytea[], $8::int8[])
         RETURNING queue),
     notified AS (
         SELECT pg_notify($9, queue) FROM (SELECT DISTINCT queue FROM sent) AS s)
     SELECT exactly_put_all($1, $2, $3) WHERE (SELECT count(*) FROM notified) >= 0"
);

/// The queue on a PostgreSQL pool. Dropping it stops its listener task.
#[derive(Debug)]
pub(crate) struct PgTable {
    pool: PgPool,
    _stop_listener: oneshot::Sender<()>,
}

/// Maps every PostgreSQL driver error of the queue.
fn map_err(error: sqlx::Error) -> TransportError {
    driver_error(error, is_transient)
}

async fn create_schema(pool: &PgPool) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(SCHEMA_LOCK)
        .execute(&mut *tx)
        .await?;
    for statement in SCHEMA {
        sqlx::query(statement).execute(&mut *tx).await?;
    }
    tx.commit().await
}

/// Wakes the queue's waiting receivers on every notification, until the
/// table is dropped. While the listener reconnects, notifications are
/// lost: it wakes everyone once it is back, and receivers poll anyway.
async fn listen(mut listener: PgListener, wake: Weak<Notify>, mut stop: oneshot::Receiver<()>) {
    loop {
        let next = tokio::select! {
            _ = &mut stop => return,
            next = listener.try_recv() => next,
        };
        let Some(notify) = wake.upgrade() else { return };
        notify.notify_waiters();
        match next {
            Ok(Some(_)) => {}
            Ok(None) => tracing::debug!("queue listener reconnected"),
            Err(e) => {
                tracing::warn!(error = %e, "queue listener failed; retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// The rows as the columns `UNNEST` takes: queues, envelopes, `visible_at`.
fn columns(rows: Vec<NewRow>) -> (Vec<String>, Vec<Vec<u8>>, Vec<i64>) {
    let mut queues = Vec::with_capacity(rows.len());
    let mut envelopes = Vec::with_capacity(rows.len());
    let mut visible = Vec::with_capacity(rows.len());
    for row in rows {
        queues.push(row.queue);
        envelopes.push(row.envelope);
        visible.push(row.visible_at);
    }
    (queues, envelopes, visible)
}

#[async_trait]
impl Table for PgTable {
    async fn insert(&self, rows: Vec<NewRow>) -> Result<(), TransportError> {
        let (queues, envelopes, visible) = columns(rows);
        // One statement, so one implicit transaction: all rows or none, and
        // the notifications go out on commit, never for a rolled-back batch.
        sqlx::query(
            "WITH sent AS (
                 INSERT INTO exactly_queue (queue, envelope, visible_at)
                 SELECT * FROM UNNEST($1::text[], $2::bytea[], $3::int8[])
                 RETURNING queue)
             SELECT pg_notify($4, queue) FROM (SELECT DISTINCT queue FROM sent) AS q",
        )
        .bind(queues)
        .bind(envelopes)
        .bind(visible)
        .bind(NOTIFY_CHANNEL)
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(())
    }

    async fn lease(
        &self,
        queue: &str,
        max: i64,
        now: i64,
        lease: &str,
        until: i64,
    ) -> Result<Vec<Leased>, TransportError> {
        let rows: Vec<LeasedRow> = sqlx::query_as(LEASE)
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
        let (queues, seqs): (Vec<&str>, Vec<i64>) = rows.iter().copied().unzip();
        sqlx::query(ACK)
            .bind(queues)
            .bind(seqs)
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn commit_with(
        &self,
        writes: &[Write],
        max_value_bytes: usize,
        rows: Vec<NewRow>,
        acked: &[(&str, i64)],
    ) -> Result<Vec<Version>, StoreError> {
        let args = put_all_args(writes, max_value_bytes)?;
        let (acked_queues, acked_seqs): (Vec<&str>, Vec<i64>) = acked.iter().copied().unzip();
        let query = sqlx::query_scalar(if rows.is_empty() {
            COMMIT_ACK
        } else {
            COMMIT_WITH
        })
        .bind(args.keys)
        .bind(args.values)
        .bind(args.expected)
        .bind(acked_queues)
        .bind(acked_seqs);
        let query = if rows.is_empty() {
            query
        } else {
            let (queues, envelopes, visible) = columns(rows);
            query
                .bind(queues)
                .bind(envelopes)
                .bind(visible)
                .bind(NOTIFY_CHANNEL)
        };
        let versions: Vec<i64> = query
            .fetch_one(&self.pool)
            .await
            .map_err(|e| args.order.error(e, writes))?;
        Ok(args.order.versions(versions))
    }

    async fn release(
        &self,
        queue: &str,
        seq: i64,
        lease: &str,
        visible_at: i64,
    ) -> Result<(), TransportError> {
        sqlx::query(
            "WITH released AS (
                 UPDATE exactly_queue SET lease = NULL, visible_at = $4
                 WHERE seq = $1 AND queue = $2 AND lease = $3
                 RETURNING queue)
             SELECT pg_notify($5, queue) FROM released",
        )
        .bind(seq)
        .bind(queue)
        .bind(lease)
        .bind(visible_at)
        .bind(NOTIFY_CHANNEL)
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(())
    }
}

impl crate::SqlQueue {
    /// Connects to PostgreSQL at `url` (`postgres://user:pass@host/db`)
    /// with the pool settings of the PostgreSQL store
    /// ([`exactly_store_postgres::pool_options`]), and creates the queue
    /// table if missing. Errors never contain the password.
    pub async fn connect_postgres(url: &str) -> Result<Self, TransportError> {
        let options =
            exactly_store_postgres::connect_options(url).map_err(TransportError::generic)?;
        let pool = exactly_store_postgres::pool_options()
            .connect_with(options)
            .await
            .map_err(|e| {
                let (redacted, secret) = exactly_store_postgres::redact(url);
                let mut message = format!("connecting to {redacted}: {e}");
                if let Some(secret) = secret.filter(|s| !s.is_empty()) {
                    message = message.replace(&secret, "***");
                }
                if is_transient(&e) {
                    TransportError::unavailable(message)
                } else {
                    TransportError::generic(message)
                }
            })?;
        Self::from_pg_pool(pool).await
    }

    /// A queue on an existing PostgreSQL pool — e.g. the one a
    /// `PostgresStore` uses, so store and queue share a database; creates
    /// the queue table if missing. The queue keeps one of the pool's
    /// connections for `LISTEN` while it (or a clone) lives.
    pub async fn from_pg_pool(pool: PgPool) -> Result<Self, TransportError> {
        create_schema(&pool).await.map_err(map_err)?;
        let mut listener = PgListener::connect_with(&pool).await.map_err(map_err)?;
        listener.listen(NOTIFY_CHANNEL).await.map_err(map_err)?;
        let (stop, stopped) = oneshot::channel();
        let table = PgTable {
            pool,
            _stop_listener: stop,
        };
        let queue = Self::with_table(Arc::new(table));
        tokio::spawn(listen(listener, Arc::downgrade(queue.waker()), stopped));
        Ok(queue)
    }
}
