//! OTLP export end to end (feature `otlp`): the sample, pointed at a small
//! OTLP/HTTP collector on 127.0.0.1, places one order and stops; the
//! collector must have received an `exactly.message` span for every hop,
//! each with its message id, entity and attempt count, and the protocol
//! steps as its children.
//!
//! The exporter's batch interval is set to a minute, so every span arrives
//! through the flush at exit: a process that forgets to shut the exporter
//! down fails here.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message as _;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// A span as the collector received it.
#[derive(Clone, Debug)]
struct Span {
    name: String,
    span_id: Vec<u8>,
    parent_span_id: Vec<u8>,
    attributes: HashMap<String, String>,
    /// The attributes of the resource that sent it.
    resource: HashMap<String, String>,
}

/// What the collector received.
#[derive(Clone, Debug, Default)]
struct Received {
    spans: Arc<Mutex<Vec<Span>>>,
    requests: Arc<Mutex<u32>>,
}

fn text(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

fn attributes(list: &[KeyValue]) -> HashMap<String, String> {
    list.iter()
        .map(|kv| (kv.key.clone(), text(kv.value.as_ref())))
        .collect()
}

/// `POST /v1/traces`: decodes the protobuf request and keeps its spans.
async fn traces(State(received): State<Received>, body: Bytes) -> StatusCode {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return StatusCode::BAD_REQUEST;
    };
    *received.requests.lock().expect("lock") += 1;
    let mut spans = received.spans.lock().expect("lock");
    for resource_spans in request.resource_spans {
        let resource = resource_spans
            .resource
            .map(|r| attributes(&r.attributes))
            .unwrap_or_default();
        for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
            spans.push(Span {
                name: span.name,
                span_id: span.span_id,
                parent_span_id: span.parent_span_id,
                attributes: attributes(&span.attributes),
                resource: resource.clone(),
            });
        }
    }
    StatusCode::OK
}

/// Starts the collector; returns its base URL.
async fn collector(received: Received) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the collector");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let router = Router::new()
        .route("/v1/traces", post(traces))
        .with_state(received);
    tokio::spawn(async move { axum::serve(listener, router).await });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_delivery_arrives_at_the_collector_as_an_exactly_message_span() {
    let received = Received::default();
    let collector = collector(received.clone()).await;
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("order-service-otlp-test");

    let mut child = Command::new(env!("CARGO_BIN_EXE_order-service"))
        .args(["--listen", "127.0.0.1:0", "--fresh", "--stop-on-stdin-eof"])
        .arg("--data-dir")
        .arg(&dir)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &collector)
        .env("OTEL_BSP_SCHEDULE_DELAY", "60000")
        .env_remove("OTEL_SERVICE_NAME")
        .env_remove("ORDER_SERVICE_OTLP_FILTER")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("the order-service binary starts");
    let stdin = child.stdin.take().expect("piped stdin");
    let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    let url = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.expect("stdout") {
            if let Some(rest) = line.split("listening on ").nth(1) {
                return rest.split_whitespace().next().map(str::to_owned);
            }
        }
        None
    })
    .await
    .expect("the service starts within 30 s")
    .expect("the banner names the URL");
    // Keep draining stdout so the service never blocks on it.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    let http = reqwest::Client::new();
    let placed: serde_json::Value = http
        .post(format!("{url}/orders"))
        .header("Idempotency-Key", "otlp-test-1")
        .json(&serde_json::json!({
            "customer": "ada",
            "items": [{"sku": "gift-box", "qty": 1, "unit_cents": 2500}],
        }))
        .send()
        .await
        .expect("POST /orders")
        .error_for_status()
        .expect("202")
        .json()
        .await
        .expect("JSON answer");
    let order = placed["order_id"].as_str().expect("an order id").to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = http
            .get(format!("{url}/orders/{order}"))
            .send()
            .await
            .expect("GET /orders/{id}");
        if answer.status().is_success() {
            let body: serde_json::Value = answer.json().await.expect("JSON order");
            if body["status"] == "shipped" {
                break;
            }
        }
        assert!(Instant::now() < deadline, "the order did not ship in 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Closing stdin stops the service gracefully; it must flush its spans.
    assert_eq!(
        *received.requests.lock().expect("lock"),
        0,
        "the batch interval is a minute: nothing should have been sent yet"
    );
    drop(stdin);
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the service stops within 30 s")
        .expect("wait");
    assert!(status.success(), "the service exited with {status}");

    let spans = received.spans.lock().expect("lock").clone();
    let messages: Vec<&Span> = spans
        .iter()
        .filter(|s| s.name == "exactly.message")
        .collect();
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    for message_type in [
        "orders.PlaceOrder",
        "billing.Charge",
        "orders.PaymentSettled",
        "shipping.Ship",
        "orders.Shipped",
    ] {
        let span = messages
            .iter()
            .find(|s| s.attributes.get("message_type").map(String::as_str) == Some(message_type))
            .unwrap_or_else(|| panic!("no exactly.message span for {message_type}: {names:?}"));
        let a = &span.attributes;
        assert!(
            a.get("message_id").is_some_and(|id| id.len() >= 32),
            "{a:?}"
        );
        assert!(
            a.get("entity").is_some_and(|e| e.contains(&order)),
            "the entity names the order {order}: {a:?}"
        );
        assert!(
            a.get("attempts")
                .and_then(|n| n.parse::<u32>().ok())
                .is_some_and(|n| n >= 1),
            "{a:?}"
        );
        assert!(a.contains_key("endpoint"), "{a:?}");
        assert_eq!(
            span.resource.get("service.name").map(String::as_str),
            Some("order-service")
        );
        assert_eq!(
            span.resource.get("order_service.role").map(String::as_str),
            Some("all")
        );
    }
    // The protocol steps (debug spans) are exported as children.
    let commit = spans
        .iter()
        .find(|s| s.name == "exactly.commit")
        .unwrap_or_else(|| panic!("no exactly.commit span: {names:?}"));
    assert!(
        messages.iter().any(|m| m.span_id == commit.parent_span_id),
        "exactly.commit is a child of an exactly.message span"
    );
}
