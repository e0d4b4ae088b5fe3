//! Runs the benchmark binary's `--quick` smoke run on the in-memory
//! backends, so CI exercises every code path of a run, and a server
//! scenario without its servers. No timing is asserted: speed is measured
//! by running the benchmark, not by tests.

use std::process::Command;

#[test]
fn quick_memory_run_prints_both_modes() {
    let output = Command::new(env!("CARGO_BIN_EXE_exactly-bench"))
        .args(["memory", "--quick"])
        .output()
        .expect("the benchmark binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    for row in [
        "| direct | exactly-once |",
        "| direct | at-least-once |",
        "| 2-hop chain | exactly-once |",
        "| 2-hop chain | at-least-once |",
    ] {
        assert!(stdout.contains(row), "missing {row:?} in\n{stdout}");
    }
    assert!(stdout.contains("contention"), "{stdout}");
    assert!(!stderr.contains("WARNING"), "{stderr}");
}

#[cfg(feature = "s3-nats")]
#[test]
fn s3_nats_without_servers_is_skipped() {
    let output = Command::new(env!("CARGO_BIN_EXE_exactly-bench"))
        .arg("s3-nats")
        .env_remove("EXACTLY_TEST_S3_URL")
        .env_remove("EXACTLY_TEST_NATS_URL")
        .output()
        .expect("the benchmark binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("Skipped:"), "{stdout}");
    assert!(stdout.contains("EXACTLY_TEST_S3_URL"), "{stdout}");
}
