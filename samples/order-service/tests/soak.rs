//! Small soaks in CI: orders through the HTTP API while worker processes
//! are SIGKILLed and restarted; 0 lost, 0 double charges, 0 effects applied
//! twice. On the embedded default, and (features `postgres` + `rabbitmq`)
//! on PostgreSQL + RabbitMQ + S3, the servers named by `EXACTLY_TEST_*`.

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

/// Runs a soak of `orders` orders with `args` and `envs` added and checks
/// its report.
fn soak(name: &str, orders: u32, args: &[&str], envs: &[(&str, String)]) {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    let orders_text = orders.to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_order-service"))
        .args(["soak", "--orders", &orders_text, "--min-kills", "3"])
        .args(["--kill-every-ms", "1000"])
        .args(["--replicas", "2", "--timeout-secs", "90", "--no-progress"])
        .args(args)
        .arg("--data-dir")
        .arg(&dir)
        .envs(envs.iter().map(|(k, v)| (k, v)))
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
        Some(orders_text.as_str()),
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

#[test]
fn a_small_soak_with_kills_loses_nothing_and_charges_nobody_twice() {
    soak("order-service-soak-test", 300, &[], &[]);
}

/// The value of a server's env var, or a failure naming it.
#[cfg(all(feature = "postgres", feature = "rabbitmq"))]
fn server(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!(
            "{var} is not set: start the servers with scripts/services.sh up (scripts/test does)"
        )
    })
}

/// Creates `bucket` on the S3-compatible server at `endpoint` (an unsigned
/// `PUT /bucket`, which the test server accepts; an existing bucket is fine).
#[cfg(all(feature = "postgres", feature = "rabbitmq"))]
fn create_bucket(endpoint: &str, bucket: &str) {
    use std::io::Write;
    let host = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut conn = std::net::TcpStream::connect(host).expect("S3 server reachable");
    write!(
        conn,
        "PUT /{bucket} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut answer = String::new();
    let _ = conn.read_to_string(&mut answer);
    assert!(
        answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.1 409"),
        "CreateBucket: {answer}"
    );
}

#[cfg(all(feature = "postgres", feature = "rabbitmq"))]
#[test]
fn a_small_soak_on_postgres_rabbitmq_and_s3_loses_nothing() {
    let postgres = server("EXACTLY_TEST_POSTGRES_URL");
    let rabbitmq = server("EXACTLY_TEST_RABBITMQ_URL");
    let s3 = server("EXACTLY_TEST_S3_URL");
    let bucket = format!(
        "order-service-soak-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    );
    create_bucket(&s3, &bucket);
    let blobs = format!("s3://{bucket}");
    soak(
        "order-service-soak-servers-test",
        200,
        &[
            "--store",
            &postgres,
            "--transport",
            &rabbitmq,
            "--blobs",
            &blobs,
        ],
        &[("AWS_ENDPOINT_URL", s3.clone())],
    );
}
