use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;

use crate::env::{Clock, Random, SystemClock};
use crate::error::TransportError;
use crate::message::Envelope;
use crate::transport::{Capabilities, Delivery, Outgoing, Receipt, Transport};

/// A [`Transport`] in memory: per-queue message lists with leases that expire
/// after a visibility timeout, delays on the injected clock, and optionally
/// random (reordered) delivery for fault injection.
#[derive(Debug)]
pub struct MemoryTransport {
    inner: Mutex<Inner>,
    notify: Notify,
    clock: Arc<dyn Clock>,
    reorder: Option<Arc<dyn Random>>,
    visibility_timeout: Duration,
    max_message_bytes: Option<usize>,
}

#[derive(Debug, Default)]
struct Inner {
    next_seq: u64,
    next_lease: u64,
    queues: HashMap<String, BTreeMap<u64, Slot>>,
}

#[derive(Debug)]
struct Slot {
    envelope: Envelope,
    visible_at: u64,
    lease: Option<u64>,
    deliveries: u32,
}

impl Default for MemoryTransport {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryTransport {
    /// A transport on the system clock with a 30 s visibility timeout.
    pub fn new() -> Self {
        Self::with_clock(Arc::new(SystemClock))
    }

    /// A transport on the given clock.
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            notify: Notify::new(),
            clock,
            reorder: None,
            visibility_timeout: Duration::from_secs(30),
            max_message_bytes: None,
        }
    }

    /// Delivers visible messages in random order (fault injection).
    pub fn reordering(mut self, random: Arc<dyn Random>) -> Self {
        self.reorder = Some(random);
        self
    }

    /// Sets how long a delivery stays leased before it is redelivered.
    pub fn visibility_timeout(mut self, timeout: Duration) -> Self {
        self.visibility_timeout = timeout;
        self
    }

    /// `TooLarge` if a message of `batch` is over the size limit.
    pub(crate) fn check_sizes(&self, batch: &[Outgoing]) -> Result<(), TransportError> {
        match self.max_message_bytes {
            Some(limit) => match batch.iter().find(|o| o.envelope.body.len() > limit) {
                Some(big) => Err(TransportError::TooLarge {
                    size: big.envelope.body.len(),
                    limit,
                }),
                None => Ok(()),
            },
            None => Ok(()),
        }
    }

    /// Refuses messages whose body exceeds `limit` bytes.
    pub fn max_message_bytes(mut self, limit: usize) -> Self {
        self.max_message_bytes = Some(limit);
        self
    }

    /// Messages on `queue`: visible, delayed and leased.
    pub fn depth(&self, queue: &str) -> usize {
        self.lock().queues.get(queue).map_or(0, BTreeMap::len)
    }

    /// Envelopes currently on `queue`, in send order (for inspection in tests).
    pub fn peek(&self, queue: &str) -> Vec<Envelope> {
        self.lock()
            .queues
            .get(queue)
            .map(|q| q.values().map(|s| s.envelope.clone()).collect())
            .unwrap_or_default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn take_visible(&self, queue: &str, max: usize) -> Vec<Delivery> {
        let now = self.clock.now_millis();
        let timeout = self.visibility_timeout.as_millis() as u64;
        let mut inner = self.lock();
        let Inner {
            next_lease, queues, ..
        } = &mut *inner;
        let Some(slots) = queues.get_mut(queue) else {
            return Vec::new();
        };
        // A lease that ran out is as good as a nack: the message is visible.
        let visible = slots
            .iter()
            .filter(|(_, s)| s.visible_at <= now)
            .map(|(seq, _)| *seq);
        // In order, the scan stops at the first `max` visible messages; a
        // reordering transport shuffles all of them first.
        let ready: Vec<u64> = match &self.reorder {
            None => visible.take(max).collect(),
            Some(random) => {
                let mut ready: Vec<u64> = visible.collect();
                for i in (1..ready.len()).rev() {
                    ready.swap(i, (random.next_u64() % (i as u64 + 1)) as usize);
                }
                ready
            }
        };
        ready
            .into_iter()
            .take(max)
            .filter_map(|seq| {
                let slot = slots.get_mut(&seq)?;
                *next_lease += 1;
                slot.lease = Some(*next_lease);
                slot.visible_at = now.saturating_add(timeout);
                slot.deliveries += 1;
                Some(Delivery {
                    envelope: slot.envelope.clone(),
                    receipt: Receipt {
                        queue: queue.to_owned(),
                        handle: format!("{seq}:{next_lease}"),
                    },
                    delivery_count: slot.deliveries,
                })
            })
            .collect()
    }
}

fn parse_handle(receipt: &Receipt) -> Result<(u64, u64), TransportError> {
    let parsed = receipt
        .handle
        .split_once(':')
        .and_then(|(s, l)| Some((s.parse().ok()?, l.parse().ok()?)));
    parsed.ok_or_else(|| TransportError::generic(format!("malformed receipt {:?}", receipt.handle)))
}

#[async_trait]
impl Transport for MemoryTransport {
    async fn send(&self, batch: Vec<Outgoing>) -> Result<(), TransportError> {
        self.check_sizes(&batch)?;
        let now = self.clock.now_millis();
        {
            let mut inner = self.lock();
            for out in batch {
                inner.next_seq += 1;
                let seq = inner.next_seq;
                inner.queues.entry(out.queue).or_default().insert(
                    seq,
                    Slot {
                        envelope: out.envelope,
                        visible_at: now.saturating_add(out.delay.as_millis() as u64),
                        lease: None,
                        deliveries: 0,
                    },
                );
            }
        }
        self.notify.notify_waiters();
        Ok(())
    }

    async fn receive(
        &self,
        queue: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>, TransportError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.notify.notified();
            let got = self.take_visible(queue, max.max(1));
            if !got.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(got);
            }
            // Wake on a send, or poll again shortly for delays and leases.
            let poll = (deadline - tokio::time::Instant::now()).min(Duration::from_millis(20));
            let _ = tokio::time::timeout(poll, notified).await;
        }
    }

    async fn ack(&self, receipt: &Receipt) -> Result<(), TransportError> {
        let (seq, _) = parse_handle(receipt)?;
        if let Some(q) = self.lock().queues.get_mut(&receipt.queue) {
            q.remove(&seq);
        }
        Ok(())
    }

    async fn nack(&self, receipt: &Receipt, delay: Duration) -> Result<(), TransportError> {
        let (seq, lease) = parse_handle(receipt)?;
        let now = self.clock.now_millis();
        if let Some(slot) = self
            .lock()
            .queues
            .get_mut(&receipt.queue)
            .and_then(|q| q.get_mut(&seq))
            .filter(|s| s.lease == Some(lease))
        {
            slot.lease = None;
            slot.visible_at = now.saturating_add(delay.as_millis() as u64);
        }
        self.notify.notify_waiters();
        Ok(())
    }

    fn capabilities(&self) -> Capabilities {
        let caps = Capabilities::default().with_native_delay();
        match self.max_message_bytes {
            Some(limit) => caps.with_max_message_bytes(limit),
            None => caps,
        }
    }
}
