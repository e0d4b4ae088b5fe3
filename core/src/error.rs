//! Typed errors, one enum per seam. Each says whether a retry may help.

use std::time::Duration;

/// A boxed error from a backend driver.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An error from a [`Store`](crate::Store).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The precondition did not hold: the key changed since it was read (or
    /// exists when it was expected absent).
    #[error("conflict on {key:?}: it changed since it was read")]
    Conflict {
        /// The key written.
        key: String,
    },
    /// The key does not exist.
    #[error("{key:?} not found")]
    NotFound {
        /// The key looked up.
        key: String,
    },
    /// The store could not be reached or refused for now; a retry may work.
    #[error("store unavailable: {source}")]
    Unavailable {
        /// The driver's error.
        #[source]
        source: BoxError,
    },
    /// The value is larger than the backend accepts.
    #[error(
        "value of {size} bytes for {key:?} exceeds the store's limit of {limit} bytes; \
         keep large state in a blob and store its reference"
    )]
    TooLarge {
        /// The key written.
        key: String,
        /// The value's size in bytes.
        size: usize,
        /// The backend's limit in bytes.
        limit: usize,
    },
    /// The key is not acceptable (too long, control characters, outside the
    /// caller's namespace).
    #[error("invalid key {key:?}: {reason}")]
    InvalidKey {
        /// The offending key (truncated to 80 characters).
        key: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// The backend cannot do what was asked (e.g. it has no conditional writes).
    #[error("not supported: {0}")]
    NotSupported(String),
    /// Anything else; not expected to succeed on retry.
    #[error("store error: {source}")]
    Generic {
        /// The driver's error.
        #[source]
        source: BoxError,
    },
}

impl StoreError {
    /// Whether retrying the same call may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }

    /// Whether this is a failed precondition.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Conflict { .. })
    }

    /// [`StoreError::Conflict`] for `key`: a precondition did not hold.
    pub fn conflict(key: &str) -> Self {
        Self::Conflict {
            key: key.to_owned(),
        }
    }

    /// [`StoreError::NotFound`] for `key`.
    pub fn not_found(key: &str) -> Self {
        Self::NotFound {
            key: key.to_owned(),
        }
    }

    /// [`StoreError::TooLarge`] if a value of `size` bytes for `key` is over
    /// the backend's `limit`.
    pub fn check_size(key: &str, size: usize, limit: usize) -> Result<(), Self> {
        if size > limit {
            return Err(Self::TooLarge {
                key: key.to_owned(),
                size,
                limit,
            });
        }
        Ok(())
    }

    /// A transient error from any error value.
    pub fn unavailable(source: impl Into<BoxError>) -> Self {
        Self::Unavailable {
            source: source.into(),
        }
    }

    /// A permanent error from any error value.
    pub fn generic(source: impl Into<BoxError>) -> Self {
        Self::Generic {
            source: source.into(),
        }
    }
}

/// An error from a [`Transport`](crate::Transport).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The broker could not be reached or refused for now; a retry may work.
    #[error("transport unavailable: {source}")]
    Unavailable {
        /// The driver's error.
        #[source]
        source: BoxError,
    },
    /// The message is larger than the transport accepts.
    #[error(
        "message of {size} bytes exceeds the transport's limit of {limit} bytes; \
         send large bodies through the claim check"
    )]
    TooLarge {
        /// The encoded size in bytes.
        size: usize,
        /// The transport's limit in bytes.
        limit: usize,
    },
    /// The queue name is not acceptable.
    #[error("invalid queue name {queue:?}: {reason}")]
    InvalidQueue {
        /// The offending name.
        queue: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// The delay asked for is longer than the transport supports.
    #[error("delay of {requested:?} exceeds the transport's maximum of {max:?}")]
    DelayTooLong {
        /// The delay asked for.
        requested: Duration,
        /// The transport's maximum.
        max: Duration,
    },
    /// The transport cannot do what was asked.
    #[error("not supported: {0}")]
    NotSupported(String),
    /// Anything else; not expected to succeed on retry.
    #[error("transport error: {source}")]
    Generic {
        /// The driver's error.
        #[source]
        source: BoxError,
    },
}

impl TransportError {
    /// Whether retrying the same call may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }

    /// A transient error from any error value.
    pub fn unavailable(source: impl Into<BoxError>) -> Self {
        Self::Unavailable {
            source: source.into(),
        }
    }

    /// A permanent error from any error value.
    pub fn generic(source: impl Into<BoxError>) -> Self {
        Self::Generic {
            source: source.into(),
        }
    }
}

/// An error a handler returns, or a failure to encode what it produced.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandlerError {
    /// The handler failed; the message is retried, then error-queued.
    #[error("handler failed: {0}")]
    Failed(String),
    /// A value could not be encoded or decoded.
    #[error("codec: {0}")]
    Codec(#[from] CodecError),
    /// `publish` or `reply` had nowhere to go.
    #[error("routing: {0}")]
    Routing(String),
    /// Another attempt changed the entity while this one ran (e.g. while it
    /// registered a blob write): this attempt is dropped and the message
    /// retried. Propagate it with `?`.
    #[error("superseded by a concurrent attempt")]
    Superseded,
}

impl HandlerError {
    /// A handler failure with a message.
    pub fn failed(reason: impl std::fmt::Display) -> Self {
        Self::Failed(reason.to_string())
    }
}

/// A body that could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[error("{content_type}: {reason}")]
pub struct CodecError {
    /// The codec's content type.
    pub content_type: String,
    /// What went wrong, naming the field where the codec knows it.
    pub reason: String,
}

/// A key or name from outside that failed validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {value:?}: {reason}")]
pub struct InvalidName {
    /// What kind of name it is ("entity key", "queue", ...).
    pub what: &'static str,
    /// The offending value (truncated to 80 characters).
    pub value: String,
    /// Why it was refused.
    pub reason: &'static str,
}
