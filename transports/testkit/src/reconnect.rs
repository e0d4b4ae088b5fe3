//! A connection dropped mid-stream: the transport reconnects on its own
//! and nothing sent is lost.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use exactly::{Delivery, Envelope, MessageId, Outgoing, Transport, TransportError};

use crate::Proxy;

/// How long recovery may take before the check fails.
const PATIENCE: Duration = Duration::from_secs(60);

/// Runs `op` until it succeeds, retrying transient errors for up to a
/// minute.
///
/// # Panics
///
/// On a permanent error (a dropped connection must surface as
/// `Unavailable`, never as a permanent failure), or after a minute.
pub async fn retry<T, F, Fut>(what: &str, mut op: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, TransportError>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match op().await {
            Ok(value) => return value,
            Err(e) if e.is_transient() && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{what}: {e:?}"),
        }
    }
}

/// Probe message `n` for `queue`: its id derived from both (the same `n`
/// gives the same id), header `n`, and `n` as its 4-byte body.
pub fn probe(queue: &str, n: u32) -> Envelope {
    Envelope {
        id: MessageId::derived(queue, &n.to_string()),
        message_type: "testkit.Probe".into(),
        destination: queue.into(),
        headers: [("n".to_owned(), n.to_string())].into(),
        correlation_id: None,
        causation_id: None,
        reply_to: None,
        token: None,
        content_type: "application/octet-stream".into(),
        body: n.to_be_bytes().to_vec().into(),
    }
}

async fn send_range(transport: &dyn Transport, queue: &str, from: u32, to: u32) {
    for start in (from..to).step_by(5) {
        let batch: Vec<Outgoing> = (start..(start + 5).min(to))
            .map(|n| Outgoing::new(probe(queue, n)))
            .collect();
        retry("send", || transport.send(batch.clone())).await;
    }
}

async fn receive(transport: &dyn Transport, queue: &str, max: usize) -> Vec<Delivery> {
    let wait = Duration::from_millis(200);
    retry("receive", || transport.receive(queue, max, wait)).await
}

/// Sends 20 messages, receives 15 and acks 10, then cuts every connection
/// through `proxy` (the transport must reach its server through it). Then
/// sends 20 more and drains the queue, retrying transient errors: all 40
/// must be received and acked — the 5 held unacked when the connection
/// broke included, redelivered by the broker. Duplicates are allowed.
///
/// The transport should have a short visibility timeout (about a second)
/// where the broker only redelivers after a lease runs out.
pub async fn reconnect_mid_stream(transport: Arc<dyn Transport>, queue: &str, proxy: &Proxy) {
    const TOTAL: u32 = 40;
    let transport = &*transport;
    send_range(transport, queue, 0, TOTAL / 2).await;
    let mut acked = HashSet::new();
    let mut held = Vec::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while held.len() < 15 {
        assert!(tokio::time::Instant::now() < deadline, "first receives");
        held.extend(receive(transport, queue, 15 - held.len()).await);
    }
    for delivery in held.drain(..10) {
        retry("ack", || transport.ack(&delivery.receipt)).await;
        acked.insert(delivery.envelope.id);
    }
    // The other 5 stay unacked: their worker "died" with the connection.
    proxy.sever();
    send_range(transport, queue, TOTAL / 2, TOTAL).await;
    let expected: HashSet<MessageId> = (0..TOTAL).map(|n| probe(queue, n).id).collect();
    while acked != expected {
        assert!(
            tokio::time::Instant::now() < deadline,
            "after a dropped connection only {} of {TOTAL} messages came through",
            acked.len()
        );
        for delivery in receive(transport, queue, 10).await {
            retry("ack", || transport.ack(&delivery.receipt)).await;
            acked.insert(delivery.envelope.id);
        }
    }
}
