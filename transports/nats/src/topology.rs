//! One JetStream stream and one durable pull consumer per queue, declared
//! on first use and cached.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, PullConsumer, pull};
use async_nats::jetstream::stream::{Config, RetentionPolicy, StorageType};
use async_nats::jetstream::{self, Context};
use exactly::TransportError;
use tokio::sync::Mutex;

use crate::error::map_err;

/// Prefix of every stream name (`EXACTLY_{queue}`).
pub const STREAM_PREFIX: &str = "EXACTLY_";

/// Prefix of every subject (`exactly.{queue}`).
pub const SUBJECT_PREFIX: &str = "exactly.";

/// The durable consumer every receiver of a queue shares.
pub const CONSUMER: &str = "exactly";

/// Longest encoded queue name (stream names become file names).
const MAX_ENCODED: usize = 200;

/// What a queue is called on the server.
#[derive(Clone, Debug)]
pub(crate) struct Names {
    pub stream: String,
    pub subject: String,
}

/// Stream and subject for `queue`. Letters, digits, `-` and `_` stay as
/// they are; any other byte becomes `=XX` (hex), so every queue name maps
/// to a distinct valid stream name and subject token.
pub(crate) fn names(queue: &str) -> Result<Names, TransportError> {
    let mut token = String::with_capacity(queue.len());
    for b in queue.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            token.push(char::from(b));
        } else {
            let _ = write!(token, "={b:02X}");
        }
    }
    if token.is_empty() || token.len() > MAX_ENCODED {
        return Err(TransportError::InvalidQueue {
            queue: queue.to_owned(),
            reason: "empty, or too long for a JetStream stream name once encoded",
        });
    }
    Ok(Names {
        stream: format!("{STREAM_PREFIX}{token}"),
        subject: format!("{SUBJECT_PREFIX}{token}"),
    })
}

/// How the streams and consumers are declared.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub ack_wait: Duration,
    pub replicas: usize,
    pub max_ack_pending: i64,
}

/// The consumers of the queues this transport used.
#[derive(Debug, Default)]
pub(crate) struct Topology {
    consumers: Mutex<HashMap<String, PullConsumer>>,
}

impl Topology {
    /// The consumer of `queue`, declaring stream and consumer if missing.
    /// Both declarations are idempotent: an existing stream or consumer is
    /// used as it is (its `ack_wait` is the one it was created with).
    pub(crate) async fn consumer(
        &self,
        js: &Context,
        queue: &str,
        settings: &Settings,
    ) -> Result<PullConsumer, TransportError> {
        let mut consumers = self.consumers.lock().await;
        if let Some(consumer) = consumers.get(queue) {
            return Ok(consumer.clone());
        }
        let names = names(queue)?;
        // A work queue: a message is removed once acked, as a queue should.
        let stream = js
            .get_or_create_stream(Config {
                name: names.stream.clone(),
                subjects: vec![names.subject.clone()],
                retention: RetentionPolicy::WorkQueue,
                storage: StorageType::File,
                num_replicas: settings.replicas,
                ..Config::default()
            })
            .await
            .map_err(map_err)?;
        let consumer = stream
            .get_or_create_consumer(
                CONSUMER,
                pull::Config {
                    durable_name: Some(CONSUMER.to_owned()),
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: settings.ack_wait,
                    max_deliver: -1,
                    max_ack_pending: settings.max_ack_pending,
                    ..pull::Config::default()
                },
            )
            .await
            .map_err(map_err)?;
        consumers.insert(queue.to_owned(), consumer.clone());
        Ok(consumer)
    }

    /// Deletes `queue`'s stream (and so its consumer and messages).
    pub(crate) async fn delete(&self, js: &Context, queue: &str) -> Result<(), TransportError> {
        self.consumers.lock().await.remove(queue);
        let names = names(queue)?;
        match js.delete_stream(&names.stream).await {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(TransportError::unavailable(e)),
        }
    }

    /// Forgets `queue`'s consumer, e.g. after its stream vanished.
    pub(crate) async fn forget(&self, queue: &str) {
        self.consumers.lock().await.remove(queue);
    }
}

fn is_not_found(error: &jetstream::context::DeleteStreamError) -> bool {
    matches!(
        error.kind(),
        jetstream::context::DeleteStreamErrorKind::JetStream(e)
            if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
    )
}

#[cfg(test)]
mod tests {
    use super::names;

    #[test]
    fn names_are_encoded_injectively() {
        let plain = names("orders_v1-a").expect("valid");
        assert_eq!(plain.stream, "EXACTLY_orders_v1-a");
        assert_eq!(plain.subject, "exactly.orders_v1-a");
        let odd = names("a.b c/=").expect("valid");
        assert_eq!(odd.subject, "exactly.a=2Eb=20c=2F=3D");
        assert_ne!(names("a=2E").expect("valid").stream, odd.stream);
        assert!(names("").is_err());
    }
}
