//! Bytes another producer put on a queue, that are no envelope: a receiver
//! gets them as an `Envelope::undecodable` (for the endpoint's error
//! queue), never a failed receive or a message that keeps coming back.

use std::future::Future;
use std::time::Duration;

use exactly::message::headers;
use exactly::{Transport, UNDECODABLE_TYPE};

use crate::retry;

/// Declares `queue` (one empty receive), has `publish_raw` put bytes that
/// are no envelope on it the way another producer would, and checks that
/// the next receive hands them over as an `Envelope::undecodable` — the
/// bytes intact, the reason in its header — and that an ack removes them.
///
/// # Panics
///
/// When any of that does not hold.
pub async fn foreign_bytes_are_handed_over<F, Fut>(
    transport: &dyn Transport,
    queue: &str,
    publish_raw: F,
) where
    F: FnOnce(Vec<u8>) -> Fut,
    Fut: Future<Output = ()>,
{
    retry("declare", || transport.receive(queue, 1, Duration::ZERO)).await;
    let bytes = b"<order id=\"7\"/>".to_vec();
    publish_raw(bytes.clone()).await;
    let got = retry("receive", || {
        transport.receive(queue, 4, Duration::from_secs(10))
    })
    .await;
    assert_eq!(got.len(), 1, "the foreign message, once: {got:?}");
    let envelope = &got[0].envelope;
    assert_eq!(envelope.message_type, UNDECODABLE_TYPE);
    assert_eq!(envelope.destination, queue);
    assert_eq!(&envelope.body[..], &bytes[..], "the bytes, untouched");
    let reason = envelope.header(headers::UNDECODABLE_REASON);
    assert!(
        reason.is_some_and(|r| r.starts_with("not an envelope: ")),
        "{reason:?}"
    );
    retry("ack", || transport.ack(&got[0].receipt)).await;
    let again = retry("receive", || {
        transport.receive(queue, 1, Duration::from_millis(300))
    })
    .await;
    assert!(again.is_empty(), "acked, it is gone: {again:?}");
}
