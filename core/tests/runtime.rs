//! The endpoint runtime with real concurrency and real time: N workers,
//! conflicting writers on hot entities, the sweeper, shutdown, and the
//! identity-inbox fallback with its documented limit.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use exactly::env::{ManualClock, ThreadRandom};
use exactly::fault::{FaultyTransport, TransportFaults};
use exactly::record::{EntityRecord, OutboxEntry};
use exactly::{
    CodecExt, Endpoint, EndpointBuilder, Env, Json, MemoryStore, MemoryTransport, Message, Outcome,
    Outgoing, Sender, Store, Transport, handler_fn,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

#[derive(Serialize, Deserialize, Clone)]
struct Add {
    account: String,
    n: u64,
}
impl Message for Add {
    const TYPE: &'static str = "Add";
}

#[derive(Serialize, Deserialize, Clone)]
struct Audit {
    account: String,
}
impl Message for Audit {
    const TYPE: &'static str = "Audit";
}

/// The ledger endpoint with default settings: adds `n` to the account's
/// total and sends an `Audit`.
fn ledger_builder(store: Arc<dyn Store>, transport: Arc<dyn Transport>) -> EndpointBuilder {
    Endpoint::builder("ledger", store, transport).handler(handler_fn(
        |m: &Add| m.account.clone(),
        |total: &mut u64, m: Add, ctx| {
            *total += m.n;
            ctx.send(
                "audit",
                &Audit {
                    account: m.account.clone(),
                },
            )?;
            Ok(())
        },
    ))
}

fn ledger(store: Arc<dyn Store>, transport: Arc<dyn Transport>) -> Endpoint {
    ledger_batched(store, transport, 1)
}

/// The ledger endpoint with workers that take up to `batch` deliveries.
fn ledger_batched(store: Arc<dyn Store>, transport: Arc<dyn Transport>, batch: usize) -> Endpoint {
    ledger_builder(store, transport)
        .batch(batch)
        .concurrency(8)
        .receive_wait(Duration::from_millis(20))
        .sweep(Duration::from_millis(100), Duration::from_millis(200))
        .build()
        .expect("valid endpoint")
}

fn audit(store: Arc<dyn Store>, transport: Arc<dyn Transport>) -> Endpoint {
    audit_batched(store, transport, 1)
}

/// The audit endpoint with workers that take up to `batch` deliveries.
fn audit_batched(store: Arc<dyn Store>, transport: Arc<dyn Transport>, batch: usize) -> Endpoint {
    Endpoint::builder("audit", store, transport)
        .batch(batch)
        .handler(handler_fn(
            |m: &Audit| m.account.clone(),
            |seen: &mut u64, _m: Audit, _ctx| {
                *seen += 1;
                Ok(())
            },
        ))
        .concurrency(4)
        .receive_wait(Duration::from_millis(20))
        .build()
        .expect("valid endpoint")
}

async fn state(store: &dyn Store, key: &str) -> Option<u64> {
    let v = store.get(key).await.expect("get")?;
    let record = EntityRecord::decode(key, &v.value).expect("record");
    for entry in &record.outbox {
        assert_left_done(store, key, entry).await;
    }
    Json.decode(record.state.as_deref()?).ok()
}

/// An entry stays in a record only as its worker left it, done: nothing
/// to send, its incoming token consumed.
async fn assert_left_done(store: &dyn Store, key: &str, entry: &OutboxEntry) {
    assert!(entry.messages.is_empty(), "{key} has messages to send");
    let Some(token) = &entry.incoming_token else {
        panic!("{key} has a pending outbox entry");
    };
    let holder = store.get(&token.record).await.expect("get");
    let held = holder.is_some_and(|v| {
        EntityRecord::decode(&token.record, &v.value)
            .expect("record")
            .tokens
            .contains(&token.id)
    });
    assert!(!held, "{key} has an entry whose token is not consumed");
}

/// `transport` with every call failing: a broker that is down.
fn broker_down(transport: Arc<dyn Transport>) -> Arc<FaultyTransport> {
    Arc::new(FaultyTransport::new(
        transport,
        TransportFaults {
            unavailable_ppm: 1_000_000,
            ..TransportFaults::default()
        },
        Arc::new(ThreadRandom),
    ))
}

/// Runs the endpoints until `done` holds or the deadline passes.
async fn run_until(
    endpoints: &[Endpoint],
    deadline: Duration,
    done: impl AsyncFn() -> bool,
) -> bool {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    for e in endpoints {
        let (e, mut rx) = (e.clone(), stop_rx.clone());
        tasks.spawn(async move {
            e.run(async move {
                let _ = rx.wait_for(|s| *s).await;
            })
            .await
        });
    }
    let start = tokio::time::Instant::now();
    let mut ok = false;
    while start.elapsed() < deadline {
        if done().await {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_workers_apply_each_message_once_hot_and_spread() {
    let stats = hot_and_spread(Arc::new(MemoryStore::new()), 1).await;
    assert_eq!(stats.batched, 0, "{stats:?}");
}

/// The same load on workers that take up to 16 deliveries at once: on a
/// store with atomic multi-key writes (one `put_all` per batch) and on one
/// without (one write per message).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batched_workers_apply_each_message_once_hot_and_spread() {
    for atomic in [true, false] {
        let store = Arc::new(MemoryStore::new().atomic_multi_key(atomic));
        let stats = hot_and_spread(store, 16).await;
        assert!(stats.batched > 0, "atomic {atomic}: {stats:?}");
    }
}

/// 200 `Add`s, half to one hot account, each sent under two ids and each
/// of those delivered twice, through the ledger and on to the audit
/// endpoint; checks every total and returns the ledger's counters.
async fn hot_and_spread(store: Arc<dyn Store>, batch: usize) -> exactly::StatsSnapshot {
    let transport: Arc<dyn Transport> = Arc::new(MemoryTransport::new());
    let sender = Sender::new("load", store.clone(), transport.clone()).expect("sender");
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for i in 0..200u64 {
        // Half the messages hit one hot account; the rest spread out.
        let account = if i % 2 == 0 {
            "hot".to_owned()
        } else {
            format!("acct-{i}")
        };
        *expected.entry(account.clone()).or_default() += i;
        let add = Add { account, n: i };
        sender.send("ledger", &add).await.expect("send");
        // Every message is also delivered twice.
        let copy = sender
            .envelope(
                exactly::MessageId::derived("copy", &i.to_string()),
                "ledger",
                &add,
            )
            .expect("envelope");
        sender
            .send_with_id(copy.id, "ledger", &add)
            .await
            .expect("send");
        transport
            .send(vec![Outgoing::new(copy)])
            .await
            .expect("duplicate");
    }
    let (ledger, audit) = (
        ledger_batched(store.clone(), transport.clone(), batch),
        audit_batched(store.clone(), transport.clone(), batch),
    );
    let done = run_until(
        &[ledger.clone(), audit.clone()],
        Duration::from_secs(20),
        async || audit.stats().snapshot().processed >= 400,
    )
    .await;
    assert!(done, "did not finish: {:?}", ledger.stats().snapshot());

    // Each Add was sent twice under two ids (so counted twice) and each of
    // those was delivered twice (dropped once).
    for (account, n) in &expected {
        let total = state(store.as_ref(), &format!("e/ledger/{account}")).await;
        assert_eq!(total, Some(2 * n), "{account}");
    }
    let hot_audits = state(store.as_ref(), "e/audit/hot").await;
    assert_eq!(hot_audits, Some(200));
    let stats = ledger.stats().snapshot();
    assert_eq!(stats.processed, 400, "{stats:?}");
    assert_eq!(stats.duplicates + stats.recovered, 200, "{stats:?}");
    assert!(
        stats.conflicts > 0,
        "the hot entity should see write races: {stats:?}"
    );
    stats
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweeper_sends_an_intent_stranded_between_commit_and_send() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let transport: Arc<dyn Transport> = Arc::new(MemoryTransport::new());
    // The sender's broker connection is down: the intent commits, the send fails.
    let down = broker_down(transport.clone());
    let sender = Sender::new("web", store.clone(), down).expect("sender");
    let id = sender
        .send(
            "ledger",
            &Add {
                account: "a".into(),
                n: 5,
            },
        )
        .await
        .expect("committed");
    assert_eq!(
        transport
            .receive("ledger", 1, Duration::ZERO)
            .await
            .expect("rx")
            .len(),
        0
    );

    // The sender's own sweeper (as the web front end would run it) sends it.
    let sweeper = Sender::new("web", store.clone(), transport.clone())
        .expect("sender")
        .sweeper()
        .min_age(Duration::ZERO);
    assert_eq!(sweeper.sweep_once().await.expect("sweep"), 1);
    let ledger = ledger(store.clone(), transport.clone());
    let got = ledger
        .receive_one()
        .await
        .expect("rx")
        .expect("the stranded message");
    assert_eq!(got.envelope.id, id);
    assert_eq!(ledger.handle_delivery(got).await, Outcome::Processed);
    // Its token was consumed: the intent record is settled.
    let intent = store
        .get(&format!("i/web/{id}"))
        .await
        .expect("get")
        .expect("intent");
    assert!(
        EntityRecord::decode("i", &intent.value)
            .expect("record")
            .is_settled()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entity_entry_left_by_a_crash_is_finished_by_the_endpoint_sweeper_within_its_bound() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let transport: Arc<dyn Transport> = Arc::new(MemoryTransport::new());
    let sender = Sender::new("web", store.clone(), transport.clone()).expect("sender");
    sender
        .send(
            "ledger",
            &Add {
                account: "a".into(),
                n: 1,
            },
        )
        .await
        .expect("send");
    // Commit on a ledger whose transport is down: the Audit message stays in
    // the outbox entry, and the delivery goes back to the queue for later.
    let down: Arc<dyn Transport> = Arc::new(FaultyTransport::new(
        transport.clone(),
        TransportFaults {
            unavailable_ppm: 1_000_000,
            ..TransportFaults::default()
        },
        Arc::new(ThreadRandom),
    ));
    let broken = ledger(store.clone(), down);
    let d = broken.receive_one().await.expect("rx").expect("msg");
    let outcome = broken.handle_delivery(d).await;
    assert!(matches!(outcome, Outcome::Released { .. }), "{outcome:?}");
    let raw = store.get("e/ledger/a").await.expect("get").expect("record");
    assert_eq!(
        EntityRecord::decode("k", &raw.value)
            .expect("rec")
            .outbox
            .len(),
        1
    );
    // Drop the returned delivery, so only the sweeper can finish the entry.
    let (healthy, audit) = (
        ledger(store.clone(), transport.clone()),
        audit(store.clone(), transport.clone()),
    );
    let _ = transport
        .receive("ledger", 10, Duration::from_secs(2))
        .await;
    let finished = run_until(
        &[healthy.clone(), audit.clone()],
        Duration::from_secs(5),
        async || audit.stats().snapshot().processed == 1,
    )
    .await;
    assert!(
        finished,
        "sweeper did not finish within 5 s: {:?}",
        healthy.stats().snapshot()
    );
    assert_eq!(healthy.stats().snapshot().swept, 1);
}

#[tokio::test]
async fn identity_inbox_dedups_within_its_window_and_not_after() {
    let clock = Arc::new(ManualClock::starting_at(1_000_000));
    let env = Env::seeded(9, clock.clone());
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let transport = Arc::new(MemoryTransport::with_clock(clock.clone()));
    let endpoint = Endpoint::builder("ledger", store.clone(), transport.clone())
        .handler(handler_fn(
            |m: &Add| m.account.clone(),
            |total: &mut u64, m: Add, _ctx| {
                *total += m.n;
                Ok(())
            },
        ))
        .inbox_retention(Duration::from_secs(60))
        .env(env)
        .build()
        .expect("endpoint");
    // A producer that cannot create tokens.
    let sender = Sender::new("legacy", store.clone(), transport.clone()).expect("sender");
    let mut envelope = sender
        .envelope(
            exactly::MessageId::derived("legacy", "1"),
            "ledger",
            &Add {
                account: "a".into(),
                n: 7,
            },
        )
        .expect("envelope");
    envelope.token = None;
    let deliver = async |expected: Outcome| {
        transport
            .send(vec![Outgoing::new(envelope.clone())])
            .await
            .expect("send");
        let d = endpoint.receive_one().await.expect("rx").expect("msg");
        assert_eq!(endpoint.handle_delivery(d).await, expected);
    };
    deliver(Outcome::Processed).await;
    clock.advance(Duration::from_secs(59));
    deliver(Outcome::Duplicate).await;
    // A copy that outlives the retention window is processed again: the
    // documented reason token dedup is the default.
    clock.advance(Duration::from_secs(62));
    // Another message prunes the inbox past its window.
    let mut other = envelope.clone();
    other.id = exactly::MessageId::derived("legacy", "2");
    transport
        .send(vec![Outgoing::new(other)])
        .await
        .expect("send");
    let d = endpoint.receive_one().await.expect("rx").expect("msg");
    assert_eq!(endpoint.handle_delivery(d).await, Outcome::Processed);
    deliver(Outcome::Processed).await;
    assert_eq!(state(store.as_ref(), "e/ledger/a").await, Some(21));
}

#[tokio::test]
async fn the_at_least_once_baseline_processes_a_duplicate_twice() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let transport = Arc::new(MemoryTransport::new());
    let endpoint = ledger_builder(store.clone(), transport.clone())
        .guarantee(exactly::Guarantee::AtLeastOnce)
        .build()
        .expect("endpoint");
    let sender = Sender::new("s", store.clone(), transport.clone()).expect("sender");
    sender
        .send(
            "ledger",
            &Add {
                account: "a".into(),
                n: 5,
            },
        )
        .await
        .expect("send");
    let d = endpoint.receive_one().await.expect("rx").expect("msg");
    let copy = d.clone();
    assert_eq!(endpoint.handle_delivery(d).await, Outcome::Processed);
    assert_eq!(endpoint.handle_delivery(copy).await, Outcome::Processed);
    let v = store.get("e/ledger/a").await.expect("get").expect("record");
    let record = EntityRecord::decode("k", &v.value).expect("record");
    assert_eq!(
        Json.decode::<u64>(record.state.as_deref().expect("state"))
            .expect("n"),
        10
    );
    assert!(
        record.outbox.is_empty() && record.tokens.is_empty(),
        "no bookkeeping"
    );
    let audits = transport.peek("audit");
    assert_eq!(audits.len(), 2);
    assert!(audits.iter().all(|e| e.token.is_none()));
}

/// Rewrites a record once, at the second time the delivery reaches
/// `Step::ConsumeToken` (between reading the holder and writing it back),
/// so that the finisher's conditional write loses the race.
struct RaceOnConsume {
    store: Arc<dyn Store>,
    holder: String,
    seen: std::sync::atomic::AtomicU32,
}

impl exactly::Probe for RaceOnConsume {
    fn at(&self, step: exactly::Step) -> futures::future::BoxFuture<'_, ()> {
        Box::pin(async move {
            if step != exactly::Step::ConsumeToken
                || self.seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) != 1
            {
                return;
            }
            let current = self
                .store
                .get(&self.holder)
                .await
                .expect("get")
                .expect("holder");
            self.store
                .put(
                    &self.holder,
                    current.value,
                    exactly::Precondition::Matches(current.version),
                )
                .await
                .expect("rewrite");
        })
    }
}

#[tokio::test]
async fn a_lost_bookkeeping_race_is_counted_apart_from_commit_conflicts() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let transport = Arc::new(MemoryTransport::new());
    let endpoint = audit(store.clone(), transport.clone());
    let sender = Sender::new("s", store.clone(), transport.clone()).expect("sender");
    sender
        .send(
            "audit",
            &Audit {
                account: "a".into(),
            },
        )
        .await
        .expect("send");
    let d = endpoint.receive_one().await.expect("rx").expect("msg");
    let holder = d.envelope.token.clone().expect("token").record;
    let probe = RaceOnConsume {
        store: store.clone(),
        holder: holder.clone(),
        seen: 0.into(),
    };
    assert_eq!(
        endpoint.handle_delivery_probed(d, &probe).await,
        Outcome::Processed
    );
    let stats = endpoint.stats().snapshot();
    assert_eq!(stats.bookkeeping_conflicts, 1, "{stats:?}");
    assert_eq!(stats.conflicts, 0, "{stats:?}");
    assert_eq!(state(store.as_ref(), "e/audit/a").await, Some(1));
    let v = store.get(&holder).await.expect("get").expect("holder");
    let record = EntityRecord::decode(&holder, &v.value).expect("record");
    assert!(
        record.tokens.is_empty(),
        "the retried consume took the token"
    );
}

#[tokio::test]
async fn the_sender_sweeper_deletes_processed_intents_after_their_retention_only() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let transport = Arc::new(MemoryTransport::new());
    let clock = Arc::new(ManualClock::starting_at(1_700_000_000_000));
    let sender = Sender::new("s", store.clone(), transport.clone())
        .expect("sender")
        .env(Env::seeded(7, clock.clone()))
        .retention(Duration::from_secs(3600));
    let endpoint = audit(store.clone(), transport.clone());
    let account = |name: &str| Audit {
        account: name.into(),
    };
    let processed = sender.send("audit", &account("a")).await.expect("send");
    let pending = sender.send("audit", &account("b")).await.expect("send");
    let d = endpoint.receive_one().await.expect("rx").expect("msg");
    assert_eq!(d.envelope.id, processed, "FIFO transport");
    assert_eq!(endpoint.handle_delivery(d).await, Outcome::Processed);

    let sweeper = sender.sweeper();
    let exists = async |id| {
        store
            .get(&sender.record_key(id))
            .await
            .expect("get")
            .is_some()
    };
    clock.advance(Duration::from_secs(3599));
    sweeper.sweep_once().await.expect("sweep");
    assert!(exists(processed).await, "kept within the retention");

    clock.advance(Duration::from_secs(2));
    sweeper.sweep_once().await.expect("sweep");
    assert!(!exists(processed).await, "processed and past retention");
    assert!(exists(pending).await, "its token is not consumed yet");
    assert_eq!(sweeper.stats().snapshot().expired, 1);

    // The pending message is still processed exactly once.
    let d = endpoint.receive_one().await.expect("rx").expect("msg");
    assert_eq!(d.envelope.id, pending);
    assert_eq!(endpoint.handle_delivery(d).await, Outcome::Processed);
    assert_eq!(state(store.as_ref(), "e/audit/b").await, Some(1));
    sweeper.sweep_once().await.expect("sweep");
    assert!(!exists(pending).await, "now processed, and it is as old");
}

#[tokio::test]
async fn a_sent_intent_is_left_to_the_receiver_and_swept_without_a_resend() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let transport = Arc::new(MemoryTransport::new());
    let sender = Sender::new("s", store.clone(), transport.clone()).expect("sender");
    let endpoint = audit(store.clone(), transport.clone());
    let account = |name: &str| Audit {
        account: name.into(),
    };
    let intent = async |id| {
        let key = sender.record_key(id);
        let v = store.get(&key).await.expect("get").expect("intent record");
        EntityRecord::decode(&key, &v.value).expect("record")
    };

    // The sender writes once: its entry stays, for the receiver's consume.
    let a = sender.send("audit", &account("a")).await.expect("send");
    let record = intent(a).await;
    assert_eq!((record.outbox.len(), record.tokens.len()), (1, 1));
    let d = endpoint.receive_one().await.expect("rx").expect("msg");
    assert_eq!(endpoint.handle_delivery(d).await, Outcome::Processed);
    assert!(
        intent(a).await.is_settled(),
        "the consume dropped the entry"
    );

    // Not consumed: the sender's own sweeper leaves the entry, sent, for
    // the consume while it is younger than the left age, then removes it
    // and sends nothing.
    let b = sender.send("audit", &account("b")).await.expect("send");
    let swept = sender.sweeper().min_age(Duration::ZERO);
    assert_eq!(swept.sweep_once().await.expect("sweep"), 0);
    assert_eq!(intent(b).await.outbox.len(), 1, "left for the consume");
    let swept = swept.left_age(Duration::ZERO);
    assert_eq!(swept.sweep_once().await.expect("sweep"), 1);
    assert_eq!(transport.depth("audit"), 1, "no resend");
    let record = intent(b).await;
    assert!(record.outbox.is_empty() && record.tokens.contains(&b));

    // A sweeper that did not send it (another process) sends it once more.
    let c = sender.send("audit", &account("c")).await.expect("send");
    let stranger = Sender::new("s", store.clone(), transport.clone()).expect("sender");
    let swept = stranger.sweeper().min_age(Duration::ZERO);
    assert_eq!(swept.sweep_once().await.expect("sweep"), 1);
    assert_eq!(transport.depth("audit"), 3, "b, c and c again");

    let mut outcomes = Vec::new();
    while let Some(d) = endpoint.receive_one().await.expect("rx") {
        outcomes.push(endpoint.handle_delivery(d).await);
    }
    outcomes.sort_by_key(|o| format!("{o:?}"));
    assert_eq!(
        outcomes,
        [Outcome::Duplicate, Outcome::Processed, Outcome::Processed]
    );
    for (name, id) in [("a", a), ("b", b), ("c", c)] {
        assert_eq!(
            state(store.as_ref(), &format!("e/audit/{name}")).await,
            Some(1)
        );
        assert!(intent(id).await.is_settled(), "{name}'s intent settled");
    }
}

/// `send_all` commits every intent in one `put_all` and sends in one batch;
/// sending the same envelopes again commits and delivers nothing new, on a
/// store with atomic multi-key writes and on one without. An envelope
/// whose token is not the sender's own is refused before anything is
/// written.
#[tokio::test]
async fn send_all_sends_each_once_and_a_resend_of_the_list_is_idempotent() {
    for atomic in [true, false] {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new().atomic_multi_key(atomic));
        let transport = Arc::new(MemoryTransport::new());
        let sender = Sender::new("s", store.clone(), transport.clone()).expect("sender");
        let endpoint = audit_batched(store.clone(), transport.clone(), 16);
        let audits: Vec<Audit> = (0..20)
            .map(|i| Audit {
                account: format!("a{}", i % 5),
            })
            .collect();
        let ids = sender.send_all("audit", &audits).await.expect("send_all");
        assert_eq!(ids.len(), 20);
        assert_eq!(transport.depth("audit"), 20, "atomic {atomic}");
        let again: Vec<_> = ids
            .iter()
            .zip(&audits)
            .map(|(id, m)| sender.envelope(*id, "audit", m).expect("envelope"))
            .collect();
        let mut foreign = again[0].clone();
        if let Some(token) = foreign.token.as_mut() {
            token.record = "i/other/x".into();
        }
        let refused = sender.send_envelopes(vec![foreign]).await;
        assert!(
            matches!(refused, Err(exactly::SendError::InvalidName(_))),
            "{refused:?}"
        );
        assert_eq!(sender.send_envelopes(again).await.expect("resend"), ids);

        let mut outcomes = Vec::new();
        while let Ok(got) = transport.receive("audit", 16, Duration::ZERO).await {
            if got.is_empty() {
                break;
            }
            outcomes.extend(endpoint.handle_batch(got).await);
        }
        let processed = outcomes.iter().filter(|o| **o == Outcome::Processed);
        assert_eq!(processed.count(), 20, "atomic {atomic}: {outcomes:?}");
        for i in 0..5 {
            let seen = state(store.as_ref(), &format!("e/audit/a{i}")).await;
            assert_eq!(seen, Some(4), "atomic {atomic}");
        }
        for id in ids {
            let key = sender.record_key(id);
            let v = store.get(&key).await.expect("get").expect("intent");
            let record = EntityRecord::decode(&key, &v.value).expect("record");
            assert!(record.is_settled(), "{key} settled");
        }
    }
}

/// With `put_all`, the ledger's commit consumes the incoming token and its
/// entry only sends the `Audit`: the endpoint sends it and leaves the entry
/// for the audit's consume to drop. A redelivery to the same endpoint (it
/// remembers the send) is done without sending again; one to an endpoint
/// without that memory (another process) sends once more and removes the
/// entry; either way the audit is applied once.
#[tokio::test]
async fn a_sent_entry_is_left_for_the_consume_and_not_sent_again_by_its_endpoint() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new().atomic_multi_key(true));
    let transport = Arc::new(MemoryTransport::new());
    let sender = Sender::new("s", store.clone(), transport.clone()).expect("sender");
    let (mine, audit) = (
        ledger(store.clone(), transport.clone()),
        audit(store.clone(), transport.clone()),
    );
    let record = async |key: &str| {
        let v = store.get(key).await.expect("get").expect("record");
        EntityRecord::decode(key, &v.value).expect("record")
    };
    let add = |account: &str| Add {
        account: account.into(),
        n: 1,
    };
    let receive = async |queue: &str| {
        let got = transport.receive(queue, 1, Duration::ZERO).await;
        got.expect("receive").pop().expect("a message")
    };

    // a: the entry stays after the send; the audit's consume drops it.
    sender.send("ledger", &add("a")).await.expect("send");
    let d = receive("ledger").await;
    let copy = d.envelope.clone();
    assert_eq!(mine.handle_delivery(d).await, Outcome::Processed);
    assert_eq!(record("e/ledger/a").await.outbox.len(), 1, "left");
    assert_eq!(transport.depth("audit"), 1);
    // A redelivery to the same endpoint: a duplicate, nothing sent again.
    transport
        .send(vec![Outgoing::new(copy.clone())])
        .await
        .expect("redeliver");
    let d = receive("ledger").await;
    assert_eq!(mine.handle_delivery(d).await, Outcome::Duplicate);
    assert_eq!(transport.depth("audit"), 1, "no resend");
    let d = receive("audit").await;
    assert_eq!(audit.handle_delivery(d).await, Outcome::Processed);
    assert!(
        record("e/ledger/a").await.is_settled(),
        "the consume dropped it"
    );

    // b: a redelivery to an endpoint without the memory sends once more
    // and removes the entry; the copy is dropped.
    sender.send("ledger", &add("b")).await.expect("send");
    let d = receive("ledger").await;
    let copy = d.envelope.clone();
    assert_eq!(mine.handle_delivery(d).await, Outcome::Processed);
    // Another ledger endpoint: its own, empty memory, as another process.
    let stranger = ledger(store.clone(), transport.clone());
    transport
        .send(vec![Outgoing::new(copy)])
        .await
        .expect("redeliver");
    let d = receive("ledger").await;
    assert_eq!(stranger.handle_delivery(d).await, Outcome::Recovered);
    assert_eq!(transport.depth("audit"), 2, "sent once more");
    assert!(record("e/ledger/b").await.outbox.is_empty(), "removed");
    let mut outcomes = Vec::new();
    while let Ok(mut got) = transport.receive("audit", 1, Duration::ZERO).await {
        let Some(d) = got.pop() else { break };
        outcomes.push(audit.handle_delivery(d).await);
    }
    outcomes.sort_by_key(|o| format!("{o:?}"));
    assert_eq!(outcomes, [Outcome::Duplicate, Outcome::Processed]);
    assert_eq!(state(store.as_ref(), "e/audit/a").await, Some(1));
    assert_eq!(state(store.as_ref(), "e/audit/b").await, Some(1));
    assert!(record("e/ledger/b").await.is_settled());
}

/// On a store without `put_all` the worker consumes the incoming token
/// itself, starting from the holder as read in step 2, and leaves its
/// entry, done, instead of removing it: two writes per message. The
/// entry is garbage: a redelivery is a duplicate, the next commit to the
/// record drops it, and so does the endpoint's sweeper.
#[tokio::test]
async fn without_put_all_a_done_entry_is_left_and_dropped_by_the_next_commit() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let transport = Arc::new(MemoryTransport::new());
    let sender = Sender::new("s", store.clone(), transport.clone()).expect("sender");
    let endpoint = audit(store.clone(), transport.clone());
    let account = Audit {
        account: "a".into(),
    };
    let record = async |key: &str| {
        let v = store.get(key).await.expect("get").expect("record");
        EntityRecord::decode(key, &v.value).expect("record")
    };
    let handle = async || {
        let d = endpoint
            .receive_one()
            .await
            .expect("rx")
            .expect("a message");
        let copy = d.envelope.clone();
        (endpoint.handle_delivery(d).await, copy)
    };

    let first = sender.send("audit", &account).await.expect("send");
    let (outcome, copy) = handle().await;
    assert_eq!(outcome, Outcome::Processed);
    let entity = record("e/audit/a").await;
    assert_eq!(entity.outbox.len(), 1, "left");
    assert_eq!(entity.outbox[0].incoming, first);
    assert!(
        record(&sender.record_key(first)).await.is_settled(),
        "the token was consumed"
    );

    transport
        .send(vec![Outgoing::new(copy)])
        .await
        .expect("redeliver");
    assert_eq!(handle().await.0, Outcome::Duplicate);

    let second = sender.send("audit", &account).await.expect("send");
    assert_eq!(handle().await.0, Outcome::Processed);
    let entity = record("e/audit/a").await;
    let left: Vec<_> = entity.outbox.iter().map(|e| e.incoming).collect();
    assert_eq!(left, [second], "the commit dropped the first entry");
    assert_eq!(state(store.as_ref(), "e/audit/a").await, Some(2));

    // The sweeper leaves it for a later commit while it is younger than
    // the left age (60 s), then removes it.
    let swept = endpoint.sweeper().min_age(Duration::ZERO);
    assert_eq!(swept.sweep_once().await.expect("sweep"), 0);
    assert_eq!(record("e/audit/a").await.outbox.len(), 1, "not yet");
    let swept = swept.left_age(Duration::ZERO);
    assert_eq!(swept.sweep_once().await.expect("sweep"), 1);
    assert!(record("e/audit/a").await.outbox.is_empty(), "swept");
    assert_eq!(transport.depth("audit"), 0, "nothing sent again");
    assert_eq!(
        endpoint.stats().snapshot().swept,
        0,
        "garbage, not a recovery"
    );
}

/// A bounded sweeper reads at most its budget of records per pass and goes
/// on where the last pass stopped: five stranded intents take three passes
/// of two, and the fourth starts over.
#[tokio::test]
async fn a_bounded_sweeper_goes_round_the_records_a_budget_at_a_time() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let transport = Arc::new(MemoryTransport::new());
    let down = broker_down(transport.clone());
    let stranded = Sender::new("web", store.clone(), down).expect("sender");
    for n in 0..5 {
        let add = Add {
            account: format!("a{n}"),
            n: 1,
        };
        stranded.send("ledger", &add).await.expect("committed");
    }
    assert_eq!(transport.depth("ledger"), 0, "the broker was down");

    let sweeper = Sender::new("web", store.clone(), transport.clone())
        .expect("sender")
        .sweeper()
        .min_age(Duration::ZERO)
        // No recent window (zero turns it off): the round alone.
        .recent(Duration::ZERO)
        .records_per_pass(2);
    let mut finished = Vec::new();
    for _ in 0..4 {
        finished.push(sweeper.sweep_once().await.expect("sweep"));
    }
    assert_eq!(finished, [2, 2, 1, 0]);
    assert_eq!(transport.depth("ledger"), 5, "each sent once");
}

/// A `Sender`'s bounded sweeper reads the intents of the last minutes
/// first: one stranded a moment ago is sent in the next pass even when
/// the round of older records has far to go.
#[tokio::test]
async fn a_bounded_intent_sweeper_finds_a_fresh_stranded_intent_first() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let transport = Arc::new(MemoryTransport::new());
    let clock = Arc::new(ManualClock::starting_at(1_700_000_000_000));
    let env = Env::seeded(11, clock.clone());
    let stranded = Sender::new("web", store.clone(), broker_down(transport.clone()))
        .expect("sender")
        .env(env.clone());
    let add = |n: u64| Add {
        account: format!("a{n}"),
        n,
    };
    for n in 0..4 {
        stranded.send("ledger", &add(n)).await.expect("committed");
    }
    clock.advance(Duration::from_secs(3600));
    let fresh = stranded.send("ledger", &add(9)).await.expect("committed");
    clock.advance(Duration::from_secs(10));

    let sweeper = Sender::new("web", store.clone(), transport.clone())
        .expect("sender")
        .env(env)
        .sweeper()
        .records_per_pass(1);
    // The fresh intent (recent), and the oldest one (the round's first).
    assert_eq!(sweeper.sweep_once().await.expect("sweep"), 2);
    let sent = transport
        .receive("ledger", 10, Duration::ZERO)
        .await
        .expect("receive");
    let ids: Vec<_> = sent.iter().map(|d| d.envelope.id).collect();
    assert!(ids.contains(&fresh), "the fresh intent was sent first");
    assert_eq!(ids.len(), 2);
}
