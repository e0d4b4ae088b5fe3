//! [`SqsQueue`]: the `Transport` contract on Amazon SQS.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{MessageSystemAttributeName, SendMessageBatchRequestEntry};
use exactly::lease_book::LeaseBook;
use exactly::transport::Capabilities;
use exactly::{Delivery, Envelope, Outgoing, Receipt, Transport, TransportError};

use crate::codec::{SQS_MAX_MESSAGE_BYTES, body_limit, decode, encode};
use crate::error::is_stale_receipt;
use crate::names::QueueUrls;

/// Default lease: how long a received message stays invisible before SQS
/// delivers it again if neither acked nor nacked.
pub const DEFAULT_VISIBILITY_TIMEOUT: Duration = Duration::from_secs(30);

/// SQS's longest delivery delay (`DelaySeconds`): 15 minutes.
pub const MAX_DELAY: Duration = Duration::from_secs(900);

/// SQS's longest visibility timeout, hence the longest nack delay: 12 hours.
pub const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 3600);

/// Most entries in one `SendMessageBatch` or `ReceiveMessage`.
const SQS_BATCH: usize = 10;

/// How often a waiting `receive` asks again when less than a second of its
/// wait is left (long polling counts whole seconds).
const SHORT_POLL: Duration = Duration::from_millis(100);

/// An at-least-once queue on Amazon SQS (standard queues): one SQS queue
/// per exactly queue, created on first use.
///
/// Cloning is cheap and shares the client, the queue-URL cache and the
/// lease book; clone one value for every endpoint of a process.
#[derive(Clone, Debug)]
pub struct SqsQueue {
    client: Client,
    urls: Arc<QueueUrls>,
    /// SQS accepts any receipt handle a message ever had: a stale nack
    /// must not release a newer lease.
    leases: Arc<LeaseBook>,
    visibility_timeout: Duration,
    message_limit: usize,
}

impl SqsQueue {
    /// A queue on `client`, which carries region, credentials and endpoint
    /// (e.g. from `aws-config`, or `endpoint_url` for a local emulator).
    pub fn new(client: Client) -> Self {
        Self {
            urls: Arc::new(QueueUrls::new(client.clone())),
            client,
            leases: Arc::default(),
            visibility_timeout: DEFAULT_VISIBILITY_TIMEOUT,
            message_limit: SQS_MAX_MESSAGE_BYTES,
        }
    }

    /// A queue on the SQS-compatible server at `endpoint` (moto, LocalStack,
    /// ElasticMQ): credentials and region from `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY` and `AWS_REGION`, or `testing` / `us-east-1`
    /// when unset, as emulators accept. For AWS itself, build a `Client`
    /// from `aws-config` and use [`SqsQueue::new`].
    pub fn emulator(endpoint: &str) -> Self {
        use aws_sdk_sqs::config::{Config, Credentials, Region};
        let var =
            |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
        let credentials = Credentials::new(
            var("AWS_ACCESS_KEY_ID", "testing"),
            var("AWS_SECRET_ACCESS_KEY", "testing"),
            None,
            None,
            "exactly-emulator",
        );
        let config = Config::builder()
            .behavior_version_latest()
            .region(Region::new(var("AWS_REGION", "us-east-1")))
            .credentials_provider(credentials)
            .endpoint_url(endpoint)
            .build();
        Self::new(Client::from_conf(config))
    }

    /// The SQS client, e.g. to look up a queue's URL for another producer.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Sets the lease of a received message (default
    /// [`DEFAULT_VISIBILITY_TIMEOUT`], whole seconds, at most 12 hours),
    /// sent with every `ReceiveMessage`.
    pub fn visibility_timeout(mut self, timeout: Duration) -> Self {
        self.visibility_timeout = timeout.min(MAX_VISIBILITY);
        self
    }

    /// Sets SQS's message size limit (default 256 KiB; raise it where the
    /// queue's `MaximumMessageSize` is larger). The body limit the
    /// transport reports follows from it.
    pub fn message_limit(mut self, bytes: usize) -> Self {
        self.message_limit = bytes;
        self
    }

    /// Deletes the SQS queue behind `queue`, with everything on it.
    pub async fn delete_queue(&self, queue: &str) -> Result<(), TransportError> {
        self.urls.delete(queue).await
    }

    async fn send_chunk(&self, url: &str, chunk: Vec<(String, i32)>) -> Result<(), TransportError> {
        let entries = chunk
            .into_iter()
            .enumerate()
            .map(|(i, (body, delay))| {
                SendMessageBatchRequestEntry::builder()
                    .id(format!("m{i}"))
                    .message_body(body)
                    .delay_seconds(delay)
                    .build()
                    .map_err(TransportError::generic)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let out = self
            .client
            .send_message_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| self.urls.map_err(url, e))?;
        match out.failed().first() {
            None => Ok(()),
            Some(f) if f.sender_fault() => Err(TransportError::generic(format!(
                "SQS refused a message: {} {}",
                f.code(),
                f.message().unwrap_or_default()
            ))),
            Some(f) => Err(TransportError::unavailable(format!(
                "SQS failed {} of a batch: {}",
                out.failed().len(),
                f.code()
            ))),
        }
    }

    async fn receive_once(
        &self,
        queue: &str,
        url: &str,
        max: usize,
        wait_secs: i32,
    ) -> Result<Vec<Delivery>, TransportError> {
        let lease = secs_ceil(self.visibility_timeout);
        let until = tokio::time::Instant::now() + self.visibility_timeout;
        let out = self
            .client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(i32::try_from(max.clamp(1, SQS_BATCH)).unwrap_or(1))
            .wait_time_seconds(wait_secs)
            .visibility_timeout(lease)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|e| self.urls.map_err(url, e))?;
        let mut deliveries = Vec::new();
        for message in out.messages() {
            let (Some(id), Some(handle)) = (message.message_id(), message.receipt_handle()) else {
                continue;
            };
            // Bytes that are no envelope (another producer's) go to the
            // endpoint as such, for its error queue.
            let body = message.body().unwrap_or_default();
            let envelope = decode(body)
                .unwrap_or_else(|e| Envelope::undecodable(queue, id, body.as_bytes().to_vec(), e));
            self.leases.issued(id, handle, until);
            let count = message
                .attributes()
                .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            deliveries.push(Delivery {
                envelope,
                receipt: Receipt {
                    queue: queue.to_owned(),
                    handle: format!("{id} {handle}"),
                },
                delivery_count: count,
            });
        }
        Ok(deliveries)
    }
}

/// Whole seconds, rounded up (a delay must never end early).
fn secs_ceil(d: Duration) -> i32 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    i32::try_from(secs).unwrap_or(i32::MAX)
}

fn parse_handle(receipt: &Receipt) -> Result<(&str, &str), TransportError> {
    receipt
        .handle
        .split_once(' ')
        .ok_or_else(|| TransportError::generic(format!("malformed receipt {:?}", receipt.handle)))
}

#[async_trait]
impl Transport for SqsQueue {
    async fn send(&self, batch: Vec<Outgoing>) -> Result<(), TransportError> {
        let body_limit = body_limit(self.message_limit);
        // Encode and check everything first: a refused message sends nothing.
        let mut encoded = Vec::with_capacity(batch.len());
        for out in batch {
            if out.delay > MAX_DELAY {
                return Err(TransportError::DelayTooLong {
                    requested: out.delay,
                    max: MAX_DELAY,
                });
            }
            let body = encode(&out.envelope, body_limit, self.message_limit)?;
            encoded.push((out.queue, body, secs_ceil(out.delay)));
        }
        encoded.sort_by(|a, b| a.0.cmp(&b.0));
        let mut rest = encoded.as_slice();
        while let Some((queue, _, _)) = rest.first() {
            let url = self.urls.resolve(queue).await?;
            // A batch holds at most 10 messages and 256 KiB in total.
            let (mut chunk, mut bytes) = (Vec::new(), 0);
            while let Some((q, body, delay)) = rest.first() {
                let full = chunk.len() == SQS_BATCH || bytes + body.len() > self.message_limit;
                if q != queue || (full && !chunk.is_empty()) {
                    break;
                }
                bytes += body.len();
                chunk.push((body.clone(), *delay));
                rest = &rest[1..];
            }
            self.send_chunk(&url, chunk).await?;
        }
        Ok(())
    }

    async fn receive(
        &self,
        queue: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>, TransportError> {
        let url = self.urls.resolve(queue).await?;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            // Long polling in whole seconds (at most 20), short polls for
            // the last fraction; wait zero is one short poll.
            let wait_secs = i32::try_from(left.as_secs().min(20)).unwrap_or(20);
            let got = self.receive_once(queue, &url, max, wait_secs).await?;
            if !got.is_empty() || left.is_zero() {
                return Ok(got);
            }
            if wait_secs == 0 {
                tokio::time::sleep(left.min(SHORT_POLL)).await;
            }
        }
    }

    async fn ack(&self, receipt: &Receipt) -> Result<(), TransportError> {
        let (id, handle) = parse_handle(receipt)?;
        self.leases.settle(id, handle);
        let url = self.urls.resolve(&receipt.queue).await?;
        match self
            .client
            .delete_message()
            .queue_url(&url)
            .receipt_handle(handle)
            .send()
            .await
        {
            Err(e) if !is_stale_receipt(&e) => Err(self.urls.map_err(&url, e)),
            _ => Ok(()),
        }
    }

    async fn nack(&self, receipt: &Receipt, delay: Duration) -> Result<(), TransportError> {
        if delay > MAX_VISIBILITY {
            return Err(TransportError::DelayTooLong {
                requested: delay,
                max: MAX_VISIBILITY,
            });
        }
        let (id, handle) = parse_handle(receipt)?;
        if !self.leases.settle(id, handle) {
            return Ok(());
        }
        let url = self.urls.resolve(&receipt.queue).await?;
        match self
            .client
            .change_message_visibility()
            .queue_url(&url)
            .receipt_handle(handle)
            .visibility_timeout(secs_ceil(delay))
            .send()
            .await
        {
            Err(e) if !is_stale_receipt(&e) => Err(self.urls.map_err(&url, e)),
            _ => Ok(()),
        }
    }

    fn capabilities(&self) -> Capabilities {
        let mut caps = Capabilities::default()
            .with_native_delay()
            .with_max_message_bytes(body_limit(self.message_limit));
        caps.max_delay = Some(MAX_DELAY);
        caps
    }
}
