//! Raw throughput of every exactly transport, in one run on one machine:
//! send, then receive + ack, of the same messages, one per call and in
//! batches of 10. Not a test; numbers for `docs/transports.md`.
//!
//! ```text
//! scripts/services.sh up postgres rabbitmq nats moto && source .services/env
//! cargo run --release -p exactly-transport-bench
//! ```
//!
//! A server transport whose `EXACTLY_TEST_*_URL` is unset is left out (with
//! a note). `EXACTLY_BENCH_MESSAGES` (default 2000) sets the messages per
//! run, `EXACTLY_BENCH_BYTES` (default 1024) the body size; SQS on moto
//! gets a tenth of the messages (moto is an emulator, slow by design).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod measure;

use std::sync::Arc;
use std::time::Duration;

use exactly::{MemoryTransport, Transport, TransportError};
use exactly_transport_nats::NatsQueue;
use exactly_transport_rabbitmq::RabbitQueue;
use exactly_transport_sql::SqlQueue;
use exactly_transport_sqs::SqsQueue;
use exactly_transport_sqs::aws_sdk_sqs::config::{Credentials, Region};
use exactly_transport_sqs::aws_sdk_sqs::{Client, Config};

use crate::measure::BATCH;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn sqs(url: &str) -> SqsQueue {
    let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    let credentials = Credentials::new(
        var("AWS_ACCESS_KEY_ID", "testing"),
        var("AWS_SECRET_ACCESS_KEY", "testing"),
        None,
        None,
        "bench",
    );
    let config = Config::builder()
        .behavior_version_latest()
        .region(Region::new(var("AWS_REGION", "us-east-1")))
        .credentials_provider(credentials)
        .endpoint_url(url)
        .build();
    SqsQueue::new(Client::from_conf(config))
}

/// The transports to measure: name, transport, share of the messages.
async fn transports(
    dir: &std::path::Path,
) -> Result<Vec<(&'static str, Arc<dyn Transport>, usize)>, TransportError> {
    let url = |var: &str| {
        let url = std::env::var(var).ok();
        if url.is_none() {
            println!("(left out: {var} is not set)");
        }
        url
    };
    let mut all: Vec<(&'static str, Arc<dyn Transport>, usize)> = vec![
        ("memory", Arc::new(MemoryTransport::new()), 1),
        (
            "sqlite",
            Arc::new(SqlQueue::open(dir.join("bench.db")).await?),
            1,
        ),
    ];
    if let Some(url) = url("EXACTLY_TEST_POSTGRES_URL") {
        all.push((
            "postgres",
            Arc::new(SqlQueue::connect_postgres(&url).await?),
            1,
        ));
    }
    if let Some(url) = url("EXACTLY_TEST_RABBITMQ_URL") {
        all.push(("rabbitmq", Arc::new(RabbitQueue::connect(&url).await?), 1));
    }
    if let Some(url) = url("EXACTLY_TEST_NATS_URL") {
        all.push(("nats", Arc::new(NatsQueue::connect(&url).await?), 1));
    }
    if let Some(url) = url("EXACTLY_TEST_SQS_URL") {
        all.push(("sqs (moto)", Arc::new(sqs(&url)), 10));
    }
    Ok(all)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), TransportError> {
    let messages = env_number("EXACTLY_BENCH_MESSAGES", 2000);
    let bytes = env_number("EXACTLY_BENCH_BYTES", 1024);
    let dir = tempfile::tempdir().map_err(TransportError::generic)?;
    let run = format!(
        "bench{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    );
    println!("{messages} messages of {bytes} B per run (msg/s; receive + ack acks one by one)");
    println!(
        "{:<12} {:>12} {:>14} {:>12} {:>14}",
        "transport", "send 1", "recv+ack 1", "send 10", "recv+ack 10"
    );
    for (name, transport, share) in transports(dir.path()).await? {
        let n = (messages / share).max(BATCH);
        let mut cells = Vec::new();
        for (mode, batch) in [("single", 1), ("batch", BATCH)] {
            let queue = format!("{run}_{}_{mode}", name.split(' ').next().unwrap_or(name));
            let rates = measure::run(&*transport, &queue, n, batch, bytes).await?;
            cells.push(rates);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        println!(
            "{:<12} {:>12.0} {:>14.0} {:>12.0} {:>14.0}",
            name, cells[0].send, cells[0].receive_ack, cells[1].send, cells[1].receive_ack
        );
    }
    Ok(())
}
