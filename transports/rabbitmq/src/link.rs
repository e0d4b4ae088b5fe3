//! One connection to the broker: its channels, the topology declared on
//! it, a consumer per queue, and the leases of the deliveries it received.
//!
//! Deliveries belong to the channel they arrived on: when the connection
//! drops, the broker requeues every unacked one, and their receipts go
//! stale. A [`Link`] is therefore replaced whole, never repaired.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use exactly::TransportError;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicGetOptions, BasicNackOptions,
    BasicQosOptions, ConfirmSelectOptions, QueueDeleteOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{Channel, Connection, ConnectionProperties, Consumer};
use tokio::time::Instant;

use crate::error::map_err;
use crate::topology::{QueueKind, declare_delay, declare_queue};

/// A queue's consumer, shared by the receivers of that queue.
pub(crate) type SharedConsumer = Arc<tokio::sync::Mutex<Consumer>>;

pub(crate) struct Link {
    /// Names this link in receipts: a receipt of another link is stale.
    pub id: String,
    connection: Connection,
    /// Consumes, gets, acks and nacks: the deliveries belong to it.
    consume: Channel,
    /// Publishes, in confirm mode.
    pub publish: Channel,
    /// Declares; a failed declaration closes it, so it is replaced then.
    control: tokio::sync::Mutex<Channel>,
    kind: QueueKind,
    declared: Mutex<HashSet<String>>,
    /// Queue → its consumer and the consumer's tag.
    consumers: tokio::sync::Mutex<HashMap<String, (ShortString, SharedConsumer)>>,
    /// Delivery tag → its lease.
    leases: Mutex<HashMap<u64, Lease>>,
}

/// A delivery handed to a receiver and not settled yet.
#[derive(Clone, Debug)]
pub(crate) struct Lease {
    /// When it goes back to the queue (`None`: never).
    pub until: Option<Instant>,
    /// The AMQP body, for a delayed nack to republish.
    pub payload: Arc<Vec<u8>>,
    /// The message id (AMQP property), for the same.
    pub message_id: String,
    /// Deliveries so far, this one included.
    pub deliveries: u32,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Link {
    /// Connects, opens the channels, and starts expiring leases every
    /// `tick` (when the lease is finite).
    pub(crate) async fn open(
        uri: &str,
        kind: QueueKind,
        prefetch: u16,
        tick: Option<Duration>,
    ) -> Result<Arc<Self>, lapin::Error> {
        let connection = Connection::connect(uri, ConnectionProperties::default()).await?;
        let consume = connection.create_channel().await?;
        consume
            .basic_qos(prefetch, BasicQosOptions::default())
            .await?;
        let publish = connection.create_channel().await?;
        publish
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let control = connection.create_channel().await?;
        let link = Arc::new(Self {
            id: uuid::Uuid::now_v7().simple().to_string(),
            connection,
            consume,
            publish,
            control: tokio::sync::Mutex::new(control),
            kind,
            declared: Mutex::default(),
            consumers: tokio::sync::Mutex::default(),
            leases: Mutex::default(),
        });
        if let Some(tick) = tick {
            tokio::spawn(reap(Arc::downgrade(&link), tick));
        }
        Ok(link)
    }

    pub(crate) fn is_open(&self) -> bool {
        self.connection.status().connected()
            && self.consume.status().connected()
            && self.publish.status().connected()
    }

    /// The control channel, reopened if a failed declaration closed it.
    async fn control(&self) -> Result<tokio::sync::MutexGuard<'_, Channel>, TransportError> {
        let mut control = self.control.lock().await;
        if !control.status().connected() {
            *control = self.connection.create_channel().await.map_err(map_err)?;
        }
        Ok(control)
    }

    /// Declares queue `name` once per link.
    pub(crate) async fn declare(&self, name: &str) -> Result<(), TransportError> {
        if lock(&self.declared).contains(name) {
            return Ok(());
        }
        let control = self.control().await?;
        declare_queue(&control, name, self.kind)
            .await
            .map_err(map_err)?;
        lock(&self.declared).insert(name.to_owned());
        Ok(())
    }

    /// Declares the delay queue of `bucket` ms once per link; returns the
    /// exchange to publish to.
    pub(crate) async fn declare_delay(&self, bucket: u64) -> Result<String, TransportError> {
        let name = format!("{}{bucket}", crate::topology::DELAY_PREFIX);
        if lock(&self.declared).contains(&name) {
            return Ok(name);
        }
        let control = self.control().await?;
        declare_delay(&control, bucket).await.map_err(map_err)?;
        lock(&self.declared).insert(name.clone());
        Ok(name)
    }

    /// Forgets what this link knows of `queue` (after it vanished).
    pub(crate) async fn forget(&self, queue: &str) {
        lock(&self.declared).remove(queue);
        self.consumers.lock().await.remove(queue);
    }

    /// Deletes `queue` on the broker. Our consumer of it is cancelled
    /// first, and the cancel awaited: dropping it instead would cancel it
    /// in the background, racing the broker's own cancel of a deleted
    /// queue's consumers, and lapin closes the connection on the second
    /// `cancel-ok` it was not awaiting.
    pub(crate) async fn delete(&self, queue: &str) -> Result<(), TransportError> {
        lock(&self.declared).remove(queue);
        let consumer = self.consumers.lock().await.remove(queue);
        if let Some((tag, _)) = consumer {
            self.consume
                .basic_cancel(tag, BasicCancelOptions::default())
                .await
                .map_err(map_err)?;
        }
        let control = self.control().await?;
        control
            .queue_delete(queue.into(), QueueDeleteOptions::default())
            .await
            .map_err(map_err)?;
        Ok(())
    }

    /// The consumer of `queue`, started on first use.
    pub(crate) async fn consumer(&self, queue: &str) -> Result<SharedConsumer, TransportError> {
        let mut consumers = self.consumers.lock().await;
        if let Some((_, consumer)) = consumers.get(queue) {
            return Ok(consumer.clone());
        }
        self.declare(queue).await?;
        let consumer = self
            .consume
            .basic_consume(
                queue.into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(map_err)?;
        let tag = consumer.tag();
        let consumer = Arc::new(tokio::sync::Mutex::new(consumer));
        consumers.insert(queue.to_owned(), (tag, consumer.clone()));
        Ok(consumer)
    }

    /// One message by `basic.get` on the consuming channel. Its answer
    /// comes after every delivery the broker pushed to this channel before,
    /// so once it is back the consumer's buffer holds all of them.
    pub(crate) async fn get(
        &self,
        queue: &str,
    ) -> Result<Option<lapin::message::Delivery>, TransportError> {
        let got = self
            .consume
            .basic_get(queue.into(), BasicGetOptions::default())
            .await
            .map_err(map_err)?;
        Ok(got.map(|m| m.delivery))
    }

    /// Records the lease of delivery `tag`.
    pub(crate) fn lease(&self, tag: u64, lease: Lease) {
        lock(&self.leases).insert(tag, lease);
    }

    /// The lease of `tag`, if it has not ended.
    pub(crate) fn leased(&self, tag: u64) -> Option<Lease> {
        lock(&self.leases).get(&tag).cloned()
    }

    /// Ends the lease of `tag`; false when it already ended (acked,
    /// nacked, expired), so each delivery is settled exactly once — the
    /// broker closes a channel that acks an unknown tag.
    fn settle(&self, tag: u64) -> bool {
        lock(&self.leases).remove(&tag).is_some()
    }

    /// Acks `tag` if still leased; a stale tag is a no-op.
    pub(crate) async fn ack(&self, tag: u64) -> Result<(), TransportError> {
        if !self.settle(tag) {
            return Ok(());
        }
        self.consume
            .basic_ack(tag, BasicAckOptions::default())
            .await
            .map_err(map_err)
    }

    /// Returns `tag` to its queue if still leased; a stale tag is a no-op.
    pub(crate) async fn requeue(&self, tag: u64) -> Result<(), TransportError> {
        if !self.settle(tag) {
            return Ok(());
        }
        self.nack_now(tag).await
    }

    async fn nack_now(&self, tag: u64) -> Result<(), TransportError> {
        let options = BasicNackOptions {
            requeue: true,
            ..BasicNackOptions::default()
        };
        self.consume.basic_nack(tag, options).await.map_err(map_err)
    }

    /// Closes the connection; the broker requeues every unacked delivery.
    pub(crate) async fn close(&self) {
        let _ = self.connection.close(200, "closed by exactly".into()).await;
    }
}

/// Requeues deliveries whose lease ran out, every `tick`, until the link
/// is dropped or broken: RabbitMQ itself only redelivers what a closed
/// channel held, so the visibility timeout is kept here.
async fn reap(link: Weak<Link>, tick: Duration) {
    loop {
        tokio::time::sleep(tick).await;
        let Some(link) = link.upgrade() else { return };
        if !link.is_open() {
            return;
        }
        let now = Instant::now();
        let expired: Vec<u64> = {
            let mut leases = lock(&link.leases);
            let tags = leases
                .iter()
                .filter(|(_, lease)| lease.until.is_some_and(|u| u <= now))
                .map(|(tag, _)| *tag)
                .collect::<Vec<_>>();
            for tag in &tags {
                leases.remove(tag);
            }
            tags
        };
        for tag in expired {
            if link.nack_now(tag).await.is_err() {
                return;
            }
        }
    }
}
