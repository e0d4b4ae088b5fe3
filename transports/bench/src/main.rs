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
//! Prints a Markdown table, with the conditions it ran under: cores, load,
//! and PostgreSQL's `fsync` and `synchronous_commit`. The queues it used
//! are deleted at the end.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod measure;
mod subject;

use std::process::ExitCode;
use std::time::Duration;

use crate::measure::BATCH;
use crate::subject::subjects;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The 1-minute load average, for the record of the conditions.
fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let messages = env_number("EXACTLY_BENCH_MESSAGES", 2000);
    let bytes = env_number("EXACTLY_BENCH_BYTES", 1024);
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let run = format!(
        "bench{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    );
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    println!(
        "{messages} messages of {bytes} B per run; {cores} cores, load {} at start",
        load()
    );
    let subjects = subjects(dir.path()).await?;
    println!();
    println!("| transport | send 1 | recv+ack 1 | send 10 | recv+ack 10 |");
    println!("|---|---:|---:|---:|---:|");
    for subject in &subjects {
        let n = (messages / subject.share).max(BATCH);
        let mut cells = Vec::new();
        for (mode, batch) in [("single", 1), ("batch", BATCH)] {
            let queue = format!("{run}_{}_{mode}", subject.name);
            let measured = measure::run(&*subject.transport, &queue, n, batch, bytes).await;
            let cleaned = subject.transport.clean_up(&queue).await;
            let rates = measured.map_err(|e| format!("{}: {e}", subject.label))?;
            if let Err(e) = cleaned {
                eprintln!("({}: queue {queue} left behind: {e})", subject.label);
            }
            cells.push(rates);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        println!(
            "| {} | {:.0} | {:.0} | {:.0} | {:.0} |",
            subject.label, cells[0].send, cells[0].receive_ack, cells[1].send, cells[1].receive_ack
        );
    }
    println!();
    println!(
        "msg/s; receive + ack acks one by one. Load {} at end.",
        load()
    );
    Ok(())
}
