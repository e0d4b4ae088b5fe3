//! A [`Transport`] layer between the endpoints and the queue: counts calls,
//! and on the workload's last queue turns acks into completions with a
//! latency (send timestamp in the body → acked, i.e. committed, finished
//! and removed from the queue).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use exactly::transport::Capabilities;
use exactly::{Delivery, MessageId, Outgoing, Receipt, Transport, TransportError};
use tokio::sync::{Semaphore, watch};

use crate::measure::now_us;
use crate::workload::Bump;

/// Transport calls made by the endpoints, by kind.
#[derive(Clone, Copy, Debug, Default)]
pub struct TransportOps {
    pub send: u64,
    /// Receives that returned a delivery (idle waits are not counted).
    pub receive: u64,
    pub ack: u64,
    pub nack: u64,
}

#[derive(Debug, Default)]
struct Counts {
    send: AtomicU64,
    receive: AtomicU64,
    ack: AtomicU64,
    nack: AtomicU64,
}

/// What the observer has seen finish so far.
#[derive(Debug, Default)]
struct Finished {
    /// Deliveries received from the last queue and not yet acked: the
    /// message and its send time.
    leased: HashMap<(String, String), (MessageId, u64)>,
    done: HashSet<MessageId>,
    latencies_us: Vec<u64>,
}

/// Wraps the transport the endpoints use.
#[derive(Debug)]
pub struct Observed {
    inner: Arc<dyn Transport>,
    last_queue: String,
    counts: Counts,
    finished: Mutex<Finished>,
    /// Completed messages so far; the run waits on it.
    done_tx: watch::Sender<u64>,
    /// Permits of the closed loop: one is returned per completion.
    window: Arc<Semaphore>,
    /// Messages on the last queue per message fed in (the fan-out): a
    /// message counts as completed for every this many acked there.
    last_per_message: u64,
}

impl Observed {
    pub fn new(
        inner: Arc<dyn Transport>,
        last_queue: &str,
        window: Arc<Semaphore>,
        last_per_message: u64,
    ) -> Self {
        Self {
            inner,
            last_queue: last_queue.to_owned(),
            counts: Counts::default(),
            finished: Mutex::default(),
            done_tx: watch::channel(0).0,
            window,
            last_per_message: last_per_message.max(1),
        }
    }

    pub fn ops(&self) -> TransportOps {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        TransportOps {
            send: get(&self.counts.send),
            receive: get(&self.counts.receive),
            ack: get(&self.counts.ack),
            nack: get(&self.counts.nack),
        }
    }

    /// Messages completed so far, to wait on.
    pub fn completions(&self) -> watch::Receiver<u64> {
        self.done_tx.subscribe()
    }

    /// Latencies of the completed messages, in microseconds.
    pub fn take_latencies(&self) -> Vec<u64> {
        std::mem::take(&mut self.lock().latencies_us)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Finished> {
        self.finished.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn leased(&self, deliveries: &[Delivery]) {
        let mut finished = self.lock();
        for d in deliveries
            .iter()
            .filter(|d| d.receipt.queue == self.last_queue)
        {
            // Every body on the last queue is a `Bump`; one that is not
            // would never complete, and the run reports the stall.
            if let Ok(bump) = serde_json::from_slice::<Bump>(&d.envelope.body) {
                let key = (d.receipt.queue.clone(), d.receipt.handle.clone());
                finished
                    .leased
                    .insert(key, (d.envelope.id, bump.sent_at_us));
            }
        }
    }

    /// A colocated commit sent `sends` messages (counted as one send when
    /// any) and acked `receipts` (one ack call).
    pub fn committed_with(&self, sends: usize, receipts: &[Receipt]) {
        if sends > 0 {
            self.counts.send.fetch_add(1, Ordering::Relaxed);
        }
        if !receipts.is_empty() {
            self.counts.ack.fetch_add(1, Ordering::Relaxed);
        }
        for receipt in receipts {
            self.acked(receipt);
        }
    }

    fn acked(&self, receipt: &Receipt) {
        let mut finished = self.lock();
        let key = (receipt.queue.clone(), receipt.handle.clone());
        let Some((id, sent_at)) = finished.leased.remove(&key) else {
            return;
        };
        // A redelivered copy acked again is not a second completion.
        if finished.done.insert(id) {
            finished.latencies_us.push(now_us().saturating_sub(sent_at));
            let acked = finished.done.len() as u64;
            drop(finished);
            if acked.is_multiple_of(self.last_per_message) {
                self.window.add_permits(1);
                self.done_tx.send_replace(acked / self.last_per_message);
            }
        }
    }
}

#[async_trait]
impl Transport for Observed {
    async fn send(&self, batch: Vec<Outgoing>) -> Result<(), TransportError> {
        self.counts.send.fetch_add(1, Ordering::Relaxed);
        self.inner.send(batch).await
    }

    async fn receive(
        &self,
        queue: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>, TransportError> {
        let got = self.inner.receive(queue, max, wait).await?;
        if !got.is_empty() {
            self.counts.receive.fetch_add(1, Ordering::Relaxed);
        }
        self.leased(&got);
        Ok(got)
    }

    async fn ack(&self, receipt: &Receipt) -> Result<(), TransportError> {
        self.counts.ack.fetch_add(1, Ordering::Relaxed);
        self.inner.ack(receipt).await?;
        self.acked(receipt);
        Ok(())
    }

    async fn ack_all(&self, receipts: &[Receipt]) -> Result<(), TransportError> {
        self.counts.ack.fetch_add(1, Ordering::Relaxed);
        self.inner.ack_all(receipts).await?;
        for receipt in receipts {
            self.acked(receipt);
        }
        Ok(())
    }

    async fn nack(&self, receipt: &Receipt, delay: Duration) -> Result<(), TransportError> {
        self.counts.nack.fetch_add(1, Ordering::Relaxed);
        self.inner.nack(receipt, delay).await
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
}
