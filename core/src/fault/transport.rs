use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;

use super::{bump, roll};
use crate::env::Random;
use crate::error::TransportError;
use crate::transport::{Capabilities, Delivery, Outgoing, Receipt, Transport};

/// How often a [`FaultyTransport`] misbehaves, in parts per million of calls.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TransportFaults {
    /// Fail a send with `Unavailable` before anything is sent.
    pub unavailable_ppm: u32,
    /// Send each message of a batch twice.
    pub duplicate_ppm: u32,
    /// Send a batch, then report `Unavailable` (the sender will send again).
    pub lost_ack_ppm: u32,
    /// Fail a receive with `Unavailable`, taking nothing from the queue:
    /// the queue may hold messages all the same.
    pub receive_failed_ppm: u32,
}

/// Wraps a transport and injects [`TransportFaults`] on a seeded schedule.
#[derive(Debug)]
pub struct FaultyTransport {
    inner: Arc<dyn Transport>,
    faults: TransportFaults,
    random: Arc<dyn Random>,
    injected: AtomicU64,
    enabled: AtomicBool,
}

impl FaultyTransport {
    /// Wraps `inner`.
    pub fn new(
        inner: Arc<dyn Transport>,
        faults: TransportFaults,
        random: Arc<dyn Random>,
    ) -> Self {
        Self {
            inner,
            faults,
            random,
            injected: AtomicU64::new(0),
            enabled: AtomicBool::new(true),
        }
    }

    /// Turns fault injection on or off.
    pub fn set_enabled(&self, enabled: bool) {
        self.enabled.store(enabled, Ordering::Relaxed);
    }

    fn roll(&self, ppm: u32) -> bool {
        self.enabled.load(Ordering::Relaxed) && roll(self.random.as_ref(), ppm)
    }

    /// How many faults were injected so far.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl Transport for FaultyTransport {
    async fn send(&self, batch: Vec<Outgoing>) -> Result<(), TransportError> {
        if self.roll(self.faults.unavailable_ppm) {
            bump(&self.injected);
            return Err(TransportError::unavailable("injected: broker unreachable"));
        }
        let mut batch = batch;
        if self.roll(self.faults.duplicate_ppm) {
            bump(&self.injected);
            batch.extend(batch.clone());
        }
        self.inner.send(batch).await?;
        if self.roll(self.faults.lost_ack_ppm) {
            bump(&self.injected);
            return Err(TransportError::unavailable(
                "injected: confirm lost after send",
            ));
        }
        Ok(())
    }

    async fn receive(
        &self,
        queue: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>, TransportError> {
        if self.roll(self.faults.receive_failed_ppm) {
            bump(&self.injected);
            return Err(TransportError::unavailable("injected: receive failed"));
        }
        self.inner.receive(queue, max, wait).await
    }

    async fn ack(&self, receipt: &Receipt) -> Result<(), TransportError> {
        self.inner.ack(receipt).await
    }

    async fn nack(&self, receipt: &Receipt, delay: Duration) -> Result<(), TransportError> {
        self.inner.nack(receipt, delay).await
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
}
