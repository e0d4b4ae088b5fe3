//! Taking up to `max` deliveries of a queue: from its consumer's buffer
//! (filled by the broker up to the prefetch), checked with a `basic.get`
//! so that an empty answer means nothing is deliverable right now.

use futures::{FutureExt, StreamExt};
use lapin::message::Delivery;
use lapin::types::AMQPValue;
use tokio::time::Instant;

use exactly::TransportError;

use crate::error::map_err;
use crate::link::Link;

/// AMQP header on a copy republished by a delayed nack: the deliveries of
/// the message before the copy, so the count goes on across copies.
pub const DELIVERIES_HEADER: &str = "x-exactly-deliveries";

/// Up to `max` deliveries of `queue`, waiting until `deadline` for the
/// first. Receivers of one queue take turns on its consumer; a receiver
/// that cannot get its turn before its deadline returns empty.
pub(crate) async fn take(
    link: &Link,
    queue: &str,
    max: usize,
    deadline: Instant,
) -> Result<Vec<Delivery>, TransportError> {
    let consumer = link.consumer(queue).await?;
    let Ok(mut consumer) = tokio::time::timeout_at(deadline, consumer.lock()).await else {
        return Ok(Vec::new());
    };
    let mut got = drain(link, queue, &mut consumer, max).await?;
    if got.is_empty() {
        // Barrier (see `Link::get`): also reaches messages the consumer
        // cannot take while its prefetch is used up.
        got.extend(link.get(queue).await?);
        got.extend(drain(link, queue, &mut consumer, max - got.len()).await?);
    }
    if got.is_empty() {
        match tokio::time::timeout_at(deadline, consumer.next()).await {
            Err(_) => {}
            Ok(Some(delivery)) => {
                got.push(delivery.map_err(map_err)?);
                got.extend(drain(link, queue, &mut consumer, max - 1).await?);
            }
            Ok(None) => return Err(cancelled(link, queue).await),
        }
    }
    Ok(got)
}

/// What the consumer's buffer holds now, up to `max`.
async fn drain(
    link: &Link,
    queue: &str,
    consumer: &mut lapin::Consumer,
    max: usize,
) -> Result<Vec<Delivery>, TransportError> {
    let mut got = Vec::new();
    while got.len() < max {
        match consumer.next().now_or_never() {
            None => break,
            Some(Some(delivery)) => got.push(delivery.map_err(map_err)?),
            Some(None) => return Err(cancelled(link, queue).await),
        }
    }
    Ok(got)
}

/// The broker cancelled the consumer (its queue was deleted): forget the
/// queue, so the next call declares it and consumes again.
async fn cancelled(link: &Link, queue: &str) -> TransportError {
    link.forget(queue).await;
    TransportError::unavailable(format!("the broker cancelled the consumer of {queue:?}"))
}

/// How often this message was delivered, this time included: quorum queues
/// count earlier deliveries in `x-delivery-count`; classic queues only flag
/// a redelivery. Deliveries before a delayed nack are carried over in
/// [`DELIVERIES_HEADER`].
pub(crate) fn delivery_count(delivery: &Delivery) -> u32 {
    let header = |name: &str| {
        delivery
            .properties
            .headers()
            .as_ref()
            .and_then(|h| h.inner().get(name))
            .and_then(integer)
    };
    let before = header(DELIVERIES_HEADER).unwrap_or(0);
    let here = match header("x-delivery-count") {
        Some(earlier) => earlier + 1,
        None => 1 + u64::from(delivery.redelivered),
    };
    u32::try_from(before + here).unwrap_or(u32::MAX)
}

fn integer(value: &AMQPValue) -> Option<u64> {
    match value {
        AMQPValue::LongLongInt(v) => u64::try_from(*v).ok(),
        AMQPValue::LongInt(v) => u64::try_from(*v).ok(),
        AMQPValue::LongUInt(v) => Some(u64::from(*v)),
        AMQPValue::ShortInt(v) => u64::try_from(*v).ok(),
        AMQPValue::ShortUInt(v) => Some(u64::from(*v)),
        _ => None,
    }
}
