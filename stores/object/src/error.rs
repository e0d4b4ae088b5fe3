//! The one place that maps object_store errors to [`StoreError`].

use std::error::Error as _;

use exactly::StoreError;
use object_store::client::HttpError;

/// Maps an error of an operation on `key`. Callers handle the conflict
/// cases (`AlreadyExists`, `Precondition`) themselves before falling back
/// here; here they still become [`StoreError::Conflict`].
pub(crate) fn map_err(error: object_store::Error, key: &str) -> StoreError {
    use object_store::Error as E;
    match error {
        E::NotFound { .. } => StoreError::NotFound {
            key: key.to_owned(),
        },
        E::AlreadyExists { .. } | E::Precondition { .. } => StoreError::Conflict {
            key: key.to_owned(),
        },
        E::NotImplemented { .. } | E::NotSupported { .. } => {
            StoreError::NotSupported(error.to_string())
        }
        e if is_transient(&e) => StoreError::unavailable(e),
        e => StoreError::generic(e),
    }
}

/// Whether an object_store error may go away on retry: the request never
/// got an answer (connect error, timeout, dropped connection — an
/// [`HttpError`] anywhere in the chain), or the service answered 408, 429
/// or 5xx (throttled, busy, failing). object_store has already retried
/// these itself by then (see `RetryConfig`); the caller may retry later.
///
/// object_store 0.14 does not expose the HTTP status as a type, so the
/// status is read from the message of its `RequestError`
/// ("Server returned non-2xx status code: 503 ...").
pub fn is_transient(error: &object_store::Error) -> bool {
    if !matches!(error, object_store::Error::Generic { .. }) {
        return false;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = error.source();
    while let Some(e) = source {
        if e.is::<HttpError>() || transient_status(&e.to_string()) {
            return true;
        }
        source = e.source();
    }
    false
}

fn transient_status(message: &str) -> bool {
    const MARK: &str = "status code: ";
    let Some(at) = message.find(MARK) else {
        return false;
    };
    let code = &message[at + MARK.len()..];
    code.starts_with('5') || code.starts_with("429") || code.starts_with("408")
}

#[cfg(test)]
mod tests {
    use super::transient_status;

    #[test]
    fn statuses_are_classified() {
        let msg = |s| format!("Server returned non-2xx status code: {s}: body");
        for s in [
            "503 Service Unavailable",
            "500 Internal Server Error",
            "429 Too Many Requests",
        ] {
            assert!(transient_status(&msg(s)), "{s}");
        }
        for s in ["400 Bad Request", "404 Not Found", "403 Forbidden"] {
            assert!(!transient_status(&msg(s)), "{s}");
        }
    }
}
