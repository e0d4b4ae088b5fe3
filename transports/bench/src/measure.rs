//! One measurement: `n` messages of one size through a transport, sent
//! one per call or in batches, then received (one, or up to a batch, per
//! call) and acked one by one.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use exactly::{Envelope, MessageId, Outgoing, Transport, TransportError};

/// Messages per send and per receive in batch mode.
pub const BATCH: usize = 10;

/// Messages per second of each phase.
#[derive(Clone, Copy, Debug)]
pub struct Rates {
    pub send: f64,
    pub receive_ack: f64,
}

fn envelope(queue: &str, n: usize, body_bytes: usize) -> Envelope {
    Envelope {
        id: MessageId::derived(queue, &n.to_string()),
        message_type: "bench.Payload".into(),
        destination: queue.into(),
        headers: Default::default(),
        correlation_id: None,
        causation_id: None,
        reply_to: None,
        token: None,
        content_type: "application/octet-stream".into(),
        body: vec![b'x'; body_bytes].into(),
    }
}

fn rate(n: usize, took: Duration) -> f64 {
    n as f64 / took.as_secs_f64().max(1e-9)
}

/// Sends `n` messages to `queue` (`batch` per call), then receives and
/// acks them all; every message must come through.
pub async fn run(
    transport: &dyn Transport,
    queue: &str,
    n: usize,
    batch: usize,
    body_bytes: usize,
) -> Result<Rates, TransportError> {
    let start = Instant::now();
    for first in (0..n).step_by(batch) {
        let outgoing = (first..(first + batch).min(n))
            .map(|i| Outgoing::new(envelope(queue, i, body_bytes)))
            .collect();
        transport.send(outgoing).await?;
    }
    let send = rate(n, start.elapsed());

    let start = Instant::now();
    let mut seen = HashSet::with_capacity(n);
    let deadline = Instant::now() + Duration::from_secs(120);
    while seen.len() < n {
        if Instant::now() > deadline {
            return Err(TransportError::generic(format!(
                "{queue}: only {} of {n} messages came back",
                seen.len()
            )));
        }
        let got = transport
            .receive(queue, batch, Duration::from_secs(1))
            .await?;
        for delivery in got {
            transport.ack(&delivery.receipt).await?;
            seen.insert(delivery.envelope.id);
        }
    }
    Ok(Rates {
        send,
        receive_ack: rate(n, start.elapsed()),
    })
}
