//! The one place that decides which NATS errors a caller may retry.

use std::fmt::{Debug, Display};

use async_nats::jetstream::context::{CreateStreamErrorKind, PublishErrorKind, RequestErrorKind};
use async_nats::jetstream::stream::ConsumerErrorKind;
use exactly::TransportError;

/// Which kinds of an `async_nats` error are worth retrying: the server did
/// not answer in time, the connection broke, or JetStream is (re)starting.
pub(crate) trait Transient {
    fn transient(&self) -> bool;
}

impl Transient for PublishErrorKind {
    fn transient(&self) -> bool {
        matches!(
            self,
            Self::TimedOut | Self::BrokenPipe | Self::MaxAckPending | Self::Other
        )
    }
}

impl Transient for RequestErrorKind {
    fn transient(&self) -> bool {
        matches!(self, Self::TimedOut | Self::NoResponders | Self::Other)
    }
}

impl Transient for CreateStreamErrorKind {
    fn transient(&self) -> bool {
        matches!(
            self,
            Self::JetStreamUnavailable | Self::TimedOut | Self::Response
        )
    }
}

impl Transient for ConsumerErrorKind {
    fn transient(&self) -> bool {
        matches!(self, Self::TimedOut | Self::Request | Self::Other)
    }
}

impl Transient for async_nats::RequestErrorKind {
    fn transient(&self) -> bool {
        matches!(self, Self::TimedOut | Self::NoResponders | Self::Other)
    }
}

impl Transient for async_nats::client::PublishErrorKind {
    fn transient(&self) -> bool {
        matches!(self, Self::Send)
    }
}

impl Transient for async_nats::jetstream::consumer::pull::BatchErrorKind {
    fn transient(&self) -> bool {
        // Subscribing or sending the pull request failed: the connection.
        !matches!(self, Self::Serialize)
    }
}

/// Maps an `async_nats` error to `Unavailable` when its kind is
/// [`Transient`], else `Generic`.
pub(crate) fn map_err<K>(error: async_nats::error::Error<K>) -> TransportError
where
    K: Transient + Clone + Debug + Display + PartialEq + Send + Sync + 'static,
{
    if error.kind().transient() {
        TransportError::unavailable(error)
    } else {
        TransportError::generic(error)
    }
}
