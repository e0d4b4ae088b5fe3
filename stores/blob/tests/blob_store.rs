//! `ObjectBlobStore` on local files and on a real S3-compatible server
//! (EXACTLY_TEST_S3_URL), plus the fault harness with blob side effects and
//! claim checks on local files.

use std::sync::Arc;

use bytes::Bytes;
use exactly::blob::{self, BlobError, BlobStore};
use exactly::harness::{self, Config, ScheduleEnv};
use exactly_blob::ObjectBlobStore;
use futures::StreamExt;
use sha2::{Digest, Sha256};

/// `mib` MiB in 64 KiB chunks, generated on the fly.
fn stream(mib: usize) -> blob::ByteStream {
    futures::stream::iter((0..mib * 16).map(|i| Ok(Bytes::from(vec![(i % 251) as u8; 64 * 1024]))))
        .boxed()
}

async fn round_trip(blobs: &dyn BlobStore, prefix: &str) {
    let key = format!("{prefix}big");
    assert_eq!(blobs.put(&key, stream(20)).await.expect("put"), 20 << 20);
    let mut back = blobs.get(&key).await.expect("get");
    let (mut n, mut hash) = (0u64, Sha256::new());
    while let Some(chunk) = back.next().await {
        let chunk = chunk.expect("chunk");
        n += chunk.len() as u64;
        hash.update(&chunk);
    }
    let mut expected = Sha256::new();
    for i in 0..20 * 16 {
        expected.update(vec![(i % 251) as u8; 64 * 1024]);
    }
    assert_eq!((n, hash.finalize()), (20 << 20, expected.finalize()));
    let listed = blobs.list(prefix).await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].size, 20 << 20);
    blobs.delete(&key).await.expect("delete");
    blobs.delete(&key).await.expect("deleting twice is fine");
    assert!(matches!(
        blobs.get(&key).await,
        Err(BlobError::NotFound { .. })
    ));
    assert!(blobs.list(prefix).await.expect("list").is_empty());
}

#[tokio::test]
async fn local_files_round_trip_twenty_mib_streamed() {
    let dir = tempfile::tempdir().expect("dir");
    let blobs = ObjectBlobStore::local(dir.path())
        .expect("local")
        .part_bytes(5 << 20);
    round_trip(&blobs, "b/test/").await;
}

#[tokio::test]
async fn s3_compatible_server_round_trip() {
    let url = std::env::var("EXACTLY_TEST_S3_URL").expect(
        "EXACTLY_TEST_S3_URL must point at an S3-compatible server (scripts/services.sh up moto)",
    );
    let bucket = "exactly-blob-test";
    // moto creates buckets from an unsigned PUT; a 409 means it exists.
    let _ = reqwest::Client::new()
        .put(format!("{url}/{bucket}"))
        .send()
        .await
        .expect("create bucket");
    let blobs = ObjectBlobStore::s3(bucket, Some(&url)).expect("s3");
    round_trip(&blobs, &format!("b/run-{}/", std::process::id())).await;
}

#[tokio::test(flavor = "current_thread")]
async fn fault_harness_with_blob_side_effects_on_local_files() {
    let dir = Arc::new(tempfile::tempdir().expect("dir"));
    let blobs: harness::BlobsFactory = Arc::new(move |env: ScheduleEnv| {
        let root = dir.path().join(format!("s{}", env.seed));
        Box::pin(async move {
            let blobs: Arc<dyn BlobStore> = Arc::new(ObjectBlobStore::local(&root).expect("local"));
            blobs
        })
    });
    let config = Config {
        schedules: 300,
        blobs: Some(blobs),
        ..Config::default()
    }
    .from_env();
    let report = harness::run(&config, &harness::memory_backend()).await;
    println!("{report}");
    assert!(report.violations.is_empty(), "{report}");
}

#[tokio::test(flavor = "current_thread")]
async fn fault_harness_with_blob_side_effects_on_s3() {
    let url = std::env::var("EXACTLY_TEST_S3_URL").expect(
        "EXACTLY_TEST_S3_URL must point at an S3-compatible server (scripts/services.sh up moto)",
    );
    let blobs: harness::BlobsFactory = Arc::new(move |env: ScheduleEnv| {
        let url = url.clone();
        Box::pin(async move {
            let bucket = format!("exactly-harness-{}-{}", std::process::id(), env.seed);
            let _ = reqwest::Client::new()
                .put(format!("{url}/{bucket}"))
                .send()
                .await;
            let blobs: Arc<dyn BlobStore> = Arc::new(
                ObjectBlobStore::s3(&bucket, Some(&url))
                    .expect("s3")
                    .part_bytes(5 << 20),
            );
            blobs
        })
    });
    // moto serves ~80 S3 requests/s: a few dozen schedules is what fits.
    let config = Config {
        schedules: 80,
        blobs: Some(blobs),
        ..Config::default()
    }
    .from_env();
    let report = harness::run(&config, &harness::memory_backend()).await;
    println!("{report}");
    assert!(report.violations.is_empty(), "{report}");
}
