//! Bad input never blocks other messages and never vanishes: it lands in the
//! error queue with a reason, after bounded retries where a retry could help.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use exactly::message::headers;
use exactly::{
    Endpoint, Envelope, HandlerError, MemoryStore, MemoryTransport, Message, MessageId, Outcome,
    Outgoing, RetryPolicy, Sender, Transport, handler_fn,
};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Work {
    key: String,
    mode: String,
}
impl Message for Work {
    const TYPE: &'static str = "Work";
}

struct Fixture {
    transport: Arc<MemoryTransport>,
    endpoint: Endpoint,
    sender: Sender,
}

fn fixture() -> Fixture {
    let store = Arc::new(MemoryStore::new());
    let transport = Arc::new(MemoryTransport::new());
    let endpoint = Endpoint::builder("work", store.clone(), transport.clone())
        .handler(handler_fn(
            |m: &Work| m.key.clone(),
            |done: &mut u32, m: Work, _ctx| match m.mode.as_str() {
                "panic" => panic!("the handler blew up"),
                "fail" => Err(HandlerError::failed("payment declined")),
                _ => {
                    *done += 1;
                    Ok(())
                }
            },
        ))
        .retry(RetryPolicy {
            delayed: 1,
            ..RetryPolicy::no_delays()
        })
        .build()
        .expect("valid endpoint");
    let sender = Sender::new("test", store, transport.clone()).expect("valid sender");
    Fixture {
        transport,
        endpoint,
        sender,
    }
}

impl Fixture {
    async fn send(&self, key: &str, mode: &str) {
        let work = Work {
            key: key.into(),
            mode: mode.into(),
        };
        self.sender.send("work", &work).await.expect("send");
    }

    /// Handles everything on the queue; returns the outcomes.
    async fn drain(&self) -> Vec<Outcome> {
        let mut outcomes = Vec::new();
        while let Some(d) = self.endpoint.receive_one().await.expect("receive") {
            outcomes.push(self.endpoint.handle_delivery(d).await);
        }
        outcomes
    }

    fn error_queue(&self) -> Vec<Envelope> {
        self.transport.peek("error")
    }

    /// Sends `bad` and a good message, handles both: the good one is
    /// processed, `bad` is the one message error-queued, with a reason
    /// containing `reason`. Returns its error-queued copy.
    async fn error_queued_beside_a_good_one(&self, bad: Outgoing, reason: &str) -> Envelope {
        self.transport.send(vec![bad]).await.expect("send");
        self.send("k1", "ok").await;
        let outcomes = self.drain().await;
        assert!(outcomes.contains(&Outcome::Processed), "{outcomes:?}");
        let mut dead = self.error_queue();
        assert_eq!(dead.len(), 1, "{outcomes:?}");
        let got = dead[0].header(headers::ERROR_REASON).expect("reason");
        assert!(got.contains(reason), "{got}");
        dead.remove(0)
    }
}

fn raw(message_type: &str, body: &'static [u8]) -> Outgoing {
    let id = MessageId::derived("bad-input", message_type);
    Outgoing::new(Envelope {
        id,
        message_type: message_type.into(),
        destination: "work".into(),
        headers: BTreeMap::new(),
        correlation_id: None,
        causation_id: None,
        reply_to: None,
        token: Some(exactly::DedupToken {
            record: format!("i/test/{id}"),
            id,
        }),
        content_type: "application/json".into(),
        body: Bytes::from_static(body),
    })
}

#[tokio::test]
async fn unknown_type_goes_straight_to_the_error_queue() {
    let f = fixture();
    let dead = f
        .error_queued_beside_a_good_one(raw("Mystery", b"{}"), "unknown message type \"Mystery\"")
        .await;
    assert_eq!(dead.header(headers::ERROR_SOURCE_QUEUE), Some("work"));
    assert_eq!(f.endpoint.stats().snapshot().error_queued, 1);
}

#[tokio::test]
async fn bytes_that_are_no_envelope_go_to_the_error_queue_intact() {
    let f = fixture();
    // What a transport hands over for another producer's bytes.
    let bad = Envelope::undecodable("work", "broker-id-1", &b"\x00garbage"[..], "EOF");
    let dead = f
        .error_queued_beside_a_good_one(
            Outgoing::new(bad.clone()),
            "could not read this message: not an envelope: EOF",
        )
        .await;
    assert_eq!(dead.body, bad.body, "the bytes, untouched");
    assert_eq!(dead.id, bad.id);
    assert!(f.transport.peek("work").is_empty(), "acked");
}

#[tokio::test]
async fn undecodable_body_goes_straight_to_the_error_queue() {
    let f = fixture();
    f.transport
        .send(vec![raw("Work", b"{\"key\": 7}")])
        .await
        .expect("send");
    let outcomes = f.drain().await;
    assert!(
        matches!(&outcomes[..], [Outcome::ErrorQueued { .. }]),
        "{outcomes:?}"
    );
    let reason = f.error_queue()[0]
        .header(headers::ERROR_REASON)
        .expect("reason")
        .to_owned();
    assert!(reason.starts_with("undecodable Work body"), "{reason}");
    assert!(reason.contains("invalid type"), "{reason}");
}

#[tokio::test]
async fn handler_panic_is_retried_then_error_queued_while_others_flow() {
    let f = fixture();
    f.send("bad", "panic").await;
    f.send("good", "ok").await;
    let outcomes = f.drain().await;
    // First delivery: immediate retries, then one delayed retry (a re-queued
    // copy), which fails again and goes to the error queue.
    assert!(outcomes.contains(&Outcome::Processed), "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .any(|o| matches!(o, Outcome::RetryScheduled { .. })),
        "{outcomes:?}"
    );
    let dead = f.error_queue();
    assert_eq!(dead.len(), 1, "{outcomes:?}");
    let e = &dead[0];
    assert!(
        e.header(headers::ERROR_REASON)
            .expect("reason")
            .contains("handler panicked: the handler blew up")
    );
    // (1 delayed retry + the first delivery) × (3 immediate retries + 1).
    assert_eq!(e.header(headers::ERROR_ATTEMPTS), Some("8"));
    assert!(e.header(headers::ERROR_FIRST_FAILURE).is_some());
    assert!(e.header(headers::ERROR_LAST_FAILURE).is_some());
}

#[tokio::test]
async fn handler_error_is_error_queued_with_its_reason() {
    let f = fixture();
    f.send("k", "fail").await;
    f.drain().await;
    let dead = f.error_queue();
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0]
            .header(headers::ERROR_REASON)
            .expect("reason")
            .contains("payment declined")
    );
    // The token stays until the message is replayed from the error queue.
    assert!(dead[0].token.is_some());
}

#[tokio::test]
async fn tokenless_message_without_inbox_is_refused_with_a_reason() {
    let f = fixture();
    let mut out = raw("Work", b"{\"key\":\"k\",\"mode\":\"ok\"}");
    out.envelope.token = None;
    f.transport.send(vec![out]).await.expect("send");
    f.drain().await;
    let reason = f.error_queue()[0]
        .header(headers::ERROR_REASON)
        .expect("reason")
        .to_owned();
    assert!(reason.contains("no DedupToken"), "{reason}");
}

#[tokio::test]
async fn foreign_token_record_and_path_traversal_keys_are_refused() {
    let f = fixture();
    let mut foreign = raw("Work", b"{\"key\":\"k\",\"mode\":\"ok\"}");
    foreign.envelope.token = Some(exactly::DedupToken {
        record: "secrets/other-tenant".into(),
        id: foreign.envelope.id,
    });
    let traversal = raw("Work", b"{\"key\":\"../../etc\",\"mode\":\"ok\"}");
    f.transport
        .send(vec![foreign, traversal])
        .await
        .expect("send");
    let outcomes = f.drain().await;
    assert_eq!(outcomes.len(), 2);
    let reasons: Vec<String> = f
        .error_queue()
        .iter()
        .filter_map(|e| e.header(headers::ERROR_REASON).map(str::to_owned))
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("not an exactly record key")),
        "{reasons:?}"
    );
    assert!(reasons.iter().any(|r| r.contains("'..'")), "{reasons:?}");
}
