//! Every transport check can fail: each runs here on a transport with one
//! flaw and must panic with the clause that flaw breaks.

#[macro_use]
mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use exactly::transport::Capabilities;
use exactly::{Delivery, MemoryTransport, MessageId, Outgoing, Receipt, Transport, TransportError};
use exactly_conformance::{run_transport, transport};

const LIMIT: usize = 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flaw {
    /// Delivers envelopes without their headers.
    DropsHeaders,
    /// Replaces the last message of a batch with a second copy of the first.
    FirstTwice,
    /// `nack` does nothing (the lease must run out).
    NackIgnored,
    /// Leaves delivered messages visible to other receivers.
    LeaseIgnored,
    /// `ack` does nothing.
    AckIgnored,
    /// `ack_all` acks only the first receipt.
    AckAllFirstOnly,
    /// Sends delayed messages at once.
    DelayIgnored,
    /// Refuses a message id it has seen before.
    DuplicateRefused,
    /// Sends the messages before the one over the limit, then refuses.
    PartialBatch,
    /// A nack with an old receipt releases the message's current lease.
    StaleNackReleases,
    /// Waits 3 s even when told not to wait.
    SlowZeroWait,
}

#[derive(Debug)]
struct Flawed {
    inner: MemoryTransport,
    flaw: Flaw,
    sent: Mutex<HashSet<MessageId>>,
    /// For `StaleNackReleases`: receipt handle → id, id → latest receipt.
    receipts: Mutex<(HashMap<String, MessageId>, HashMap<MessageId, Receipt>)>,
}

#[async_trait]
impl Transport for Flawed {
    async fn send(&self, mut batch: Vec<Outgoing>) -> Result<(), TransportError> {
        match self.flaw {
            Flaw::FirstTwice if batch.len() > 1 => {
                let n = batch.len();
                batch[n - 1] = batch[0].clone();
            }
            Flaw::DelayIgnored => batch.iter_mut().for_each(|o| o.delay = Duration::ZERO),
            Flaw::DuplicateRefused => {
                let mut sent = self.sent.lock().expect("sent");
                if !batch.iter().all(|o| sent.insert(o.envelope.id)) {
                    return Err(TransportError::generic("duplicate refused"));
                }
            }
            Flaw::PartialBatch => {
                if let Some(big) = batch.iter().position(|o| o.envelope.body.len() > LIMIT) {
                    let size = batch[big].envelope.body.len();
                    batch.truncate(big);
                    self.inner.send(batch).await?;
                    return Err(TransportError::TooLarge { size, limit: LIMIT });
                }
            }
            _ => {}
        }
        self.inner.send(batch).await
    }

    async fn receive(
        &self,
        queue: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>, TransportError> {
        if self.flaw == Flaw::SlowZeroWait && wait.is_zero() {
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        let mut got = self.inner.receive(queue, max, wait).await?;
        for d in &mut got {
            match self.flaw {
                Flaw::DropsHeaders => d.envelope.headers.clear(),
                Flaw::LeaseIgnored => self.inner.nack(&d.receipt, Duration::ZERO).await?,
                Flaw::StaleNackReleases => {
                    let mut receipts = self.receipts.lock().expect("receipts");
                    receipts.0.insert(d.receipt.handle.clone(), d.envelope.id);
                    receipts.1.insert(d.envelope.id, d.receipt.clone());
                }
                _ => {}
            }
        }
        Ok(got)
    }

    async fn ack(&self, receipt: &Receipt) -> Result<(), TransportError> {
        match self.flaw {
            Flaw::AckIgnored => Ok(()),
            _ => self.inner.ack(receipt).await,
        }
    }

    async fn ack_all(&self, receipts: &[Receipt]) -> Result<(), TransportError> {
        match (self.flaw, receipts.first()) {
            (Flaw::AckAllFirstOnly, Some(first)) => self.inner.ack(first).await,
            _ => self.inner.ack_all(receipts).await,
        }
    }

    async fn nack(&self, receipt: &Receipt, delay: Duration) -> Result<(), TransportError> {
        let latest = {
            let receipts = self.receipts.lock().expect("receipts");
            let id = receipts.0.get(&receipt.handle);
            id.and_then(|id| receipts.1.get(id)).cloned()
        };
        match (self.flaw, latest) {
            (Flaw::NackIgnored, _) => Ok(()),
            (Flaw::StaleNackReleases, Some(latest)) => self.inner.nack(&latest, delay).await,
            _ => self.inner.nack(receipt, delay).await,
        }
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
            .with_native_delay()
            .with_max_message_bytes(LIMIT)
    }
}

/// Runs `check` on a transport with `flaw`; the check must panic.
fn flawed<F: std::future::Future<Output = ()>>(
    flaw: Flaw,
    check: impl FnOnce(Arc<dyn Transport>, String) -> F,
) {
    let inner = MemoryTransport::new().visibility_timeout(Duration::from_secs(1));
    let inner = match flaw {
        Flaw::PartialBatch => inner,
        _ => inner.max_message_bytes(LIMIT),
    };
    let transport = Flawed {
        inner,
        flaw,
        sent: Mutex::default(),
        receipts: Mutex::default(),
    };
    run_transport("teeth", |_| async { transport }, check);
}

caught!(drops_headers, DropsHeaders, transport::round_trip, "intact");
caught!(
    first_twice,
    FirstTwice,
    transport::batch_send,
    "the batch's messages"
);
caught!(
    nack_ignored,
    NackIgnored,
    transport::nack_redelivers,
    "did not come back"
);
caught!(
    lease_ignored,
    LeaseIgnored,
    transport::unacked_redelivers,
    "delivered twice while leased"
);
caught!(
    ack_ignored,
    AckIgnored,
    transport::ack_removes,
    "acked message was delivered again"
);
caught!(
    ack_all_first_only,
    AckAllFirstOnly,
    transport::ack_all_removes_each,
    "acked message was delivered again"
);
caught!(
    delay_ignored,
    DelayIgnored,
    transport::delay_not_early,
    "despite a delay"
);
caught!(
    duplicate_refused,
    DuplicateRefused,
    transport::duplicates_tolerated,
    "duplicate refused"
);
caught!(
    partial_batch,
    PartialBatch,
    transport::too_large_is_typed,
    "part of a refused batch"
);
caught!(
    lease_ignored_by_competitors,
    LeaseIgnored,
    transport::competing_consumers,
    "two receivers at once"
);
caught!(
    stale_nack_releases,
    StaleNackReleases,
    transport::stale_receipt_harmless,
    "stale nack released"
);
caught!(
    slow_zero_wait,
    SlowZeroWait,
    transport::zero_wait_is_prompt,
    "zero-wait receive took"
);
