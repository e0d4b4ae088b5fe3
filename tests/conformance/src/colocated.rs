//! The [`Colocated`] contract, one check per clause. A backend here is one
//! object that is the store, the transport and their one transaction
//! ([`Shared`]); checks get a prefix valid as a queue name and as a key
//! prefix. Like the transport's lease checks, these need a visibility
//! timeout of about a second: they wait for an unacked message to come
//! back, and check that an acked one does not.

use std::time::Duration;

use bytes::Bytes;
use exactly::{Colocated, Envelope, Outgoing, Precondition, Store, StoreError, Transport, Write};

use crate::transport::{envelope, receive, receive_n, send};

/// A store, a transport and their [`Colocated`] transaction in one object.
pub trait Shared: Store + Transport + Colocated {}

impl<T: Store + Transport + Colocated> Shared for T {}

/// How long a check waits to see that a message does *not* arrive.
const QUIET: Duration = Duration::from_millis(300);

/// Sends a message to be kept and one to be acked by the commit, on queue
/// `{prefix}in`, and receives both; returns them as (kept, to ack).
async fn two_received(db: &dyn Shared, prefix: &str) -> (Envelope, exactly::Delivery) {
    let queue = format!("{prefix}in");
    let (kept, acked) = (envelope(&queue, 0), envelope(&queue, 1));
    send(db, vec![kept.clone(), acked.clone()]).await;
    let mut got = receive_n(db, &queue, 2).await;
    let i = got
        .iter()
        .position(|d| d.envelope.id == acked.id)
        .expect("both messages arrive");
    (kept, got.swap_remove(i))
}

/// Waits for the kept message's lease to run out and checks that it, and
/// not the other one, comes back on `{prefix}in`: the other was acked (or
/// `acked` is false, and both come back).
async fn only_unacked_come_back(db: &dyn Shared, prefix: &str, kept: &Envelope, acked: bool) {
    let queue = format!("{prefix}in");
    let expected = if acked { 1 } else { 2 };
    let back = receive_n(db, &queue, expected).await;
    assert!(
        back.iter().any(|d| d.envelope.id == kept.id),
        "the message the commit did not ack comes back when its lease runs out"
    );
    let more = receive(db, &queue, 10, QUIET).await;
    assert!(
        more.is_empty() && back.len() == expected,
        "{}",
        if acked {
            "the message the commit acked must not come back"
        } else {
            "a refused commit must not ack"
        }
    );
}

/// A commit writes its keys, sends its messages and acks its deliveries:
/// the keys read back at the versions returned, the messages arrive on
/// their queues, and the acked delivery is gone (when the lease of one
/// received beside it runs out, only that one comes back).
pub async fn writes_sends_and_acks_together(db: std::sync::Arc<dyn Shared>, prefix: &str) {
    let (kept, delivery) = two_received(&*db, prefix).await;
    let out = format!("{prefix}out");
    let sent = envelope(&out, 7);
    let writes = ["a", "b"].map(|k| Write {
        key: format!("{prefix}/{k}"),
        value: Bytes::from(format!("value {k}")),
        precondition: Precondition::Absent,
    });
    let versions = db
        .put_all_with(
            writes.to_vec(),
            vec![Outgoing::new(sent.clone())],
            vec![delivery.receipt.clone()],
        )
        .await
        .expect("put_all_with");
    assert_eq!(versions.len(), 2, "one version per write");
    for (write, version) in writes.iter().zip(&versions) {
        let read = db.get(&write.key).await.expect("get").expect("written");
        assert_eq!(
            read.value, write.value,
            "{} holds what was written",
            write.key
        );
        assert_eq!(
            &read.version, version,
            "{} is at the version returned",
            write.key
        );
    }
    let arrived = receive_n(&*db, &out, 1).await;
    assert_eq!(
        arrived[0].envelope, sent,
        "the commit's message arrives intact"
    );
    db.ack(&arrived[0].receipt).await.expect("ack");
    only_unacked_come_back(&*db, prefix, &kept, true).await;
}

/// A refused precondition fails the whole transaction with a `Conflict`
/// naming its key: the other write does not happen, the message is not
/// sent and the delivery is not acked (it comes back when its lease runs
/// out).
pub async fn refused_write_sends_and_acks_nothing(db: std::sync::Arc<dyn Shared>, prefix: &str) {
    let taken = format!("{prefix}/taken");
    let fresh = format!("{prefix}/fresh");
    db.put(&taken, Bytes::from_static(b"first"), Precondition::Absent)
        .await
        .expect("put");
    let (kept, delivery) = two_received(&*db, prefix).await;
    let out = format!("{prefix}out");
    let writes = [&fresh, &taken].map(|key| Write {
        key: key.clone(),
        value: Bytes::from_static(b"second"),
        precondition: Precondition::Absent,
    });
    let refused = db
        .put_all_with(
            writes.to_vec(),
            vec![Outgoing::new(envelope(&out, 7))],
            vec![delivery.receipt.clone()],
        )
        .await;
    match refused {
        Err(StoreError::Conflict { key }) => assert_eq!(key, taken, "the conflict names its key"),
        other => panic!("expected a Conflict on {taken:?}, got {other:?}"),
    }
    assert!(
        db.get(&fresh).await.expect("get").is_none(),
        "the other write of a refused transaction must not happen"
    );
    let read = db.get(&taken).await.expect("get").expect("still there");
    assert_eq!(
        read.value,
        Bytes::from_static(b"first"),
        "the refused key is unchanged"
    );
    assert!(
        receive(&*db, &out, 10, QUIET).await.is_empty(),
        "a refused transaction must not send"
    );
    only_unacked_come_back(&*db, prefix, &kept, false).await;
}
