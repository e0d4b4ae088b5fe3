//! The [`Transport`] contract, one check per clause (named as in the
//! trait's `# Contract`). Every check takes the transport and a queue-name
//! prefix that no other check uses, so checks may share one broker.
//!
//! Lease checks need a backend with a visibility timeout of about a second:
//! long enough that a nack is told apart from a lease running out
//! ([`PROMPT`]), short enough to wait for leases to run out.

mod lease;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use exactly::{DedupToken, Delivery, Envelope, MessageId, Outgoing, Transport, TransportError};

pub use lease::{
    ack_all_removes_each, ack_removes, competing_consumers, stale_receipt_harmless,
    unacked_redelivers,
};

/// How long a check waits for something that must arrive (a lease to run
/// out, a delay to pass) before failing.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// How soon a nacked message must be deliverable again; backends under
/// test use a longer lease (about a second), so only the nack explains it.
pub const PROMPT: Duration = Duration::from_millis(400);

/// A message for `queue` with every envelope field set: headers, token,
/// correlation, causation, reply-to and a binary body.
pub fn envelope(queue: &str, n: u32) -> Envelope {
    let id = MessageId::derived(queue, &n.to_string());
    Envelope {
        id,
        message_type: "conformance.Probe".into(),
        destination: queue.into(),
        headers: BTreeMap::from([
            ("n".to_owned(), n.to_string()),
            ("spaced name".to_owned(), "välue with ünïcode".to_owned()),
        ]),
        correlation_id: Some(MessageId::derived(queue, "correlation")),
        causation_id: Some(MessageId::derived(queue, "causation")),
        reply_to: Some(format!("{queue}replies")),
        token: Some(DedupToken {
            record: format!("e/{queue}/entity"),
            id,
        }),
        content_type: "application/octet-stream".into(),
        body: Bytes::from((0..=255u8).chain(n.to_be_bytes()).collect::<Vec<_>>()),
    }
}

pub(crate) async fn send(transport: &dyn Transport, batch: Vec<Envelope>) {
    let batch = batch.into_iter().map(Outgoing::new).collect();
    transport.send(batch).await.expect("send");
}

pub(crate) async fn receive(
    transport: &dyn Transport,
    queue: &str,
    max: usize,
    wait: Duration,
) -> Vec<Delivery> {
    transport
        .receive(queue, max, wait)
        .await
        .unwrap_or_else(|e| panic!("receive from {queue:?}: {e}"))
}

/// Receives until `n` deliveries arrived, or panics after [`PATIENCE`].
pub(crate) async fn receive_n(transport: &dyn Transport, queue: &str, n: usize) -> Vec<Delivery> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut got = Vec::new();
    while got.len() < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{queue}: {} of {n} messages arrived within {PATIENCE:?}",
            got.len()
        );
        got.extend(receive(transport, queue, n - got.len(), Duration::from_millis(500)).await);
    }
    got
}

fn ids(deliveries: &[Delivery]) -> HashSet<MessageId> {
    deliveries.iter().map(|d| d.envelope.id).collect()
}

/// A sent message arrives with id, type, headers, token, correlation and
/// body intact, on the queue it was sent to.
pub async fn round_trip(transport: Arc<dyn Transport>, queue: &str) {
    let sent = envelope(queue, 1);
    send(&*transport, vec![sent.clone()]).await;
    let got = receive_n(&*transport, queue, 1).await;
    assert_eq!(got[0].envelope, sent, "the envelope must arrive intact");
    assert_eq!(got[0].receipt.queue, queue, "the receipt names its queue");
    transport.ack(&got[0].receipt).await.expect("ack");
}

/// A batch arrives whole, also when it spans two queues.
pub async fn batch_send(transport: Arc<dyn Transport>, queue: &str) {
    let other = format!("{queue}other");
    let mine: Vec<Envelope> = (0..10).map(|n| envelope(queue, n)).collect();
    let theirs: Vec<Envelope> = (0..3).map(|n| envelope(&other, n)).collect();
    send(&*transport, mine.iter().chain(&theirs).cloned().collect()).await;
    for (q, expected) in [(queue, &mine), (other.as_str(), &theirs)] {
        let got = receive_n(&*transport, q, expected.len()).await;
        assert_eq!(
            ids(&got),
            expected.iter().map(|e| e.id).collect(),
            "{q}: the batch's messages"
        );
        for d in &got {
            transport.ack(&d.receipt).await.expect("ack");
        }
    }
}

/// A nacked message is delivered again at once — well before its lease
/// would have run out — counted as a further delivery when the backend
/// counts.
pub async fn nack_redelivers(transport: Arc<dyn Transport>, queue: &str) {
    send(&*transport, vec![envelope(queue, 1)]).await;
    let first = receive_n(&*transport, queue, 1).await.remove(0);
    transport
        .nack(&first.receipt, Duration::ZERO)
        .await
        .expect("nack");
    let again = receive(&*transport, queue, 1, PROMPT).await;
    let again = again
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("a nacked message did not come back within {PROMPT:?}"));
    assert_eq!(
        again.envelope, first.envelope,
        "the nacked message comes back"
    );
    if first.delivery_count > 0 {
        assert!(
            again.delivery_count > first.delivery_count,
            "delivery count {} after {}",
            again.delivery_count,
            first.delivery_count
        );
    }
    transport.ack(&again.receipt).await.expect("ack");
}

/// A message sent with a delay is not delivered before the delay passed.
pub async fn delay_not_early(transport: Arc<dyn Transport>, queue: &str) {
    let delay = Duration::from_secs(1);
    let sent = envelope(queue, 1);
    let start = tokio::time::Instant::now();
    let delayed = Outgoing {
        delay,
        ..Outgoing::new(sent.clone())
    };
    transport.send(vec![delayed]).await.expect("send");
    assert!(
        receive(&*transport, queue, 1, Duration::ZERO)
            .await
            .is_empty(),
        "delivered at once despite a delay of {delay:?}"
    );
    let got = receive_n(&*transport, queue, 1).await;
    // Backends keep time in whole milliseconds: allow one of rounding.
    let waited = start.elapsed() + Duration::from_millis(1);
    assert!(waited >= delay, "delivered after {waited:?} of {delay:?}");
    assert_eq!(got[0].envelope, sent);
    transport.ack(&got[0].receipt).await.expect("ack");
}

/// The same message sent three times (twice in one batch) is accepted;
/// every copy that arrives is intact and acking them empties the queue.
pub async fn duplicates_tolerated(transport: Arc<dyn Transport>, queue: &str) {
    let sent = envelope(queue, 1);
    send(&*transport, vec![sent.clone()]).await;
    send(&*transport, vec![sent.clone(), sent.clone()]).await;
    let mut copies = receive_n(&*transport, queue, 1).await;
    loop {
        let more = receive(&*transport, queue, 10, Duration::from_millis(300)).await;
        if more.is_empty() {
            break;
        }
        copies.extend(more);
    }
    assert!(copies.len() <= 3, "{} copies of 3 sends", copies.len());
    for copy in &copies {
        assert_eq!(copy.envelope, sent, "every copy intact");
        transport.ack(&copy.receipt).await.expect("ack");
    }
}

/// A message over the limit fails with `TooLarge` and nothing of its batch
/// is sent; a body of exactly the limit goes through. Skipped (with a
/// note) when the backend reports no limit.
pub async fn too_large_is_typed(transport: Arc<dyn Transport>, queue: &str) {
    let Some(limit) =
        crate::run::testable_limit(transport.capabilities().max_message_bytes, "transport")
    else {
        return;
    };
    let small = envelope(queue, 1);
    let mut big = envelope(queue, 2);
    big.body = Bytes::from(vec![1u8; limit + 1]);
    match transport
        .send(vec![Outgoing::new(small), Outgoing::new(big)])
        .await
    {
        Err(TransportError::TooLarge { size, limit: l }) => {
            assert!(
                size > limit && l == limit,
                "TooLarge reports {size} over {l}"
            );
        }
        r => panic!("a batch with a message over the limit: expected TooLarge, got {r:?}"),
    }
    let leaked = receive(&*transport, queue, 10, Duration::from_millis(300)).await;
    assert!(leaked.is_empty(), "part of a refused batch was sent");
    let mut fits = envelope(queue, 3);
    fits.body = Bytes::from(vec![2u8; limit]);
    send(&*transport, vec![fits.clone()]).await;
    let got = receive_n(&*transport, queue, 1).await;
    assert_eq!(got[0].envelope, fits, "a body of exactly the limit");
    transport.ack(&got[0].receipt).await.expect("ack");
}

/// `receive` with a zero wait returns promptly, also from an empty queue.
pub async fn zero_wait_is_prompt(transport: Arc<dyn Transport>, queue: &str) {
    let start = tokio::time::Instant::now();
    let got = receive(&*transport, queue, 10, Duration::ZERO).await;
    assert!(
        got.is_empty(),
        "an empty queue delivered {} messages",
        got.len()
    );
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "a zero-wait receive took {took:?}"
    );
}
