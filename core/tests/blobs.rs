//! The claim check and blob side effects on the in-memory backends: large
//! bodies round-trip, and a corrupt or missing body, or a payload over the
//! hard limit, ends in the error queue with the reason — never a silent
//! empty body.

use std::sync::Arc;

use bytes::Bytes;
use exactly::message::headers;
use exactly::{
    BlobStore, Endpoint, Envelope, MemoryBlobStore, MemoryStore, MemoryTransport, Message, Outcome,
    RetryPolicy, Sender, Store, Transport, handler_fn,
};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Upload {
    id: String,
    data: String,
}
impl Message for Upload {
    const TYPE: &'static str = "Upload";
}

#[derive(Serialize, Deserialize)]
struct Archive {
    id: String,
    data: String,
}
impl Message for Archive {
    const TYPE: &'static str = "Archive";
}

struct World {
    transport: Arc<MemoryTransport>,
    blobs: Arc<MemoryBlobStore>,
    store: Arc<MemoryStore>,
    intake: Endpoint,
    archive: Endpoint,
}

/// `intake` forwards each upload to `archive` (a large body: claim-checked)
/// and writes a receipt blob; `archive` stores the size it received.
fn world(max_payload: usize) -> World {
    let store = Arc::new(MemoryStore::new());
    let transport = Arc::new(MemoryTransport::new());
    let blobs = Arc::new(MemoryBlobStore::new());
    let intake = Endpoint::builder("intake", store.clone(), transport.clone())
        .handler(handler_fn(
            |m: &Upload| m.id.clone(),
            |n: &mut u32, m: Upload, ctx| {
                *n += 1;
                ctx.send(
                    "archive",
                    &Archive {
                        id: m.id,
                        data: m.data,
                    },
                )?;
                Ok(())
            },
        ))
        .blobs(blobs.clone())
        .max_payload_bytes(max_payload)
        .retry(RetryPolicy {
            delayed: 0,
            ..RetryPolicy::no_delays()
        })
        .build()
        .expect("endpoint");
    let archive = Endpoint::builder("archive", store.clone(), transport.clone())
        .handler(handler_fn(
            |m: &Archive| m.id.clone(),
            |size: &mut usize, m: Archive, _| {
                *size = m.data.len();
                Ok(())
            },
        ))
        .blobs(blobs.clone())
        .retry(RetryPolicy {
            delayed: 0,
            ..RetryPolicy::no_delays()
        })
        .build()
        .expect("endpoint");
    World {
        transport,
        blobs,
        store,
        intake,
        archive,
    }
}

impl World {
    async fn upload(&self, bytes: usize) {
        let sender =
            Sender::new("test", self.store.clone(), self.transport.clone()).expect("sender");
        let upload = Upload {
            id: "u1".into(),
            data: "z".repeat(bytes),
        };
        sender.send("intake", &upload).await.expect("send");
        let d = self.intake.receive_one().await.expect("rx").expect("msg");
        self.intake.handle_delivery(d).await;
    }

    async fn archive_one(&self) -> Outcome {
        let d = self.archive.receive_one().await.expect("rx").expect("msg");
        self.archive.handle_delivery(d).await
    }

    fn queued_archive(&self) -> Envelope {
        self.transport
            .peek("archive")
            .pop()
            .expect("an Archive message")
    }

    fn error_reason(&self) -> String {
        let dead = self.transport.peek("error");
        assert_eq!(dead.len(), 1, "{dead:?}");
        dead[0]
            .header(headers::ERROR_REASON)
            .expect("reason")
            .to_owned()
    }
}

#[tokio::test]
async fn a_large_body_travels_claim_checked_and_is_released_after_processing() {
    let w = world(64 << 20);
    w.upload(1 << 20).await;
    let queued = w.queued_archive();
    assert!(queued.body.is_empty(), "the body went to the blob store");
    assert!(queued.header("exactly-claim-check").is_some());
    assert_eq!(w.blobs.list("b/").await.expect("list").len(), 1);

    assert_eq!(w.archive_one().await, Outcome::Processed);
    let record = w
        .store
        .get("e/archive/u1")
        .await
        .expect("get")
        .expect("record");
    let record = exactly::record::EntityRecord::decode("k", &record.value).expect("record");
    assert_eq!(record.state.as_deref(), Some(&b"1048576"[..]));
    assert!(
        w.blobs.list("b/").await.expect("list").is_empty(),
        "released after processing"
    );

    // A late duplicate of the same message: body gone, token gone → dropped.
    w.transport
        .send(vec![exactly::Outgoing::new(queued)])
        .await
        .expect("dup");
    assert_eq!(w.archive_one().await, Outcome::Duplicate);
}

#[tokio::test]
async fn a_corrupt_claim_checked_body_goes_to_the_error_queue() {
    let w = world(64 << 20);
    w.upload(300 * 1024).await;
    let key = w.blobs.list("b/").await.expect("list")[0].key.clone();
    w.blobs
        .tamper(&key, Bytes::from_static(b"not the original bytes"));
    assert!(matches!(w.archive_one().await, Outcome::ErrorQueued { .. }));
    let reason = w.error_reason();
    assert!(reason.contains("is corrupt"), "{reason}");
}

#[tokio::test]
async fn a_missing_claim_checked_body_of_a_message_still_owed_goes_to_the_error_queue() {
    let w = world(64 << 20);
    w.upload(300 * 1024).await;
    let key = w.blobs.list("b/").await.expect("list")[0].key.clone();
    w.blobs.delete(&key).await.expect("delete");
    assert!(matches!(w.archive_one().await, Outcome::ErrorQueued { .. }));
    let reason = w.error_reason();
    assert!(reason.contains("is missing"), "{reason}");
}

#[tokio::test]
async fn a_payload_over_the_hard_limit_is_refused_at_send_time() {
    let w = world(100 * 1024);
    w.upload(200 * 1024).await;
    assert_eq!(w.transport.depth("archive"), 0, "nothing was sent");
    let reason = w.error_reason();
    assert!(reason.contains("exceeds the payload limit"), "{reason}");
}

#[tokio::test]
async fn a_discarded_claim_checked_message_releases_its_body_and_token() {
    let w = world(64 << 20);
    w.upload(300 * 1024).await;
    let key = w.blobs.list("b/").await.expect("list")[0].key.clone();
    w.blobs
        .tamper(&key, Bytes::from_static(b"not the original"));
    assert!(matches!(w.archive_one().await, Outcome::ErrorQueued { .. }));

    let holder = || async {
        let found = w
            .store
            .get("e/intake/u1")
            .await
            .expect("get")
            .expect("record");
        exactly::record::EntityRecord::decode("e/intake/u1", &found.value).expect("record")
    };
    let before = holder().await;
    assert_eq!(
        (before.tokens.len(), before.blobs.len()),
        (1, 1),
        "held until now"
    );

    let errors = exactly::ErrorQueue::new("error", w.store.clone(), w.transport.clone())
        .blobs(w.blobs.clone());
    let got = errors
        .receive(16, std::time::Duration::ZERO)
        .await
        .expect("receive");
    assert_eq!(got.len(), 1);
    errors.discard(&got[0]).await.expect("discard");

    let after = holder().await;
    assert!(
        after.tokens.is_empty(),
        "token consumed: {:?}",
        after.tokens
    );
    assert!(
        after.blobs.is_empty(),
        "reference released: {:?}",
        after.blobs
    );
    assert!(
        w.blobs.list("b/").await.expect("list").is_empty(),
        "body deleted"
    );
    assert_eq!(w.transport.depth("error"), 0, "acked");
}
