//! [`NatsQueue`]: the `Transport` contract on NATS JetStream.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::HeaderMap;
use async_nats::jetstream::{self, Context};
use async_trait::async_trait;
use exactly::lease_book::LeaseBook;
use exactly::transport::Capabilities;
use exactly::{Delivery, Outgoing, Receipt, Transport, TransportError};

use crate::error::map_err;
use crate::receipt::Acks;
use crate::topology::{Settings, Topology, names};

/// Default lease (the consumer's `ack_wait`): how long a delivered message
/// stays with its receiver before JetStream delivers it again.
pub const DEFAULT_VISIBILITY_TIMEOUT: Duration = Duration::from_secs(30);

/// Header holding the earliest delivery time of a delayed message, in
/// milliseconds since the Unix epoch.
pub const NOT_BEFORE_HEADER: &str = "Exactly-Not-Before";

/// Room kept in `max_payload` for the envelope's fields and NATS headers.
const ENVELOPE_HEADROOM: usize = 16 * 1024;

/// An at-least-once queue on NATS JetStream: a work-queue stream and one
/// durable pull consumer per queue, explicit acks, `ack_wait` as the lease.
///
/// Cloning is cheap and shares the connection and declared topology.
#[derive(Clone, Debug)]
pub struct NatsQueue {
    js: Context,
    topology: Arc<Topology>,
    acks: Acks,
    /// JetStream applies a NAK on an old ack subject to the current
    /// delivery: a stale nack must not reach it.
    leases: Arc<LeaseBook>,
    settings: Settings,
    max_message_bytes: usize,
}

impl NatsQueue {
    /// Connects to the NATS server at `url` (`nats://host:port`). The client
    /// reconnects on its own after a dropped connection.
    pub async fn connect(url: &str) -> Result<Self, TransportError> {
        let client = async_nats::connect(url)
            .await
            .map_err(TransportError::unavailable)?;
        Ok(Self::new(client))
    }

    /// A queue on an existing client (with JetStream enabled on the server).
    pub fn new(client: async_nats::Client) -> Self {
        let max_payload = client.server_info().max_payload;
        Self {
            js: jetstream::new(client.clone()),
            topology: Arc::default(),
            acks: Acks::new(client),
            leases: Arc::default(),
            settings: Settings {
                ack_wait: DEFAULT_VISIBILITY_TIMEOUT,
                replicas: 1,
                max_ack_pending: 10_000,
            },
            max_message_bytes: max_payload.saturating_sub(ENVELOPE_HEADROOM) / 4 * 3,
        }
    }

    /// Sets the lease (`ack_wait`) of consumers this transport creates
    /// (default [`DEFAULT_VISIBILITY_TIMEOUT`]). An existing consumer keeps
    /// the `ack_wait` it was created with.
    pub fn visibility_timeout(mut self, timeout: Duration) -> Self {
        self.settings.ack_wait = timeout;
        self
    }

    /// Sets the replicas of streams this transport creates (default 1; 3
    /// on a cluster).
    pub fn replicas(mut self, replicas: usize) -> Self {
        self.settings.replicas = replicas;
        self
    }

    /// Sets the largest body accepted (default: what fits the server's
    /// `max_payload` once encoded).
    pub fn max_message_bytes(mut self, limit: usize) -> Self {
        self.max_message_bytes = limit;
        self
    }

    /// Deletes the stream behind `queue`, with everything on it.
    pub async fn delete_queue(&self, queue: &str) -> Result<(), TransportError> {
        self.topology.delete(&self.js, queue).await
    }

    /// Fetches what is deliverable now (`no_wait`), or — with a wait — one
    /// message as soon as it comes. Every pull request is read to its end,
    /// so no message is leased to a request nobody reads.
    async fn pull(
        &self,
        queue: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<jetstream::Message>, TransportError> {
        let consumer = self
            .topology
            .consumer(&self.js, queue, &self.settings)
            .await?;
        let batch = if wait < Duration::from_millis(1) {
            consumer.fetch().max_messages(max).messages().await
        } else {
            consumer
                .batch()
                .max_messages(1)
                .expires(wait)
                .messages()
                .await
        };
        let mut batch = match batch {
            Ok(batch) => batch,
            Err(e) => {
                self.topology.forget(queue).await;
                return Err(map_err(e));
            }
        };
        let mut got = Vec::new();
        while let Some(message) = futures::StreamExt::next(&mut batch).await {
            got.push(message.map_err(TransportError::unavailable)?);
        }
        Ok(got)
    }

    /// The delivery for `message`, or `None` for a delayed message that is
    /// not due yet (handed back with a NAK delayed until it is).
    async fn deliver(
        &self,
        queue: &str,
        message: jetstream::Message,
    ) -> Result<Option<Delivery>, TransportError> {
        let reply = message
            .reply
            .as_ref()
            .ok_or_else(|| TransportError::generic("JetStream message without ack subject"))?
            .to_string();
        let (key, delivered) = message
            .info()
            .map(|i| (format!("{}:{}", i.stream, i.stream_sequence), i.delivered))
            .map_err(|e| TransportError::generic(format!("ack subject {reply:?}: {e}")))?;
        let not_before = message
            .headers
            .as_ref()
            .and_then(|h| h.get(NOT_BEFORE_HEADER))
            .and_then(|v| v.as_str().parse::<u64>().ok());
        if let Some(due) = not_before.filter(|due| *due > now_millis()) {
            let early = Duration::from_millis(due - now_millis().min(due));
            self.acks.nak(&reply, early).await?;
            return Ok(None);
        }
        // Bytes that are no envelope (another producer's) go to the
        // endpoint as such, for its error queue.
        let envelope = exactly::Envelope::from_bytes(&message.payload).unwrap_or_else(|e| {
            exactly::Envelope::undecodable(queue, &key, message.payload.clone(), e)
        });
        let until = tokio::time::Instant::now() + self.settings.ack_wait;
        self.leases.issued(&key, &reply, until);
        Ok(Some(Delivery {
            envelope,
            receipt: Receipt {
                queue: queue.to_owned(),
                handle: format!("{key} {reply}"),
            },
            delivery_count: u32::try_from(delivered).unwrap_or(0),
        }))
    }
}

/// A receipt's handle is `{stream}:{sequence} {ack subject}`.
fn parse_handle(receipt: &Receipt) -> Result<(&str, &str), TransportError> {
    receipt
        .handle
        .split_once(' ')
        .ok_or_else(|| TransportError::generic(format!("malformed receipt {:?}", receipt.handle)))
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[async_trait]
impl Transport for NatsQueue {
    async fn send(&self, batch: Vec<Outgoing>) -> Result<(), TransportError> {
        let limit = self.max_message_bytes;
        let mut encoded = Vec::with_capacity(batch.len());
        for out in &batch {
            if out.envelope.body.len() > limit {
                return Err(TransportError::TooLarge {
                    size: out.envelope.body.len(),
                    limit,
                });
            }
            let payload = out.envelope.to_bytes().map_err(TransportError::generic)?;
            let mut headers = HeaderMap::new();
            // Dedups a publish the client retries; a fresh id per send, as
            // a later send of the same message (a delayed retry) must land.
            headers.insert("Nats-Msg-Id", uuid::Uuid::now_v7().to_string().as_str());
            if !out.delay.is_zero() {
                let due = now_millis()
                    .saturating_add(u64::try_from(out.delay.as_millis()).unwrap_or(u64::MAX));
                headers.insert(NOT_BEFORE_HEADER, due.to_string().as_str());
            }
            encoded.push((names(&out.queue)?.subject, headers, payload));
        }
        // Streams first, then every publish in flight at once; Ok only
        // once JetStream acknowledged each (stored, replicated).
        for out in &batch {
            self.topology
                .consumer(&self.js, &out.queue, &self.settings)
                .await?;
        }
        let mut pending = Vec::with_capacity(encoded.len());
        for (subject, headers, payload) in encoded {
            let ack = self
                .js
                .publish_with_headers(subject, headers, payload.into())
                .await
                .map_err(map_err)?;
            pending.push(ack);
        }
        for ack in pending {
            ack.await.map_err(map_err)?;
        }
        Ok(())
    }

    async fn receive(
        &self,
        queue: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>, TransportError> {
        let max = max.max(1);
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let mut got = Vec::new();
            let mut pulled = self.pull(queue, max, Duration::ZERO).await?;
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if pulled.is_empty() && !left.is_zero() {
                pulled = self.pull(queue, 1, left).await?;
                if !pulled.is_empty() && max > 1 {
                    pulled.extend(self.pull(queue, max - 1, Duration::ZERO).await?);
                }
            }
            for message in pulled {
                got.extend(self.deliver(queue, message).await?);
            }
            if !got.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(got);
            }
        }
    }

    async fn ack(&self, receipt: &Receipt) -> Result<(), TransportError> {
        let (key, reply) = parse_handle(receipt)?;
        self.leases.settle(key, reply);
        self.acks.ack(reply).await
    }

    async fn nack(&self, receipt: &Receipt, delay: Duration) -> Result<(), TransportError> {
        let (key, reply) = parse_handle(receipt)?;
        if !self.leases.settle(key, reply) {
            return Ok(());
        }
        self.acks.nak(reply, delay).await
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::default().with_max_message_bytes(self.max_message_bytes)
    }
}
