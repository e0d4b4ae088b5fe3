//! The schema, created and migrated on every connect: versioned steps run
//! under an advisory lock, each at most once per database.

use sqlx::postgres::PgPool;

use crate::error::map_err;
use exactly::StoreError;

/// The advisory lock every migrating process takes ("exactly" in ASCII):
/// PostgreSQL's `CREATE ... IF NOT EXISTS` is not safe against a second
/// session creating the same table at the same moment (it can fail with a
/// unique violation on the catalog), so starters take turns.
const LOCK_ID: i64 = 0x0065_7861_6374_6c79;

/// Step `i` brings the schema from version `i` to `i + 1`. Append only:
/// never edit a step that has shipped.
///
/// Step 2 adds `exactly_put_all`, behind [`Store::put_all`](exactly::Store::put_all):
/// conditional writes of several keys in one statement, hence one round
/// trip and one transaction. Expected version 0 means "absent" (the
/// sequence starts at 1); a refused precondition raises SQLSTATE
/// [`CONFLICT_STATE`] with the 1-based index of the write as its message,
/// which aborts the statement and so every write before it.
///
/// Keys are `BYTEA` (their UTF-8 bytes), so the primary-key order is plain
/// byte order whatever the database's collation, and `list` is a range
/// scan. Versions come from one sequence, which never hands out a value
/// twice — not after a delete, not after a rollback.
const STEPS: &[&str] = &[
    "
CREATE TABLE IF NOT EXISTS exactly_kv (
    key     BYTEA  NOT NULL PRIMARY KEY,
    value   BYTEA  NOT NULL,
    version BIGINT NOT NULL
);
CREATE SEQUENCE IF NOT EXISTS exactly_kv_version AS BIGINT;
",
    "
CREATE OR REPLACE FUNCTION exactly_put_all(keys BYTEA[], vals BYTEA[], expected BIGINT[])
RETURNS BIGINT[] LANGUAGE plpgsql AS $$
DECLARE
    versions BIGINT[] := '{}';
    written  BIGINT;
BEGIN
    FOR i IN 1 .. coalesce(array_length(keys, 1), 0) LOOP
        written := NULL;
        IF expected[i] = 0 THEN
            INSERT INTO exactly_kv (key, value, version)
            VALUES (keys[i], vals[i], nextval('exactly_kv_version'))
            ON CONFLICT (key) DO NOTHING
            RETURNING version INTO written;
        ELSE
            UPDATE exactly_kv SET value = vals[i], version = nextval('exactly_kv_version')
            WHERE key = keys[i] AND version = expected[i]
            RETURNING version INTO written;
        END IF;
        IF written IS NULL THEN
            RAISE EXCEPTION USING ERRCODE = 'EX409', MESSAGE = i::TEXT;
        END IF;
        versions := versions || written;
    END LOOP;
    RETURN versions;
END
$$;
",
];

/// The SQLSTATE `exactly_put_all` raises on a refused precondition.
pub(crate) const CONFLICT_STATE: &str = "EX409";

/// The schema version this crate writes and reads.
pub const SCHEMA_VERSION: i32 = STEPS.len() as i32;

/// Brings the database to [`SCHEMA_VERSION`] in one transaction under
/// [`LOCK_ID`]; a no-op (one short transaction) when it is there already.
/// A database migrated by a newer release is refused rather than used.
pub(crate) async fn migrate(pool: &PgPool) -> Result<(), StoreError> {
    let mut tx = pool.begin().await.map_err(map_err)?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(LOCK_ID)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS exactly_schema (
             component TEXT PRIMARY KEY,
             version   INTEGER NOT NULL
         )",
    )
    .execute(&mut *tx)
    .await
    .map_err(map_err)?;
    let current: i32 =
        sqlx::query_scalar("SELECT version FROM exactly_schema WHERE component = 'store'")
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_err)?
            .unwrap_or(0);
    if current > SCHEMA_VERSION {
        return Err(StoreError::NotSupported(format!(
            "the database schema is at version {current}, newer than this release's \
             {SCHEMA_VERSION}: upgrade exactly-store-postgres"
        )));
    }
    for step in &STEPS[current.max(0) as usize..] {
        sqlx::raw_sql(*step)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
    }
    if current < SCHEMA_VERSION {
        sqlx::query(
            "INSERT INTO exactly_schema (component, version) VALUES ('store', $1)
             ON CONFLICT (component) DO UPDATE SET version = EXCLUDED.version",
        )
        .bind(SCHEMA_VERSION)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
    }
    tx.commit().await.map_err(map_err)
}
