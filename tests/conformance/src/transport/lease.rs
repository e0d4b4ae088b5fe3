//! Clauses about leases: a delivered message stays until acked, comes back
//! when its receiver disappears, and is never held by two receivers at once.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use exactly::{Envelope, Receipt, Transport};

use super::{PATIENCE, envelope, ids, receive, receive_n, send};

/// A delivered message that is neither acked nor nacked is not delivered
/// again while leased, and is delivered again once the lease runs out.
pub async fn unacked_redelivers(transport: Arc<dyn Transport>, queue: &str) {
    send(&*transport, vec![envelope(queue, 1)]).await;
    let first = receive_n(&*transport, queue, 1).await.remove(0);
    let meanwhile = receive(&*transport, queue, 10, Duration::ZERO).await;
    assert!(meanwhile.is_empty(), "delivered twice while leased");
    // The receiver "disappears": only the lease running out brings it back.
    let again = receive_n(&*transport, queue, 1).await.remove(0);
    assert_eq!(
        again.envelope, first.envelope,
        "the abandoned message comes back"
    );
    transport.ack(&again.receipt).await.expect("ack");
}

/// An acked message is gone: when the lease of a message received beside
/// it runs out, that one comes back and the acked one does not.
pub async fn ack_removes(transport: Arc<dyn Transport>, queue: &str) {
    acked_stay_gone(transport, queue, 1, false).await;
}

/// `ack_all` removes every message it names, and only those: of four
/// received together, the three acked at once stay gone and the fourth
/// comes back when its lease runs out.
pub async fn ack_all_removes_each(transport: Arc<dyn Transport>, queue: &str) {
    acked_stay_gone(transport, queue, 3, true).await;
}

/// Sends `acked` messages and one more, receives them all, acks the first
/// `acked` (with one `ack_all` if `together`), and checks that only the
/// unacked one is delivered again.
async fn acked_stay_gone(transport: Arc<dyn Transport>, queue: &str, acked: u32, together: bool) {
    let kept = envelope(queue, 0);
    let acked: Vec<Envelope> = (1..=acked).map(|n| envelope(queue, n)).collect();
    let acked_ids: HashSet<_> = acked.iter().map(|e| e.id).collect();
    send(&*transport, acked.iter().chain([&kept]).cloned().collect()).await;
    let got = receive_n(&*transport, queue, acked.len() + 1).await;
    let receipts: Vec<Receipt> = got
        .iter()
        .filter(|d| acked_ids.contains(&d.envelope.id))
        .map(|d| d.receipt.clone())
        .collect();
    if together {
        transport.ack_all(&receipts).await.expect("ack_all");
    } else {
        for receipt in &receipts {
            transport.ack(receipt).await.expect("ack");
        }
    }
    let back = receive_n(&*transport, queue, 1).await;
    let more = receive(&*transport, queue, 10, Duration::from_millis(300)).await;
    let back: Vec<_> = back.into_iter().chain(more).collect();
    assert!(
        ids(&back).iter().all(|id| !acked_ids.contains(id)),
        "an acked message was delivered again"
    );
    assert!(ids(&back).contains(&kept.id), "the unacked one came back");
    for d in &back {
        transport.ack(&d.receipt).await.expect("ack");
    }
}

/// Several receivers drain one queue together: every message arrives, and
/// none is held by two receivers at the same time.
pub async fn competing_consumers(transport: Arc<dyn Transport>, queue: &str) {
    const MESSAGES: u32 = 40;
    const RECEIVERS: usize = 4;
    for batch in 0..MESSAGES / 10 {
        let envelopes = (batch * 10..batch * 10 + 10)
            .map(|n| envelope(queue, n))
            .collect();
        send(&*transport, envelopes).await;
    }
    let held = Arc::new(Mutex::new(HashSet::new()));
    let done = Arc::new(Mutex::new(HashSet::new()));
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let receivers: Vec<_> = (0..RECEIVERS)
        .map(|_| {
            let (transport, queue) = (transport.clone(), queue.to_owned());
            let (held, done) = (held.clone(), done.clone());
            tokio::spawn(async move {
                while lock(&done).len() < MESSAGES as usize
                    && tokio::time::Instant::now() < deadline
                {
                    let got = receive(&*transport, &queue, 3, Duration::from_millis(100)).await;
                    for d in &got {
                        assert!(
                            lock(&held).insert(d.envelope.id),
                            "{} delivered to two receivers at once",
                            d.envelope.id
                        );
                    }
                    // Hold them a moment, as a handler would.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    for d in got {
                        lock(&held).remove(&d.envelope.id);
                        lock(&done).insert(d.envelope.id);
                        transport.ack(&d.receipt).await.expect("ack");
                    }
                }
            })
        })
        .collect();
    for receiver in receivers {
        receiver.await.expect("receiver task");
    }
    let expected: HashSet<_> = (0..MESSAGES).map(|n| envelope(queue, n).id).collect();
    assert_eq!(*lock(&done), expected, "every message received");
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A receipt whose message was redelivered since: nacking it does not
/// release the new lease; acking it (twice) succeeds and removes no other
/// message; acking the current receipt twice succeeds.
pub async fn stale_receipt_harmless(transport: Arc<dyn Transport>, queue: &str) {
    let bystanders = format!("{queue}bystanders");
    send(
        &*transport,
        vec![envelope(queue, 1), envelope(&bystanders, 2)],
    )
    .await;
    let stale = receive_n(&*transport, queue, 1).await.remove(0);
    transport
        .nack(&stale.receipt, Duration::ZERO)
        .await
        .expect("nack");
    let current = receive_n(&*transport, queue, 1).await.remove(0);

    transport
        .nack(&stale.receipt, Duration::ZERO)
        .await
        .expect("a stale nack must not fail");
    let meanwhile = receive(&*transport, queue, 10, Duration::ZERO).await;
    assert!(
        meanwhile.is_empty(),
        "a stale nack released the current lease"
    );

    for _ in 0..2 {
        transport
            .ack(&stale.receipt)
            .await
            .expect("a stale ack must not fail");
    }
    let bystander = receive_n(&*transport, &bystanders, 1).await;
    assert_eq!(
        bystander[0].envelope.id,
        envelope(&bystanders, 2).id,
        "no other message removed"
    );
    for receipt in [&current.receipt, &current.receipt, &bystander[0].receipt] {
        transport
            .ack(receipt)
            .await
            .expect("a repeated ack must not fail");
    }
}
