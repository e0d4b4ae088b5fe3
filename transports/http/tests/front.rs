//! The idempotent front end against real HTTP: two axum instances on
//! loopback sharing one store, clients retrying through reqwest.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use exactly::env::ThreadRandom;
use exactly::fault::{FaultyTransport, TransportFaults};
use exactly::{Env, MemoryStore, MemoryTransport, Message, Store, Transport};
use exactly_http::{
    Answer, FrontConfig, FrontError, HeaderPrincipal, Intent, IntentFront, PrincipalSource,
};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
struct OrderRequest {
    item: String,
    quantity: u32,
}

#[derive(Serialize, Deserialize)]
struct PlaceOrder {
    item: String,
    quantity: u32,
}
impl Message for PlaceOrder {
    const TYPE: &'static str = "PlaceOrder";
}

async fn place(
    State(front): State<IntentFront>,
    intent: Intent<OrderRequest>,
) -> Result<Answer, FrontError> {
    let order = PlaceOrder {
        item: intent.body.item.clone(),
        quantity: intent.body.quantity,
    };
    front.submit(&intent, "orders", &order).await
}

/// Serves a front end on an ephemeral loopback port; returns its base URL.
async fn serve(front: IntentFront) -> String {
    let app: Router = Router::new()
        .route("/orders", post(place))
        .with_state(front.clone())
        .merge(front.status_routes());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

fn front_with(
    store: Arc<dyn Store>,
    transport: Arc<dyn Transport>,
    config: FrontConfig,
    principals: Arc<dyn PrincipalSource>,
) -> IntentFront {
    IntentFront::with(store, transport, config, principals, Env::system())
}

async fn post_order(
    client: &reqwest::Client,
    base: &str,
    key: Option<&str>,
    body: &str,
) -> (u16, String) {
    let mut request = client
        .post(format!("{base}/orders"))
        .header("content-type", "application/json")
        .header("x-api-key", "tenant-a")
        .body(body.to_owned());
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retries_across_two_fronts_make_exactly_one_message_per_key() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let transport = Arc::new(MemoryTransport::new());
    let principals: Arc<dyn PrincipalSource> = Arc::new(HeaderPrincipal("x-api-key".into()));
    let bases = [
        serve(front_with(
            store.clone(),
            transport.clone(),
            FrontConfig::default(),
            principals.clone(),
        ))
        .await,
        serve(front_with(
            store.clone(),
            transport.clone(),
            FrontConfig::default(),
            principals,
        ))
        .await,
    ];
    let client = reqwest::Client::new();
    let mut tasks = Vec::new();
    for key in 0..20 {
        for attempt in 0..10 {
            let (client, base) = (client.clone(), bases[attempt % 2].clone());
            tasks.push(tokio::spawn(async move {
                let body = format!(r#"{{"item":"gift-{key}","quantity":1}}"#);
                let answer = post_order(&client, &base, Some(&format!("key-{key}")), &body).await;
                (key, answer)
            }));
        }
    }
    let mut answers: BTreeMap<u32, BTreeSet<(u16, String)>> = BTreeMap::new();
    for task in tasks {
        let (key, answer) = task.await.expect("task");
        answers.entry(key).or_default().insert(answer);
    }
    for (key, distinct) in &answers {
        assert_eq!(distinct.len(), 1, "key {key}: answers differ: {distinct:?}");
        let (status, body) = distinct.iter().next().expect("an answer");
        assert_eq!(*status, 202, "{body}");
        assert!(body.contains("\"status_url\":\"/intents/"), "{body}");
    }
    // One message per key. A retry that finds the first request's intent
    // not yet dispatched makes sure it is, so a key's message may be queued
    // twice: the same envelope, same id and token, which the receiver's
    // dedup check drops (transport duplicates are allowed; new ids are not).
    let queued = transport.peek("orders");
    let mut by_id: BTreeMap<_, Vec<_>> = BTreeMap::new();
    for envelope in &queued {
        by_id.entry(envelope.id).or_default().push(envelope);
    }
    assert_eq!(by_id.len(), 20, "one message per key");
    for copies in by_id.values() {
        assert!(
            copies.iter().all(|c| *c == copies[0]),
            "copies of one message differ: {copies:?}"
        );
        assert!(copies[0].token.is_some(), "dedup token carried");
    }

    // Same key, different body: 422 with a clear JSON error.
    let (status, body) = post_order(
        &client,
        &bases[1],
        Some("key-3"),
        r#"{"item":"other","quantity":9}"#,
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("idempotency_key_reused"), "{body}");
    assert_eq!(
        transport.depth("orders"),
        queued.len(),
        "a 422 sends nothing"
    );
}

#[tokio::test]
async fn bad_requests_get_typed_answers() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let transport = Arc::new(MemoryTransport::new());
    let config = FrontConfig {
        max_body_bytes: 256,
        ..FrontConfig::default()
    };
    let base = serve(front_with(
        store,
        transport.clone(),
        config,
        Arc::new(exactly_http::Anonymous),
    ))
    .await;
    let client = reqwest::Client::new();
    let ok = r#"{"item":"gift","quantity":1}"#;

    let (status, body) = post_order(&client, &base, None, ok).await;
    assert_eq!(
        (status, body.contains("missing_idempotency_key")),
        (400, true),
        "{body}"
    );

    let big = format!(r#"{{"item":"{}","quantity":1}}"#, "x".repeat(300));
    let (status, body) = post_order(&client, &base, Some("k-big"), &big).await;
    assert_eq!(
        (status, body.contains("body_too_large")),
        (413, true),
        "{body}"
    );

    let response = client
        .post(format!("{base}/orders"))
        .header("content-type", "text/plain")
        .header("idempotency-key", "k-text")
        .body(ok)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 415);

    let (status, body) = post_order(
        &client,
        &base,
        Some("k-bad"),
        r#"{"item":"gift","quantity":"many"}"#,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let error: serde_json::Value = serde_json::from_str(&body).expect("json error");
    assert_eq!(error["error"], "malformed_json");
    assert_eq!(error["field"], "quantity", "{body}");

    let (status, body) = post_order(&client, &base, Some("../escape"), ok).await;
    assert_eq!(
        (status, body.contains("invalid_key")),
        (400, true),
        "{body}"
    );
    assert_eq!(transport.depth("orders"), 0, "nothing bad was committed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_intent_stranded_by_a_crash_is_sent_by_the_sweeper_within_five_seconds() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let transport = Arc::new(MemoryTransport::new());
    // This front commits, then its broker connection fails before the send:
    // as far as the queue can tell, the process died between the two.
    let down: Arc<dyn Transport> = Arc::new(FaultyTransport::new(
        transport.clone(),
        TransportFaults {
            unavailable_ppm: 1_000_000,
            ..TransportFaults::default()
        },
        Arc::new(ThreadRandom),
    ));
    let anonymous: Arc<dyn PrincipalSource> = Arc::new(exactly_http::Anonymous);
    let crashed = serve(front_with(
        store.clone(),
        down,
        FrontConfig::default(),
        anonymous.clone(),
    ))
    .await;
    let client = reqwest::Client::new();
    let (status, _) = post_order(
        &client,
        &crashed,
        Some("k1"),
        r#"{"item":"gift","quantity":1}"#,
    )
    .await;
    assert_eq!(status, 202, "the intent is committed, so it is accepted");
    assert_eq!(transport.depth("orders"), 0);

    // A healthy instance's background sweeper (default settings) sends it.
    let healthy = front_with(store, transport.clone(), FrontConfig::default(), anonymous);
    let started = Instant::now();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let runner = tokio::spawn(async move {
        healthy
            .run(async {
                let _ = stop_rx.await;
            })
            .await
    });
    while transport.depth("orders") == 0 && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop_tx.send(());
    runner.await.expect("runner");
    let waited = started.elapsed();
    assert_eq!(transport.depth("orders"), 1, "the stranded intent was sent");
    assert!(waited <= Duration::from_secs(5), "took {waited:?}");
}

#[tokio::test]
async fn status_is_per_principal_and_expired_intents_are_removed() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let transport = Arc::new(MemoryTransport::new());
    let config = FrontConfig {
        retention: Duration::ZERO,
        ..FrontConfig::default()
    };
    let front = front_with(
        store.clone(),
        transport.clone(),
        config,
        Arc::new(HeaderPrincipal("x-api-key".into())),
    );
    let base = serve(front.clone()).await;
    let client = reqwest::Client::new();
    let (_, body) = post_order(
        &client,
        &base,
        Some("k1"),
        r#"{"item":"gift","quantity":1}"#,
    )
    .await;
    let answer: serde_json::Value = serde_json::from_str(&body).expect("json");
    let url = format!("{base}{}", answer["status_url"].as_str().expect("url"));

    let get = |tenant: &'static str| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let r = client
                .get(url)
                .header("x-api-key", tenant)
                .send()
                .await
                .expect("get");
            (r.status().as_u16(), r.text().await.expect("body"))
        }
    };
    let (status, body) = get("tenant-a").await;
    assert_eq!(
        (status, body.contains("\"accepted\"")),
        (200, true),
        "{body}"
    );
    assert_eq!(
        get("tenant-b").await.0,
        404,
        "another principal sees nothing"
    );

    // The receiver processes it: its token is consumed.
    let orders = exactly::Endpoint::builder("orders", store.clone(), transport.clone())
        .handler(exactly::handler_fn(
            |m: &PlaceOrder| m.item.clone(),
            |n: &mut u32, m: PlaceOrder, _| {
                *n += m.quantity;
                Ok(())
            },
        ))
        .build()
        .expect("endpoint");
    let d = orders.receive_one().await.expect("rx").expect("msg");
    assert_eq!(orders.handle_delivery(d).await, exactly::Outcome::Processed);
    let (_, body) = get("tenant-a").await;
    assert!(body.contains("\"processed\""), "{body}");

    // Settled and past retention: expired. A retry now is a new request.
    assert_eq!(front.expire_once().await.expect("expire"), 1);
    assert_eq!(get("tenant-a").await.0, 404);
}
