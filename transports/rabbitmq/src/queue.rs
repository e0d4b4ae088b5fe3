//! [`RabbitQueue`]: the `Transport` contract on RabbitMQ.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use exactly::transport::Capabilities;
use exactly::{Delivery, Envelope, Outgoing, Receipt, Transport, TransportError};
use lapin::options::BasicPublishOptions;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Confirmation};
use tokio::time::Instant;

use crate::error::map_err;
use crate::link::{Lease, Link};
use crate::receive::{DELIVERIES_HEADER, delivery_count, take};
use crate::topology::{QueueKind, bucket};

/// Default lease: how long a delivered message stays with its receiver
/// before this transport hands it back to the queue.
pub const DEFAULT_VISIBILITY_TIMEOUT: Duration = Duration::from_secs(30);

/// Default prefetch: unacked deliveries the broker pushes per queue.
pub const DEFAULT_PREFETCH: u16 = 64;

/// Default largest body: 4 MiB (RabbitMQ takes up to 128 MiB, but large
/// messages stall a queue; send large bodies through the claim check).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// Content type of the AMQP message body: the whole envelope as JSON.
pub const CONTENT_TYPE: &str = "application/vnd.exactly.envelope+json";

/// How long any broker operation (connecting included) may take before it
/// fails as `Unavailable`, on top of a receive's own wait.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);

/// An at-least-once queue on RabbitMQ: durable queues (quorum by default),
/// persistent messages, publisher confirms, manual acks, prefetch.
///
/// Cloning is cheap and shares the connection. A dropped connection is
/// replaced on the next call; deliveries received on it are redelivered
/// by the broker, and their receipts become no-ops.
#[derive(Clone, Debug)]
pub struct RabbitQueue {
    uri: Arc<str>,
    link: Arc<tokio::sync::Mutex<Option<Arc<Link>>>>,
    visibility_timeout: Duration,
    prefetch: u16,
    kind: QueueKind,
    max_message_bytes: usize,
}

impl RabbitQueue {
    /// Connects to the broker at `uri` (`amqp://user:pass@host:port/vhost`).
    pub async fn connect(uri: &str) -> Result<Self, TransportError> {
        let queue = Self {
            uri: uri.into(),
            link: Arc::default(),
            visibility_timeout: DEFAULT_VISIBILITY_TIMEOUT,
            prefetch: DEFAULT_PREFETCH,
            kind: QueueKind::default(),
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
        };
        queue.link().await?;
        Ok(queue)
    }

    /// Sets how long a delivery stays leased (default
    /// [`DEFAULT_VISIBILITY_TIMEOUT`]); applies from the next connection.
    pub fn visibility_timeout(mut self, timeout: Duration) -> Self {
        self.visibility_timeout = timeout;
        self.reset()
    }

    /// Sets the prefetch per queue (default [`DEFAULT_PREFETCH`]); keep it
    /// above the number of messages a process handles at once: with
    /// `concurrency(c)` and `batch(n)` on the endpoint, about `2 × c × n`
    /// (below it, batches come out short).
    pub fn prefetch(mut self, prefetch: u16) -> Self {
        self.prefetch = prefetch.max(1);
        self.reset()
    }

    /// Sets the kind of queue declared (default [`QueueKind::Quorum`]). A
    /// queue that exists with another kind fails its declaration.
    pub fn queue_kind(mut self, kind: QueueKind) -> Self {
        self.kind = kind;
        self.reset()
    }

    /// Sets the largest body accepted (default [`DEFAULT_MAX_MESSAGE_BYTES`]).
    pub fn max_message_bytes(mut self, limit: usize) -> Self {
        self.max_message_bytes = limit;
        self
    }

    /// Settings changed: this value gets a connection of its own.
    fn reset(mut self) -> Self {
        self.link = Arc::default();
        self
    }

    /// Deletes `queue` with everything on it.
    pub async fn delete_queue(&self, queue: &str) -> Result<(), TransportError> {
        let link = self.link().await?;
        self.guard(&link, Duration::ZERO, link.delete(queue)).await
    }

    /// Closes the connection, as at shutdown: the broker requeues every
    /// delivery not acked yet. The next call connects again.
    pub async fn close(&self) {
        if let Some(link) = self.link.lock().await.take() {
            link.close().await;
        }
    }

    /// The open connection, or a new one.
    async fn link(&self) -> Result<Arc<Link>, TransportError> {
        let mut current = self.link.lock().await;
        if let Some(link) = current.as_ref().filter(|l| l.is_open()) {
            return Ok(link.clone());
        }
        if let Some(broken) = current.take() {
            // One channel closed, the connection perhaps not: close it, or
            // the deliveries its consuming channel still holds stay leased
            // to nobody (lapin does not close a dropped connection, and
            // the reaper of a broken link has stopped).
            tokio::spawn(async move { broken.close().await });
        }
        let tick =
            (self.visibility_timeout / 8).clamp(Duration::from_millis(20), Duration::from_secs(1));
        let finite = Instant::now()
            .checked_add(self.visibility_timeout)
            .is_some();
        let open = Link::open(&self.uri, self.kind, self.prefetch, finite.then_some(tick));
        let link = tokio::time::timeout(OPERATION_TIMEOUT, open)
            .await
            .map_err(|_| TransportError::unavailable("connecting to RabbitMQ timed out"))?
            .map_err(map_err)?;
        *current = Some(link.clone());
        Ok(link)
    }

    /// Runs `op` on `link` with [`OPERATION_TIMEOUT`] (plus `wait`): a
    /// broker that stops answering is a transient error, not a hang. A
    /// transient error drops `link`, so the next call reconnects.
    async fn guard<T>(
        &self,
        link: &Arc<Link>,
        wait: Duration,
        op: impl Future<Output = Result<T, TransportError>>,
    ) -> Result<T, TransportError> {
        let limit = OPERATION_TIMEOUT.saturating_add(wait);
        let result = tokio::time::timeout(limit, op).await.unwrap_or_else(|_| {
            Err(TransportError::unavailable(format!(
                "no answer from RabbitMQ within {limit:?}"
            )))
        });
        if let Err(e) = &result
            && e.is_transient()
        {
            let mut current = self.link.lock().await;
            if current.as_ref().is_some_and(|l| Arc::ptr_eq(l, link)) {
                *current = None;
                let link = link.clone();
                // Closing waits for the broker; a dead one must not stall us.
                tokio::spawn(async move { link.close().await });
            }
        }
        result
    }

    /// Publishes every message with its properties, then waits for the
    /// broker's confirm of each.
    async fn publish(&self, link: &Link, messages: Vec<Publish>) -> Result<(), TransportError> {
        let options = BasicPublishOptions {
            mandatory: true,
            ..BasicPublishOptions::default()
        };
        let mut confirms = Vec::with_capacity(messages.len());
        for m in messages {
            let confirm = link
                .publish
                .basic_publish(
                    m.exchange.as_str().into(),
                    m.routing_key.as_str().into(),
                    options,
                    &m.body,
                    m.properties,
                )
                .await
                .map_err(map_err)?;
            confirms.push((m.routing_key, confirm));
        }
        for (queue, confirm) in confirms {
            match confirm.await.map_err(map_err)? {
                Confirmation::Ack(None) => {}
                Confirmation::Ack(Some(_)) => {
                    // Unroutable: the queue was deleted since we declared it.
                    link.forget(&queue).await;
                    return Err(TransportError::unavailable(format!(
                        "queue {queue:?} vanished"
                    )));
                }
                other => {
                    return Err(TransportError::unavailable(format!(
                        "the broker did not take a message for {queue:?}: {other:?}"
                    )));
                }
            }
        }
        Ok(())
    }
}

/// One message to publish.
struct Publish {
    exchange: String,
    routing_key: String,
    body: Vec<u8>,
    properties: BasicProperties,
}

/// Persistent (delivery mode 2), typed, with the message id, and the
/// deliveries so far when a delayed nack republishes.
fn properties(message_id: &str, deliveries_before: u32) -> BasicProperties {
    let mut props = BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type(CONTENT_TYPE.into())
        .with_message_id(message_id.into());
    if deliveries_before > 0 {
        let mut headers = FieldTable::default();
        headers.insert(
            DELIVERIES_HEADER.into(),
            AMQPValue::LongLongInt(i64::from(deliveries_before)),
        );
        props = props.with_headers(headers);
    }
    props
}

fn parse_handle(receipt: &Receipt) -> Result<(&str, u64), TransportError> {
    receipt
        .handle
        .split_once(':')
        .and_then(|(link, tag)| Some((link, tag.parse().ok()?)))
        .ok_or_else(|| TransportError::generic(format!("malformed receipt {:?}", receipt.handle)))
}

#[async_trait]
impl Transport for RabbitQueue {
    async fn send(&self, batch: Vec<Outgoing>) -> Result<(), TransportError> {
        let limit = self.max_message_bytes;
        if let Some(big) = batch.iter().find(|o| o.envelope.body.len() > limit) {
            return Err(TransportError::TooLarge {
                size: big.envelope.body.len(),
                limit,
            });
        }
        let link = self.link().await?;
        let op = async {
            let mut messages = Vec::with_capacity(batch.len());
            for out in batch {
                // The target queue exists before anything is routed to it,
                // also for a delayed message dead-lettered to it later.
                link.declare(&out.queue).await?;
                let exchange = match out.delay.is_zero() {
                    true => String::new(),
                    false => link.declare_delay(bucket(out.delay)).await?,
                };
                messages.push(Publish {
                    exchange,
                    body: out.envelope.to_bytes().map_err(TransportError::generic)?,
                    properties: properties(&out.envelope.id.to_string(), 0),
                    routing_key: out.queue,
                });
            }
            self.publish(&link, messages).await
        };
        self.guard(&link, Duration::ZERO, op).await
    }

    async fn receive(
        &self,
        queue: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>, TransportError> {
        let deadline = Instant::now() + wait;
        let link = self.link().await?;
        let taken = take(&link, queue, max.max(1), deadline);
        let taken = self.guard(&link, wait, taken).await?;
        let mut deliveries = Vec::with_capacity(taken.len());
        for delivery in taken {
            let tag = delivery.delivery_tag;
            let deliveries_so_far = delivery_count(&delivery);
            let message_id = delivery
                .properties
                .message_id()
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default();
            let payload = Arc::new(delivery.data);
            // Bytes that are no envelope (another producer's) go to the
            // endpoint as such, for its error queue.
            let envelope = Envelope::from_bytes(&payload)
                .unwrap_or_else(|e| Envelope::undecodable(queue, &message_id, payload.to_vec(), e));
            link.lease(
                tag,
                Lease {
                    until: Instant::now().checked_add(self.visibility_timeout),
                    payload,
                    message_id,
                    deliveries: deliveries_so_far,
                },
            );
            deliveries.push(Delivery {
                envelope,
                receipt: Receipt {
                    queue: queue.to_owned(),
                    handle: format!("{}:{tag}", link.id),
                },
                delivery_count: deliveries_so_far,
            });
        }
        Ok(deliveries)
    }

    async fn ack(&self, receipt: &Receipt) -> Result<(), TransportError> {
        let (link_id, tag) = parse_handle(receipt)?;
        let link = self.link().await?;
        if link.id != link_id {
            return Ok(()); // Its connection is gone: the broker requeued it.
        }
        self.guard(&link, Duration::ZERO, link.ack(tag)).await
    }

    async fn nack(&self, receipt: &Receipt, delay: Duration) -> Result<(), TransportError> {
        let (link_id, tag) = parse_handle(receipt)?;
        let link = self.link().await?;
        if link.id != link_id {
            return Ok(());
        }
        if delay.is_zero() {
            return self.guard(&link, Duration::ZERO, link.requeue(tag)).await;
        }
        let Some(lease) = link.leased(tag) else {
            return Ok(());
        };
        // A copy through the delay queue, then the original acked: a crash
        // between the two leaves a duplicate, never a loss.
        let op = async {
            link.declare(&receipt.queue).await?;
            let exchange = link.declare_delay(bucket(delay)).await?;
            let copy = Publish {
                exchange,
                routing_key: receipt.queue.clone(),
                body: lease.payload.to_vec(),
                properties: properties(&lease.message_id, lease.deliveries),
            };
            self.publish(&link, vec![copy]).await?;
            link.ack(tag).await
        };
        self.guard(&link, Duration::ZERO, op).await
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::default().with_max_message_bytes(self.max_message_bytes)
    }
}
