//! Benchmark: 1 GiB end to end through blob side effects on local files.
//! A producer endpoint streams the payload into a blob of its attempt and
//! sends the reference; a consumer endpoint streams it back (checksum
//! verified). Prints throughput and peak RSS.
//!
//! `cargo run --release -p exactly-blob --example claim_check_1gib [-- MiB]`

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use exactly::blob::BlobRef;
use exactly::{
    Context, Endpoint, Handler, HandlerError, MemoryStore, MemoryTransport, Message, Outcome,
    Sender,
};
use exactly_blob::ObjectBlobStore;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Produce {
    mib: u64,
}
impl Message for Produce {
    const TYPE: &'static str = "Produce";
}

#[derive(Serialize, Deserialize)]
struct Payload {
    blob: BlobRef,
}
impl Message for Payload {
    const TYPE: &'static str = "Payload";
}

struct Producer;
impl Handler<Produce> for Producer {
    type State = Option<BlobRef>;
    fn entity_key(&self, _: &Produce) -> String {
        "p".into()
    }
    async fn handle(
        &self,
        s: &mut Option<BlobRef>,
        m: Produce,
        ctx: &mut Context,
    ) -> Result<(), HandlerError> {
        let chunks = futures::stream::iter(
            (0..m.mib).map(|i| Ok(Bytes::from(vec![(i % 251) as u8; 1 << 20]))),
        )
        .boxed();
        let blob = ctx
            .write_blob_stream("payload", "application/octet-stream", chunks)
            .await?;
        ctx.send("consumer", &Payload { blob: blob.clone() })?;
        *s = Some(blob);
        Ok(())
    }
}

struct Consumer;
impl Handler<Payload> for Consumer {
    type State = u64;
    fn entity_key(&self, _: &Payload) -> String {
        "c".into()
    }
    async fn handle(&self, n: &mut u64, m: Payload, ctx: &mut Context) -> Result<(), HandlerError> {
        let mut stream = ctx.read_blob(&m.blob).await?;
        while let Some(chunk) = stream.next().await {
            *n += chunk.map_err(HandlerError::failed)?.len() as u64;
        }
        Ok(())
    }
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(str::to_owned)
        })
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mib: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1024);
    let dir = tempfile::tempdir()?;
    let store = Arc::new(MemoryStore::new());
    let transport = Arc::new(MemoryTransport::new());
    let blobs = Arc::new(ObjectBlobStore::local(dir.path())?);
    let producer = Endpoint::builder("producer", store.clone(), transport.clone())
        .handler(Producer)
        .blobs(blobs.clone())
        .build()?;
    let consumer = Endpoint::builder("consumer", store.clone(), transport.clone())
        .handler(Consumer)
        .blobs(blobs.clone())
        .build()?;
    Sender::new("bench", store.clone(), transport.clone())?
        .send("producer", &Produce { mib })
        .await?;

    let start = Instant::now();
    let d = producer.receive_one().await?.ok_or("no Produce")?;
    assert_eq!(producer.handle_delivery(d).await, Outcome::Processed);
    let written = start.elapsed();
    let d = consumer.receive_one().await?.ok_or("no Payload")?;
    assert_eq!(consumer.handle_delivery(d).await, Outcome::Processed);
    let total = start.elapsed();

    let mibs = |secs: f64| mib as f64 / secs;
    println!("payload           {mib} MiB (blob side effect on local files, streamed)");
    println!(
        "write (producer)  {:.2} s  {:.0} MiB/s",
        written.as_secs_f64(),
        mibs(written.as_secs_f64())
    );
    println!(
        "end to end        {:.2} s  {:.0} MiB/s",
        total.as_secs_f64(),
        mibs(total.as_secs_f64())
    );
    println!(
        "peak RSS          {:.1} MiB (target < 64 MiB)",
        peak_rss_mib()
    );
    Ok(())
}
