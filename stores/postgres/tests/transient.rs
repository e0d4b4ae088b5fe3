//! Transient failures are classified `Unavailable` (and a retry works);
//! passwords stay out of errors and `Debug`; concurrent starters migrate
//! the schema once.

mod common;

use std::time::Duration;

use exactly::{Precondition, Store};
use exactly_store_postgres::{PostgresStore, pool_options};

/// The test server's URL with a password added (trust auth ignores it).
fn url_with_password(password: &str) -> String {
    common::url().replacen("://postgres@", &format!("://postgres:{password}@"), 1)
}

#[tokio::test]
async fn unreachable_server_is_unavailable_and_hides_the_password() {
    let options = pool_options().acquire_timeout(Duration::from_secs(1));
    let error = PostgresStore::connect_with("postgres://app:s3cret@127.0.0.1:1/app", options)
        .await
        .expect_err("nothing listens on port 1");
    assert!(
        error.is_transient(),
        "a refused connection is transient: {error}"
    );
    let shown = format!("{error} {error:?}");
    assert!(!shown.contains("s3cret"), "password in the error: {shown}");
}

#[tokio::test]
async fn bad_url_error_hides_the_password() {
    let error = PostgresStore::connect("postgres://app:s3cret@host:notaport/app")
        .await
        .expect_err("a bad port");
    assert!(!error.is_transient(), "a bad URL is permanent: {error}");
    let shown = format!("{error} {error:?}");
    assert!(!shown.contains("s3cret"), "password in the error: {shown}");
    assert!(shown.contains("***"), "the URL is shown redacted: {shown}");
}

#[tokio::test]
async fn debug_output_hides_the_password() {
    let store = PostgresStore::connect(&url_with_password("s3cret"))
        .await
        .expect("connect");
    let shown = format!("{store:?}");
    assert!(!shown.contains("s3cret"), "password in Debug: {shown}");
    assert!(shown.contains("postgres@127.0.0.1"), "{shown}");
}

/// The server kills the store's connection between two calls: the next
/// call fails as `Unavailable`, and a retry (on a fresh connection) works.
#[tokio::test]
async fn terminated_connection_is_transient_and_retry_succeeds() {
    // One connection (not pinged before use: the default), so the kill
    // reaches a call.
    let options = pool_options().max_connections(1);
    let store = PostgresStore::connect_with(&common::url(), options)
        .await
        .expect("connect");
    let key = format!("transient/{}", exactly_conformance::unique_name("r"));
    store
        .put(&key, "v".into(), Precondition::Absent)
        .await
        .expect("create");
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(store.pool())
        .await
        .expect("pid");

    let killer = PostgresStore::connect(&common::url())
        .await
        .expect("connect");
    let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .fetch_one(killer.pool())
        .await
        .expect("terminate");
    assert!(killed, "backend {pid} terminated");
    tokio::time::sleep(Duration::from_millis(100)).await;

    let error = store.get(&key).await.expect_err("the connection is gone");
    eprintln!("the call after pg_terminate_backend: {error}");
    assert!(
        error.is_transient(),
        "a killed connection is transient: {error:?}"
    );
    let read = store.get(&key).await.expect("a retry reconnects");
    assert_eq!(read.map(|v| v.value), Some("v".into()));
}

#[tokio::test]
async fn concurrent_starters_migrate_once() {
    let url = common::url();
    let starts = (0..6).map(|_| PostgresStore::connect(&url));
    for store in futures::future::join_all(starts).await {
        store.expect("every starter gets a store");
    }
}
