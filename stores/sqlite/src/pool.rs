//! Opening a SQLite file the way the store and the SQL queue expect it, and
//! telling transient driver errors from permanent ones.
//!
//! Both [`SqliteStore`](crate::SqliteStore) and the SQL queue of
//! `exactly-transport-sql` take a [`SqlitePool`], so one file and one pool
//! can serve both. Start from [`connect_options`] and [`pool_options`] to
//! change a setting, then hand the pool to `from_pool`.

use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

/// How long a connection waits for another connection's write lock before
/// failing with `SQLITE_BUSY` (reported as `Unavailable`).
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Most connections in the default pool. SQLite has one writer at a time;
/// more connections only add readers (WAL lets them run beside the writer).
pub const MAX_CONNECTIONS: u32 = 4;

/// The connection settings the store and queue are tested with:
///
/// - the file is created if missing;
/// - WAL journal, so readers never block the writer or each other;
/// - `synchronous = FULL`: a commit is on disk before `Ok` is returned,
///   which the protocol relies on (a write reported done must survive a
///   power cut). `NORMAL` is faster and only loses commits on power loss or
///   an OS crash, not on a process crash;
/// - a [`BUSY_TIMEOUT`] wait for the write lock.
pub fn connect_options(path: impl AsRef<Path>) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(BUSY_TIMEOUT)
}

/// Pool settings: at most [`MAX_CONNECTIONS`] connections, and a caller
/// waits at most [`BUSY_TIMEOUT`] for a free one (then `Unavailable`).
pub fn pool_options() -> SqlitePoolOptions {
    SqlitePoolOptions::new()
        .max_connections(MAX_CONNECTIONS)
        .acquire_timeout(BUSY_TIMEOUT)
}

/// Opens (creating if needed) the SQLite file at `path` with
/// [`connect_options`] and [`pool_options`].
pub async fn open_pool(path: impl AsRef<Path>) -> Result<SqlitePool, sqlx::Error> {
    pool_options().connect_with(connect_options(path)).await
}

// Primary SQLite result codes (the low byte of an extended code).
const SQLITE_BUSY: i32 = 5;
const SQLITE_LOCKED: i32 = 6;
const SQLITE_IOERR: i32 = 10;
const SQLITE_CANTOPEN: i32 = 14;

/// Whether a driver error may go away on retry: another connection holds
/// the lock, the pool is exhausted, or the disk or the file failed to
/// answer. Everything else (bad SQL, corrupt file, constraint) is permanent.
pub fn is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db
            .code()
            .and_then(|code| code.parse::<i32>().ok())
            .is_some_and(|code| {
                matches!(
                    code & 0xff,
                    SQLITE_BUSY | SQLITE_LOCKED | SQLITE_IOERR | SQLITE_CANTOPEN
                )
            }),
        _ => false,
    }
}
