//! The operator's side of the error queue: a replayed message is processed
//! once (however often it is replayed), a discarded one never, and its
//! token no longer held by its sender's record.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use exactly::message::headers;
use exactly::record::EntityRecord;
use exactly::{
    Endpoint, Envelope, ErrorQueue, HandlerError, MemoryStore, MemoryTransport, Message, Outcome,
    Outgoing, RetryPolicy, Sender, Store, Transport, handler_fn,
};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Pay {
    key: String,
}
impl Message for Pay {
    const TYPE: &'static str = "Pay";
}

struct Fixture {
    store: Arc<MemoryStore>,
    transport: Arc<MemoryTransport>,
    endpoint: Endpoint,
    sender: Sender,
    errors: ErrorQueue,
    /// While set, the handler fails (and the message is error-queued).
    broken: Arc<AtomicBool>,
}

fn fixture() -> Fixture {
    let store = Arc::new(MemoryStore::new());
    let transport = Arc::new(MemoryTransport::new());
    let broken = Arc::new(AtomicBool::new(true));
    let down = broken.clone();
    let endpoint = Endpoint::builder("pay", store.clone(), transport.clone())
        .handler(handler_fn(
            |m: &Pay| m.key.clone(),
            move |paid: &mut u32, _m: Pay, _ctx| {
                if down.load(Ordering::SeqCst) {
                    return Err(HandlerError::failed("the bank is down"));
                }
                *paid += 1;
                Ok(())
            },
        ))
        .retry(RetryPolicy {
            immediate: 0,
            delayed: 0,
            ..RetryPolicy::no_delays()
        })
        .build()
        .expect("valid endpoint");
    let sender = Sender::new("shop", store.clone(), transport.clone()).expect("valid sender");
    let errors = ErrorQueue::new("error", store.clone(), transport.clone());
    Fixture {
        store,
        transport,
        endpoint,
        sender,
        errors,
        broken,
    }
}

impl Fixture {
    async fn drain(&self) -> Vec<Outcome> {
        let mut outcomes = Vec::new();
        while let Some(d) = self.endpoint.receive_one().await.expect("receive") {
            outcomes.push(self.endpoint.handle_delivery(d).await);
        }
        outcomes
    }

    /// Sends a payment for `key` while the handler is broken: it ends in
    /// the error queue. Returns its error-queued copy.
    async fn fail(&self, key: &str) -> Envelope {
        self.broken.store(true, Ordering::SeqCst);
        let pay = Pay { key: key.into() };
        self.sender.send("pay", &pay).await.expect("send");
        let outcomes = self.drain().await;
        assert!(
            matches!(&outcomes[..], [Outcome::ErrorQueued { .. }]),
            "{outcomes:?}"
        );
        let queued = self.transport.peek("error");
        assert_eq!(queued.len(), 1);
        queued[0].clone()
    }

    /// How often `key` was paid, as committed.
    async fn paid(&self, key: &str) -> u32 {
        let Some(found) = self.store.get(&format!("e/pay/{key}")).await.expect("get") else {
            return 0;
        };
        let record = EntityRecord::decode(key, &found.value).expect("record");
        record
            .state
            .map_or(0, |s| serde_json::from_slice(&s).expect("state"))
    }

    /// The tokens the message's sender record still holds.
    async fn held(&self, envelope: &Envelope) -> usize {
        let token = envelope.token.as_ref().expect("a token");
        let found = self.store.get(&token.record).await.expect("get");
        let found = found.expect("the sender's record");
        let record = EntityRecord::decode(&token.record, &found.value).expect("record");
        record.tokens.len()
    }
}

#[tokio::test]
async fn a_replayed_message_is_processed_once_however_often_it_is_replayed() {
    let f = fixture();
    let failed = f.fail("k1").await;
    assert_eq!(failed.header(headers::ERROR_SOURCE_QUEUE), Some("pay"));
    f.broken.store(false, Ordering::SeqCst);

    let got = f.errors.receive(16, Duration::ZERO).await.expect("receive");
    assert_eq!(got.len(), 1);
    f.errors.replay(&got[0]).await.expect("replay");
    assert!(f.transport.peek("error").is_empty(), "acked there");
    let back = f.transport.peek("pay");
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].id, failed.id, "same id");
    assert_eq!(back[0].token, failed.token, "same token");
    assert!(
        back[0]
            .headers
            .keys()
            .all(|h| !h.starts_with("exactly-error")),
        "no error headers: {:?}",
        back[0].headers
    );
    assert_eq!(f.drain().await, vec![Outcome::Processed]);
    assert_eq!(f.paid("k1").await, 1);

    // A second copy in the error queue (a crash between a replay's send and
    // its ack leaves one), replayed too: dropped as processed.
    let errored = Outgoing {
        queue: "error".into(),
        envelope: failed,
        delay: Duration::ZERO,
    };
    f.transport.send(vec![errored]).await.expect("send");
    let again = f.errors.receive(16, Duration::ZERO).await.expect("receive");
    assert_eq!(again.len(), 1);
    f.errors.replay(&again[0]).await.expect("replay");
    let outcomes = f.drain().await;
    assert!(
        outcomes.iter().all(|o| *o == Outcome::Duplicate),
        "{outcomes:?}"
    );
    assert_eq!(f.paid("k1").await, 1, "processed once");
}

#[tokio::test]
async fn a_discarded_message_never_takes_effect_and_its_token_goes() {
    let f = fixture();
    let failed = f.fail("k2").await;
    assert_eq!(
        f.held(&failed).await,
        1,
        "the sender's record holds its token"
    );

    let got = f.errors.receive(16, Duration::ZERO).await.expect("receive");
    f.errors.discard(&got[0]).await.expect("discard");
    assert!(f.transport.peek("error").is_empty(), "acked there");
    assert_eq!(f.held(&failed).await, 0, "its token is consumed");

    // A copy still in flight, with the bank back up: dropped as processed.
    f.broken.store(false, Ordering::SeqCst);
    let mut copy = failed.clone();
    copy.headers.clear();
    f.transport
        .send(vec![Outgoing::new(copy)])
        .await
        .expect("send");
    assert_eq!(f.drain().await, vec![Outcome::Duplicate]);
    assert_eq!(f.paid("k2").await, 0, "never paid");
}

#[tokio::test]
async fn a_message_not_from_an_endpoint_is_not_replayed() {
    let f = fixture();
    let mut failed = f.fail("k3").await;
    failed.headers.remove(headers::ERROR_SOURCE_QUEUE);
    let got = f.errors.receive(16, Duration::ZERO).await.expect("receive");
    let mut stripped = got[0].clone();
    stripped.envelope = failed;
    let err = f
        .errors
        .replay(&stripped)
        .await
        .expect_err("no source queue");
    assert!(
        err.to_string().contains("exactly-error-source-queue"),
        "{err}"
    );
}
