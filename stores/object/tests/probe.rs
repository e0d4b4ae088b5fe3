//! The start-up probe refuses backends without conditional writes, and an
//! unreachable server is `Unavailable`, not a permanent error.

mod common;

use std::sync::Arc;

use exactly::StoreError;
use exactly_store_object::ObjectStoreStore;
use exactly_store_object::object_store::aws::{AmazonS3Builder, S3ConditionalPut};
use exactly_store_object::object_store::local::LocalFileSystem;
use exactly_store_object::object_store::memory::InMemory;

#[path = "common/overwriting.rs"]
mod overwriting;

fn refused(result: Result<ObjectStoreStore, StoreError>, backend: &str) -> String {
    match result {
        Err(StoreError::NotSupported(message)) => {
            assert!(message.contains(backend), "names the backend: {message}");
            message
        }
        other => panic!("expected NotSupported for {backend}, got {other:?}"),
    }
}

#[tokio::test]
async fn plain_local_files_are_refused_they_have_no_compare_and_swap() {
    let dir = tempfile::tempdir().expect("temp dir");
    let plain = LocalFileSystem::new_with_prefix(dir.path()).expect("LocalFileSystem");
    let message = refused(
        ObjectStoreStore::builder(Arc::new(plain)).open().await,
        "LocalFileSystem",
    );
    assert!(message.contains("PutMode::Update"), "{message}");
    ObjectStoreStore::local(dir.path())
        .await
        .expect("LocalFiles adds compare-and-swap to the same directory");
}

#[tokio::test]
async fn a_backend_that_overwrites_on_create_is_refused() {
    let lying = Arc::new(overwriting::Overwriting(InMemory::new()));
    let message = refused(ObjectStoreStore::builder(lying).open().await, "Overwriting");
    assert!(message.contains("second create-if-absent"), "{message}");
}

#[tokio::test]
async fn s3_with_conditional_put_disabled_is_refused() {
    common::s3().await; // the bucket exists
    let s3 = AmazonS3Builder::from_env()
        .with_endpoint(common::env("EXACTLY_TEST_S3_URL"))
        .with_allow_http(true)
        .with_bucket_name(common::BUCKET)
        .with_conditional_put(S3ConditionalPut::Disabled)
        .build()
        .expect("S3 client");
    refused(
        ObjectStoreStore::builder(Arc::new(s3)).open().await,
        "AmazonS3",
    );
}

fn assert_unavailable(result: Result<ObjectStoreStore, StoreError>) {
    match result {
        Err(e) if e.is_transient() => {}
        other => panic!("an unreachable server must be Unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn unreachable_s3_is_unavailable() {
    assert_unavailable(ObjectStoreStore::s3(Some("http://127.0.0.1:1"), "bucket").await);
}

#[tokio::test]
async fn unreachable_azure_is_unavailable() {
    let url = "http://127.0.0.1:1/devstoreaccount1";
    assert_unavailable(ObjectStoreStore::azure_emulator(url, "container").await);
}

#[tokio::test]
async fn debug_output_names_the_backend_not_its_credentials() {
    let store = common::s3().await;
    let shown = format!("{store:?}");
    assert!(shown.contains("AmazonS3"), "{shown}");
    assert!(
        !shown.contains(&common::env("AWS_SECRET_ACCESS_KEY")),
        "{shown}"
    );
}
