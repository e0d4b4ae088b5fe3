//! Exactly-once requests between two exactly services over real HTTP.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use exactly::env::{Random, SeededRandom};
use exactly::fault::{FaultyStore, StoreFaults, roll};
use exactly::harness::{self, CallsUnderTest, Charge, Config, ScheduleEnv};
use exactly::{
    CallExecutor, CodecExt, Endpoint, Json, MemoryStore, MemoryTransport, Message, Store,
    Transport, handler_fn,
};
use exactly_http::{ReqwestExecutor, RpcServer};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Executed {
    chain: u32,
}
impl Message for Executed {
    const TYPE: &'static str = "Executed";
}

/// Service B: executes `Charge` requests; each execution sends `Executed`
/// to its own ledger, so executions can be counted.
fn service_b(store: Arc<dyn Store>, transport: Arc<dyn Transport>) -> RpcServer {
    RpcServer::builder(store, transport)
        .handler("Charge", |charge: Charge, ctx| {
            ctx.send(
                "ledger",
                &Executed {
                    chain: charge.chain,
                },
            )?;
            Ok(charge)
        })
        .tombstone_grace(Duration::ZERO)
        .build()
}

fn ledger(store: Arc<dyn Store>, transport: Arc<dyn Transport>) -> Endpoint {
    Endpoint::builder("ledger", store, transport)
        .handler(handler_fn(
            |m: &Executed| m.chain.to_string(),
            |n: &mut u32, _m: Executed, _| {
                *n += 1;
                Ok(())
            },
        ))
        .build()
        .expect("endpoint")
}

async fn drain(endpoint: &Endpoint) {
    while let Some(d) = endpoint.receive_one().await.expect("receive") {
        endpoint.handle_delivery(d).await;
    }
}

/// Answers 502 instead of the real response for `ppm` of requests, after
/// the handler ran: the caller never learns what happened.
async fn drop_responses(
    State(random): State<(Arc<dyn Random>, u32)>,
    request: Request,
    next: Next,
) -> Response {
    let response = next.run(request).await;
    if roll(random.0.as_ref(), random.1) {
        return axum::http::StatusCode::BAD_GATEWAY.into_response();
    }
    response
}

async fn serve(app: Router, shutdown: tokio::sync::oneshot::Receiver<()>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = shutdown.await;
            })
            .await
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn put_post_delete_by_hand() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let transport = Arc::new(MemoryTransport::new());
    let b = service_b(store.clone(), transport.clone());
    let (_keep, rx) = tokio::sync::oneshot::channel();
    let base = serve(b.routes(), rx).await;
    let client = reqwest::Client::new();
    let url = format!("{base}/exactly/requests/req-1");
    let send = |method: reqwest::Method, body: Option<&'static str>| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let mut r = client.request(method, url);
            if let Some(body) = body {
                r = r.header("content-type", "application/json").body(body);
            }
            let r = r.send().await.expect("request");
            (r.status().as_u16(), r.text().await.expect("body"))
        }
    };
    let charge = Some(r#"{"type":"Charge","body":{"chain":7}}"#);
    assert_eq!(
        send(reqwest::Method::POST, None).await.0,
        404,
        "POST before PUT"
    );
    assert_eq!(send(reqwest::Method::PUT, charge).await.0, 201);
    assert_eq!(
        send(reqwest::Method::PUT, charge).await.0,
        201,
        "PUT is idempotent"
    );
    let other = Some(r#"{"type":"Charge","body":{"chain":8}}"#);
    assert_eq!(send(reqwest::Method::PUT, other).await.0, 422);
    let first = send(reqwest::Method::POST, None).await;
    assert_eq!(first, (200, r#"{"chain":7}"#.to_owned()));
    assert_eq!(
        send(reqwest::Method::POST, None).await,
        first,
        "repeat gets the stored response"
    );
    assert_eq!(transport.depth("ledger"), 1, "executed once");
    assert_eq!(send(reqwest::Method::DELETE, None).await.0, 204);
    assert_eq!(
        send(reqwest::Method::POST, None).await.0,
        410,
        "released: not again"
    );
    assert_eq!(
        send(reqwest::Method::PUT, charge).await.0,
        410,
        "a stale re-PUT cannot revive it"
    );
    assert_eq!(transport.depth("ledger"), 1);

    // Once its message is processed the tombstone is settled and removed.
    assert_eq!(
        b.cleanup_once().await.expect("cleanup"),
        0,
        "token still in flight"
    );
    drain(&ledger(store.clone(), transport.clone())).await;
    assert_eq!(b.cleanup_once().await.expect("cleanup"), 1);
    assert!(
        store
            .list("i/rpc/", None, 10)
            .await
            .expect("list")
            .is_empty()
    );
}

#[tokio::test(flavor = "current_thread")]
async fn requests_between_services_execute_once_under_a_thousand_fault_schedules() {
    let executor: Arc<dyn CallExecutor> = Arc::new(ReqwestExecutor::new(Duration::from_secs(5)));
    let leftovers: Arc<Mutex<Vec<String>>> = Arc::default();
    let calls: harness::CallsFactory = {
        let leftovers = leftovers.clone();
        Arc::new(move |env: ScheduleEnv| {
            let (executor, leftovers) = (executor.clone(), leftovers.clone());
            Box::pin(async move {
                // A fresh service B per schedule. Its store fails now and
                // then (a request dies half-way), and 5% of its answers are
                // lost after it did the work.
                let random: Arc<dyn Random> = Arc::new(SeededRandom::new(env.seed ^ 0xb));
                let raw: Arc<dyn Store> = Arc::new(MemoryStore::new());
                let faults = StoreFaults {
                    unavailable_ppm: 30_000,
                    lost_ack_ppm: 30_000,
                    spurious_conflict_ppm: 0,
                };
                let flaky: Arc<dyn Store> =
                    Arc::new(FaultyStore::new(raw.clone(), faults, random.clone()));
                let transport: Arc<dyn Transport> = Arc::new(MemoryTransport::new());
                let b = service_b(flaky, transport.clone());
                let app = b.routes().layer(axum::middleware::from_fn_with_state(
                    (random, 50_000),
                    drop_responses,
                ));
                let (stop, rx) = tokio::sync::oneshot::channel::<()>();
                let url = serve(app, rx).await;
                let healthy = service_b(raw.clone(), transport.clone());
                let stop = Arc::new(Mutex::new(Some(stop)));
                CallsUnderTest {
                    executor,
                    url,
                    rpc: true,
                    charges: Arc::new(move || {
                        let (raw, transport, healthy) =
                            (raw.clone(), transport.clone(), healthy.clone());
                        let (leftovers, stop) = (leftovers.clone(), stop.clone());
                        Box::pin(async move {
                            // B settles: stranded messages sent, ledger drained,
                            // released requests cleaned up.
                            let ledger = ledger(raw.clone(), transport.clone());
                            let sweeper = healthy.sweeper().min_age(Duration::ZERO);
                            let _ = sweeper.sweep_once().await;
                            drain(&ledger).await;
                            let _ = healthy.cleanup_once().await;
                            let left = raw.list("i/rpc/", None, 100).await.unwrap_or_default();
                            leftovers
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner)
                                .extend(left);
                            drop(
                                stop.lock()
                                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                                    .take(),
                            );
                            let mut executions = Vec::new();
                            for key in raw.list("e/ledger/", None, 100).await.unwrap_or_default() {
                                let Ok(Some(v)) = raw.get(&key).await else {
                                    continue;
                                };
                                let record = exactly::record::EntityRecord::decode(&key, &v.value)
                                    .expect("record");
                                let n: u32 =
                                    Json.decode(&record.state.unwrap_or_default()).unwrap_or(0);
                                let chain: u32 = key["e/ledger/".len()..].parse().expect("chain");
                                executions.extend((0..n).map(|_| (String::new(), chain)));
                            }
                            executions
                        })
                    }),
                }
            })
        })
    };
    let config = Config {
        schedules: 1_000,
        calls: Some(calls),
        ..Config::default()
    }
    .from_env();
    let report = harness::run(&config, &harness::memory_backend()).await;
    println!("{report}");
    assert!(report.violations.is_empty(), "{report}");
    let left = leftovers
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    assert!(left.is_empty(), "requests left stored at B: {left:?}");
}

#[tokio::test]
async fn a_request_never_executed_is_removed_after_its_ttl() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let transport = Arc::new(MemoryTransport::new());
    let b = RpcServer::builder(store.clone(), transport.clone())
        .handler("Charge", |charge: Charge, _ctx| Ok(charge))
        .request_ttl(Duration::ZERO)
        .build();
    let (_keep, rx) = tokio::sync::oneshot::channel();
    let base = serve(b.routes(), rx).await;
    let put = reqwest::Client::new()
        .put(format!("{base}/exactly/requests/late-put"))
        .header("content-type", "application/json")
        .body(r#"{"type":"Charge","body":{"chain":1}}"#)
        .send()
        .await
        .expect("put");
    assert_eq!(put.status().as_u16(), 201);
    // Nobody POSTs it (a late PUT after its release, or a caller that gave up).
    assert_eq!(b.cleanup_once().await.expect("cleanup"), 1);
    assert!(
        store
            .list("i/rpc/", None, 10)
            .await
            .expect("list")
            .is_empty()
    );
}
