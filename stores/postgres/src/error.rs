//! The one place that decides which driver errors a caller may retry.

use exactly::StoreError;

/// Whether a driver error may go away on retry.
///
/// Transient: the connection broke or could not be made (I/O errors, a
/// crashed driver worker, no free connection within the acquire timeout)
/// and these SQLSTATE classes and codes:
///
/// | SQLSTATE | meaning |
/// |---|---|
/// | `08xxx` | connection exception |
/// | `40001`, `40P01` | serialization failure, deadlock detected |
/// | `53xxx` | insufficient resources (`53300` too many connections, disk full, out of memory) |
/// | `55P03` | lock not available |
/// | `57014` | query canceled (statement timeout) |
/// | `57P01`–`57P05` | admin or crash shutdown, cannot connect now, idle-session timeout |
/// | `58000`, `58030` | system or I/O error on the server |
/// | `25006` | read-only transaction: a standby answered, e.g. during a failover |
///
/// Everything else (bad SQL, a missing table, a closed pool, a
/// configuration error) is permanent.
pub fn is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| transient_sqlstate(&code)),
        _ => false,
    }
}

fn transient_sqlstate(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("53")
        || matches!(
            code,
            "40001"
                | "40P01"
                | "55P03"
                | "57014"
                | "57P01"
                | "57P02"
                | "57P03"
                | "57P04"
                | "57P05"
                | "58000"
                | "58030"
                | "25006"
        )
}

/// Maps a driver error to a [`StoreError`]: [`StoreError::Unavailable`]
/// when [`is_transient`], else [`StoreError::Generic`].
pub(crate) fn map_err(error: sqlx::Error) -> StoreError {
    if is_transient(&error) {
        StoreError::unavailable(error)
    } else {
        StoreError::generic(error)
    }
}

/// Like [`map_err`], with `secret` (a password) cut out of the message:
/// used where the error may quote the connection string.
pub(crate) fn map_err_redacted(error: sqlx::Error, secret: Option<&str>) -> StoreError {
    let transient = is_transient(&error);
    let mut message = error.to_string();
    if let Some(secret) = secret.filter(|s| !s.is_empty()) {
        message = message.replace(secret, "***");
    }
    if transient {
        StoreError::unavailable(message)
    } else {
        StoreError::generic(message)
    }
}

#[cfg(test)]
mod tests {
    use super::transient_sqlstate;

    #[test]
    fn sqlstates_are_classified() {
        for code in [
            "40001", "40P01", "57P01", "08006", "08001", "53300", "57014",
        ] {
            assert!(transient_sqlstate(code), "{code} is transient");
        }
        for code in ["23505", "42P01", "42601", "22001", "54000"] {
            assert!(!transient_sqlstate(code), "{code} is permanent");
        }
    }
}
