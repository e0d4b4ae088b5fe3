//! A small soak in CI: 300 orders through the HTTP API while worker
//! processes are SIGKILLed and restarted; 0 lost, 0 double charges, 0
//! effects applied twice.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The value of the report row whose label starts with `label`.
fn row<'a>(report: &'a str, label: &str) -> Option<&'a str> {
    report
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with(label))
        .map(|l| l[label.len()..].trim())
}

#[test]
fn a_small_soak_with_kills_loses_nothing_and_charges_nobody_twice() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("order-service-soak-test");
    let mut child = Command::new(env!("CARGO_BIN_EXE_order-service"))
        .args([
            "soak",
            "--orders",
            "300",
            "--min-kills",
            "3",
            "--kill-every-ms",
            "1000",
        ])
        .args(["--replicas", "2", "--timeout-secs", "90", "--no-progress"])
        .arg("--data-dir")
        .arg(&dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the order-service binary starts");
    let mut stdout = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out);
        out
    });
    let deadline = Instant::now() + Duration::from_secs(150);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the soak did not finish within 150 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let report = reader.join().expect("stdout reader");
    println!("{report}");

    assert_eq!(
        row(&report, "orders accepted (202)"),
        Some("300"),
        "{report}"
    );
    assert_eq!(row(&report, "lost (must be 0)"), Some("0"), "{report}");
    assert_eq!(
        row(&report, "double charges at the provider (must be 0)"),
        Some("0"),
        "{report}"
    );
    assert_eq!(
        row(&report, "effects applied twice (must be 0)"),
        Some("0"),
        "{report}"
    );
    let kills: u64 = row(&report, "worker processes / SIGKILLs / crashes")
        .and_then(|v| v.split(" / ").nth(1))
        .and_then(|k| k.parse().ok())
        .expect("a kill count");
    assert!(kills >= 3, "only {kills} kills\n{report}");
    assert!(status.success(), "the soak failed\n{report}");
}
