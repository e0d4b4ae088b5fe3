//! Third-party calls made exactly once, against a real payment provider
//! (an axum server on loopback) through the reqwest executor.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use bytes::Bytes;
use exactly::harness::{self, CallsUnderTest, Charge, Config, ScheduleEnv};
use exactly::{CallExecutor, CallResult, HttpCall};
use exactly_http::ReqwestExecutor;

/// A payment provider that honours `Idempotency-Key` and counts charges.
/// Per key and try, deterministically: ~5% answer 503 before charging and
/// ~5% charge and then answer 502 (the response is lost).
#[derive(Default)]
struct Provider {
    answers: Mutex<HashMap<String, Bytes>>,
    tries: Mutex<HashMap<String, u64>>,
    /// (run, idempotency key, chain) of every charge applied.
    charges: Mutex<Vec<(String, String, u32)>>,
    /// Legacy API without keys: charge references seen.
    legacy: Mutex<Vec<String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Provider {
    fn fault(&self, key: &str) -> u64 {
        let mut tries = lock(&self.tries);
        let n = tries.entry(key.to_owned()).or_default();
        *n += 1;
        let mut h = DefaultHasher::new();
        (key, *n).hash(&mut h);
        h.finish() % 100
    }
}

async fn charge(
    State(p): State<Arc<Provider>>,
    Path(run): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, Bytes) {
    let Some(key) = headers.get("idempotency-key").and_then(|v| v.to_str().ok()) else {
        return (StatusCode::BAD_REQUEST, Bytes::from_static(b"key required"));
    };
    let fault = p.fault(key);
    if fault < 5 {
        return (StatusCode::SERVICE_UNAVAILABLE, Bytes::new());
    }
    let answer = {
        let mut answers = lock(&p.answers);
        answers
            .entry(key.to_owned())
            .or_insert_with(|| {
                let chain = serde_json::from_slice::<Charge>(&body).map_or(u32::MAX, |c| c.chain);
                lock(&p.charges).push((run, key.to_owned(), chain));
                body.clone()
            })
            .clone()
    };
    if fault < 10 {
        return (StatusCode::BAD_GATEWAY, Bytes::new());
    }
    (StatusCode::CREATED, answer)
}

async fn decline() -> (StatusCode, &'static str) {
    (StatusCode::PAYMENT_REQUIRED, r#"{"error":"card declined"}"#)
}

async fn legacy_charge(
    State(p): State<Arc<Provider>>,
    Path(reference): Path<String>,
) -> StatusCode {
    lock(&p.legacy).push(reference);
    StatusCode::CREATED
}

async fn legacy_check(State(p): State<Arc<Provider>>, Path(reference): Path<String>) -> StatusCode {
    if lock(&p.legacy).contains(&reference) {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    }
}

async fn serve(provider: Arc<Provider>) -> String {
    let app = Router::new()
        .route("/{run}/charges", post(charge))
        .route("/declines", post(decline))
        .route("/legacy/{reference}", post(legacy_charge).get(legacy_check))
        .with_state(provider);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

#[tokio::test(flavor = "current_thread")]
async fn every_order_is_charged_exactly_once_under_a_thousand_fault_schedules() {
    let provider = Arc::new(Provider::default());
    let base = serve(provider.clone()).await;
    let executor: Arc<dyn CallExecutor> = Arc::new(ReqwestExecutor::new(Duration::from_secs(5)));
    let calls: harness::CallsFactory = Arc::new(move |env: ScheduleEnv| {
        let (provider, executor) = (provider.clone(), executor.clone());
        let run = format!("s{}", env.seed);
        let url = format!("{base}/{run}/charges");
        Box::pin(async move {
            CallsUnderTest {
                executor,
                url,
                rpc: false,
                charges: Arc::new(move || {
                    let (provider, run) = (provider.clone(), run.clone());
                    Box::pin(async move {
                        lock(&provider.charges)
                            .iter()
                            .filter(|(r, _, _)| *r == run)
                            .map(|(_, key, chain)| (key.clone(), *chain))
                            .collect()
                    })
                }),
            }
        })
    });
    let config = Config {
        schedules: 1_000,
        calls: Some(calls),
        ..Config::default()
    }
    .from_env();
    let report = harness::run(&config, &harness::memory_backend()).await;
    println!("{report}");
    assert!(report.faults.crashes > 0 && report.faults.duplicate_deliveries > 0);
    assert!(report.violations.is_empty(), "{report}");
}

fn call(url: String) -> HttpCall {
    let mut call = HttpCall::post_json("charge", url, &Charge { chain: 1 }).expect("json");
    call.idempotency_key = "fixed-key".into();
    call
}

#[tokio::test]
async fn a_4xx_is_a_definitive_result_and_a_5xx_is_retried() {
    let provider = Arc::new(Provider::default());
    let base = serve(provider.clone()).await;
    let executor = ReqwestExecutor::default();
    let declined: CallResult = executor
        .execute(&call(format!("{base}/declines")))
        .await
        .expect("a 402 is an answer, not an error");
    assert_eq!(declined.status, 402);
    assert!(!declined.is_success());
    assert!(String::from_utf8_lossy(&declined.body).contains("card declined"));

    let missing = executor
        .execute(&call(format!("{base}/nowhere/at/all")))
        .await;
    assert_eq!(missing.expect("404 is definitive").status, 404);
    let refused = executor
        .execute(&call("http://127.0.0.1:9/charges".into()))
        .await;
    assert!(
        matches!(refused, Err(exactly::CallError::Transient(_))),
        "{refused:?}"
    );
}

#[tokio::test]
async fn check_before_retry_stops_a_second_charge_on_an_api_without_keys() {
    let provider = Arc::new(Provider::default());
    let base = serve(provider.clone()).await;
    let executor = ReqwestExecutor::default();
    let url = format!("{base}/legacy/order-7");
    let legacy = call(url.clone()).check_before_retry(url);
    let first = executor.execute(&legacy).await.expect("charged");
    assert_eq!((first.status, first.from_check), (201, false));
    // The response was lost; the dispatcher retries: the check says done.
    let retry = executor.execute(&legacy).await.expect("checked");
    assert_eq!((retry.status, retry.from_check), (200, true));
    assert_eq!(lock(&provider.legacy).len(), 1, "charged once");
}
