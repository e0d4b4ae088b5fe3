//! Connecting: pool settings, connection strings, and keeping passwords
//! out of errors and `Debug` output.

use std::str::FromStr;
use std::time::Duration;

use exactly::StoreError;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use crate::error::map_err_redacted;

/// Most connections in the default pool.
pub const MAX_CONNECTIONS: u32 = 10;

/// How long a call waits for a free connection (or for a new one to be
/// opened) before failing with `Unavailable`.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Pool settings: at most [`MAX_CONNECTIONS`] connections, and a caller
/// waits at most [`ACQUIRE_TIMEOUT`] for one.
///
/// Idle connections are **not** pinged before use (sqlx pings by default):
/// the ping is a round trip on every call, doubling the cost of a `get`
/// or a conditional `put`. A connection the server dropped while idle
/// fails its next call with `Unavailable` instead, and the retry — which
/// the protocol makes for every transient error — gets a fresh one. Turn
/// it back on with `.test_before_acquire(true)`.
pub fn pool_options() -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(MAX_CONNECTIONS)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .test_before_acquire(false)
}

/// Parses a `postgres://user:password@host:port/db?...` connection string.
/// The error never contains the password.
pub fn connect_options(url: &str) -> Result<PgConnectOptions, StoreError> {
    PgConnectOptions::from_str(url).map_err(|e| {
        let (redacted, secret) = redact(url);
        let inner = map_err_redacted(e, secret.as_deref());
        StoreError::generic(format!("invalid PostgreSQL URL {redacted}: {inner}"))
    })
}

/// Opens a pool on `url` with `options`; errors never contain the password.
pub(crate) async fn open(url: &str, options: PgPoolOptions) -> Result<PgPool, StoreError> {
    let connect = connect_options(url)?;
    options
        .connect_with(connect)
        .await
        .map_err(|e| map_err_redacted(e, redact(url).1.as_deref()))
}

/// `url` with the password replaced by `***` (in the user info and in a
/// `password=` query parameter), and the password itself.
pub fn redact(url: &str) -> (String, Option<String>) {
    let mut out = url.to_owned();
    let mut secret = None;
    let start = url.find("://").map_or(0, |i| i + 3);
    let end = url[start..]
        .find(['/', '?'])
        .map_or(url.len(), |i| start + i);
    if let Some(at) = url[start..end].rfind('@') {
        let userinfo = &url[start..start + at];
        if let Some(colon) = userinfo.find(':') {
            secret = Some(userinfo[colon + 1..].to_owned());
            out = format!("{}***{}", &url[..start + colon + 1], &url[start + at..]);
        }
    }
    if let Some(q) = out.find("password=") {
        let value_end = out[q..].find('&').map_or(out.len(), |i| q + i);
        secret.get_or_insert_with(|| out[q + 9..value_end].to_owned());
        out.replace_range(q + 9..value_end, "***");
    }
    (out, secret)
}

/// `user@host:port/db` of a pool, for `Debug` and logs (never a password).
pub(crate) fn describe(pool: &PgPool) -> String {
    let o = pool.connect_options();
    format!(
        "{}@{}:{}/{}",
        o.get_username(),
        o.get_host(),
        o.get_port(),
        o.get_database().unwrap_or("")
    )
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_are_redacted() {
        let (r, s) = redact("postgres://app:s3cr@t@db.example:5432/exactly?sslmode=disable");
        assert_eq!(
            r,
            "postgres://app:***@db.example:5432/exactly?sslmode=disable"
        );
        assert_eq!(s.as_deref(), Some("s3cr@t"));
        let (r, s) = redact("postgres://app@db/x?user=app&password=hunter2&sslmode=require");
        assert_eq!(
            r,
            "postgres://app@db/x?user=app&password=***&sslmode=require"
        );
        assert_eq!(s.as_deref(), Some("hunter2"));
        let (r, s) = redact("postgres://postgres@127.0.0.1:25432/postgres");
        assert_eq!(r, "postgres://postgres@127.0.0.1:25432/postgres");
        assert_eq!(s, None);
    }
}
