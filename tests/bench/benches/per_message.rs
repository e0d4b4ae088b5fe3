//! Micro-benchmarks (criterion) of the CPU one message costs, with no I/O:
//! one message through `MemoryStore` + `MemoryTransport` in each guarantee,
//! on one thread (send, receive, handle, commit, ack: no task wake-ups), and
//! the record and envelope codecs the exactly-once path adds.
//!
//! `cargo bench -p exactly-bench --bench per_message`; under `cargo test`
//! each routine runs once, and a message that is not processed fails it.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BatchSize, Criterion, criterion_main};
use exactly::record::{EntityRecord, OutboxEntry};
use exactly::{
    Context, Endpoint, Env, Envelope, Guarantee, Handler, HandlerError, MemoryStore,
    MemoryTransport, Message, Outcome, Outgoing, Sender,
};
use serde::{Deserialize, Serialize};

/// Entities the messages are spread over, as in the workload benchmark.
const ENTITIES: u64 = 1000;

#[derive(Debug, Serialize, Deserialize)]
struct Tick {
    entity: String,
}

impl Message for Tick {
    const TYPE: &'static str = "Tick";
}

/// The trivial handler: counts the entity's messages.
struct Count;

impl Handler<Tick> for Count {
    type State = u64;

    fn entity_key(&self, m: &Tick) -> String {
        m.entity.clone()
    }

    async fn handle(&self, n: &mut u64, _: Tick, _: &mut Context) -> Result<(), HandlerError> {
        *n += 1;
        Ok(())
    }
}

/// One endpoint and its producer on a fresh in-memory store and queue.
struct Line {
    mode: Guarantee,
    transport: Arc<MemoryTransport>,
    sender: Sender,
    endpoint: Endpoint,
    sent: u64,
}

impl Line {
    fn new(mode: Guarantee) -> Self {
        // Atomic writes of several keys, as the workload benchmark's
        // memory scenario: the commit and the consume are one write.
        let store = Arc::new(MemoryStore::new().atomic_multi_key(true));
        let transport = Arc::new(MemoryTransport::new());
        let sender = Sender::new("producer", store.clone(), transport.clone()).expect("sender");
        let endpoint = Endpoint::builder("counter", store, transport.clone())
            .handler(Count)
            .guarantee(mode)
            .build()
            .expect("endpoint");
        Self {
            mode,
            transport,
            sender,
            endpoint,
            sent: 0,
        }
    }

    /// Sends one message (exactly-once: through the `Sender`, intent
    /// first; at-least-once: the same envelope without a token, straight
    /// to the queue), receives it and handles it to its ack.
    async fn one_message(&mut self) {
        let tick = Tick {
            entity: format!("entity-{}", self.sent % ENTITIES),
        };
        self.sent += 1;
        match self.mode {
            Guarantee::ExactlyOnce => {
                self.sender.send("counter", &tick).await.expect("send");
            }
            Guarantee::AtLeastOnce => {
                let mut envelope = self
                    .sender
                    .envelope(Env::system().new_id(), "counter", &tick)
                    .expect("envelope");
                envelope.token = None;
                exactly::Transport::send(&*self.transport, vec![Outgoing::new(envelope)])
                    .await
                    .expect("send");
            }
        }
        let delivery = self
            .endpoint
            .receive_one()
            .await
            .expect("receive")
            .expect("the message just sent");
        let outcome = self.endpoint.handle_delivery(delivery).await;
        assert_eq!(outcome, Outcome::Processed, "{:?}", self.mode);
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
}

/// One message end to end, each guarantee on its own fresh line per sample.
fn one_message(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("one message, in memory");
    for (name, mode) in [
        ("exactly-once", Guarantee::ExactlyOnce),
        ("at-least-once", Guarantee::AtLeastOnce),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut line = Line::new(mode);
                    let start = Instant::now();
                    for _ in 0..iters {
                        line.one_message().await;
                    }
                    start.elapsed()
                })
            })
        });
    }
    group.finish();
}

/// A `Tick` envelope as the `Sender` builds it, token included.
fn envelope() -> Envelope {
    let store = Arc::new(MemoryStore::new());
    let transport = Arc::new(MemoryTransport::new());
    let sender = Sender::new("producer", store, transport).expect("sender");
    let tick = Tick {
        entity: "entity-7".to_owned(),
    };
    sender
        .envelope(Env::system().new_id(), "counter", &tick)
        .expect("envelope")
}

/// The records a direct message touches: the entity's (state only) and
/// the intent's (its token, and the envelope to send again if need be).
fn records() -> (EntityRecord, EntityRecord) {
    let entity = EntityRecord {
        state: Some(Bytes::from_static(b"41")),
        ..EntityRecord::default()
    };
    let envelope = envelope();
    let id = envelope.id;
    let intent = EntityRecord {
        outbox: vec![OutboxEntry {
            incoming: id,
            committed_at: 1,
            messages: vec![Outgoing::new(envelope)],
            ..OutboxEntry::default()
        }],
        tokens: [id].into(),
        ..EntityRecord::default()
    };
    (entity, intent)
}

/// The codecs: what reading and writing each record and the envelope cost.
fn codecs(c: &mut Criterion) {
    let (entity, intent) = records();
    let envelope = envelope();
    let mut group = c.benchmark_group("codecs");
    for (name, record) in [("entity record", &entity), ("intent record", &intent)] {
        let bytes = record.encode();
        group.bench_function(format!("encode {name}"), |b| {
            b.iter(|| black_box(record).encode())
        });
        group.bench_function(format!("decode {name}"), |b| {
            b.iter(|| EntityRecord::decode("k", black_box(&bytes)).expect("decode"))
        });
    }
    let bytes = envelope.to_bytes().expect("encode");
    group.bench_function("encode envelope", |b| {
        b.iter(|| black_box(&envelope).to_bytes().expect("encode"))
    });
    group.bench_function("decode envelope", |b| {
        b.iter(|| Envelope::from_bytes(black_box(&bytes)).expect("decode"))
    });
    // The receiver's side of a direct message: read the intent record,
    // consume the token, write what is left.
    let intent_bytes = intent.encode();
    let id = intent.tokens.first().copied().expect("a token");
    group.bench_function("consume a token from an intent record", |b| {
        b.iter_batched(
            || intent_bytes.clone(),
            |bytes| {
                let mut record = EntityRecord::decode("k", &bytes).expect("decode");
                assert!(record.consume_token(id));
                record.encode()
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn benches() {
    let mut c = Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    one_message(&mut c);
    codecs(&mut c);
}

criterion_main!(benches);
