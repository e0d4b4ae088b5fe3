//! The one place that decides which AMQP errors a caller may retry.

use exactly::TransportError;
use lapin::ErrorKind;

/// AMQP reply codes worth retrying: 320 connection-forced (broker
/// shutting down), 405 resource-locked, 506 resource-error, 541
/// internal-error.
const TRANSIENT_CODES: [u16; 4] = [320, 405, 506, 541];

/// Whether retrying may help: the connection or channel is gone (the next
/// call reconnects), or the broker refused for now.
pub(crate) fn is_transient(error: &lapin::Error) -> bool {
    match error.kind() {
        ErrorKind::IOError(_)
        | ErrorKind::InvalidChannel(_)
        | ErrorKind::InvalidChannelState(..)
        | ErrorKind::InvalidConnectionState(_)
        | ErrorKind::ChannelsLimitReached
        | ErrorKind::MissingHeartbeatError => true,
        ErrorKind::ProtocolError(amqp) => TRANSIENT_CODES.contains(&amqp.get_id()),
        _ => false,
    }
}

/// Maps a driver error: [`TransportError::Unavailable`] when
/// [`is_transient`], else [`TransportError::Generic`].
pub(crate) fn map_err(error: lapin::Error) -> TransportError {
    if is_transient(&error) {
        TransportError::unavailable(error)
    } else {
        TransportError::generic(error)
    }
}
