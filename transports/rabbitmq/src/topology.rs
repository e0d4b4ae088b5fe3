//! Queues and delay queues, declared on first use per connection and
//! idempotently (the same arguments every time).
//!
//! Delays: RabbitMQ has no per-message delay without a plugin. A delay of
//! `d` goes through the *delay queue* of `d` rounded up to two significant
//! digits of milliseconds (at most 10 % late, never early): a quorum queue
//! `exactly.delay.{ms}` with a message TTL of `ms` that dead-letters
//! expired messages to the default exchange under their original routing
//! key — the target queue. One TTL per queue keeps expiry in FIFO order.
//! The message reaches it through a fanout exchange of the same name, so
//! its routing key stays the target queue's name. Dead-lettering is
//! `at-least-once` (quorum queues since RabbitMQ 3.10): a message leaves
//! the delay queue only once the target queue has confirmed it.

use std::time::Duration;

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, ExchangeKind};

/// The kind of queue declared for each exactly queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum QueueKind {
    /// A replicated Raft log (`x-queue-type: quorum`): RabbitMQ's
    /// recommended durable queue; counts deliveries (`x-delivery-count`).
    #[default]
    Quorum,
    /// A classic durable queue (only the `redelivered` flag: the delivery
    /// count is 1, or 2 for any redelivery).
    Classic,
}

/// Prefix of delay queues and their exchanges.
pub const DELAY_PREFIX: &str = "exactly.delay.";

fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut table = FieldTable::default();
    for (key, value) in entries {
        table.insert((*key).into(), value.clone());
    }
    table
}

fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(value.into())
}

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    }
}

/// Declares the durable queue `name` of `kind`.
pub(crate) async fn declare_queue(
    channel: &Channel,
    name: &str,
    kind: QueueKind,
) -> Result<(), lapin::Error> {
    let args = match kind {
        QueueKind::Quorum => table(&[("x-queue-type", text("quorum"))]),
        QueueKind::Classic => FieldTable::default(),
    };
    channel
        .queue_declare(name.into(), durable(), args)
        .await
        .map(drop)
}

/// The delay bucket for `delay`: milliseconds rounded up to two
/// significant digits (at least 1).
pub(crate) fn bucket(delay: Duration) -> u64 {
    let ms = u64::try_from(delay.as_nanos().div_ceil(1_000_000))
        .unwrap_or(u64::MAX)
        .max(1);
    let mut step = 1;
    while ms / step >= 100 {
        step *= 10;
    }
    ms.div_ceil(step).saturating_mul(step)
}

/// Declares the delay queue and exchange of `bucket` ms; returns the
/// exchange to publish delayed messages to.
pub(crate) async fn declare_delay(channel: &Channel, bucket: u64) -> Result<String, lapin::Error> {
    let name = format!("{DELAY_PREFIX}{bucket}");
    let ttl = i64::try_from(bucket).unwrap_or(i64::MAX);
    let args = table(&[
        ("x-queue-type", text("quorum")),
        ("x-message-ttl", AMQPValue::LongLongInt(ttl)),
        ("x-dead-letter-exchange", text("")),
        ("x-dead-letter-strategy", text("at-least-once")),
        ("x-overflow", text("reject-publish")),
    ]);
    channel
        .queue_declare(name.as_str().into(), durable(), args)
        .await?;
    let options = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    channel
        .exchange_declare(
            name.as_str().into(),
            ExchangeKind::Fanout,
            options,
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_bind(
            name.as_str().into(),
            name.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::bucket;
    use std::time::Duration;

    #[test]
    fn buckets_round_up_by_at_most_ten_percent() {
        for (ms, expected) in [
            (0, 1),
            (1, 1),
            (99, 99),
            (100, 100),
            (101, 110),
            (1000, 1000),
        ] {
            assert_eq!(bucket(Duration::from_millis(ms)), expected, "{ms} ms");
        }
        assert_eq!(bucket(Duration::from_millis(1234)), 1300);
        assert_eq!(bucket(Duration::from_micros(1500)), 2);
        for ms in [7, 150, 999, 12_345, 86_400_000] {
            let b = bucket(Duration::from_millis(ms));
            assert!(b >= ms && b * 10 <= ms * 11, "{ms} ms → {b}");
        }
    }
}
