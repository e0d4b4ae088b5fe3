//! Test servers from the environment (a missing one is a failure naming
//! its variable, never a silent skip), and creating the bucket and
//! container the stores use — object_store cannot create them.

#![allow(dead_code)]

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use exactly_store_object::ObjectStoreStore;
use hmac::{Hmac, KeyInit, Mac};

/// The bucket (moto) and container (Azurite) every test shares.
pub const BUCKET: &str = "exactly-tests";

pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is unset: run `scripts/services.sh up moto azurite && source .services/env`")
    })
}

/// The S3 store on moto at `EXACTLY_TEST_S3_URL`, its bucket created.
pub async fn s3() -> ObjectStoreStore {
    let endpoint = env("EXACTLY_TEST_S3_URL");
    // moto takes an unsigned CreateBucket; an existing bucket answers 200 or 409.
    let status = reqwest::Client::new()
        .put(format!("{endpoint}/{BUCKET}"))
        .send()
        .await
        .expect("moto answers")
        .status();
    assert!(
        status.is_success() || status.as_u16() == 409,
        "create bucket: {status}"
    );
    ObjectStoreStore::s3(Some(&endpoint), BUCKET)
        .await
        .expect("the S3 store on moto")
}

/// The Azure store on Azurite at `EXACTLY_TEST_AZURE_BLOB_URL`, its
/// container created.
pub async fn azure() -> ObjectStoreStore {
    let url = env("EXACTLY_TEST_AZURE_BLOB_URL");
    create_container(&url, BUCKET).await;
    ObjectStoreStore::azure_emulator(&url, BUCKET)
        .await
        .expect("the Azure store on Azurite")
}

/// `PUT {blob_url}/{container}?restype=container`, signed with Shared Key
/// (Azurite refuses anonymous requests). 201 created, 409 already there.
async fn create_container(blob_url: &str, container: &str) {
    let account = env("EXACTLY_TEST_AZURE_ACCOUNT");
    let key = STANDARD
        .decode(env("EXACTLY_TEST_AZURE_KEY"))
        .expect("base64 key");
    let date = httpdate::fmt_http_date(std::time::SystemTime::now());
    let version = "2021-08-06";
    let path = format!(
        "{}/{container}",
        blob_url
            .split_once("//")
            .map_or("", |(_, r)| &r[r.find('/').unwrap_or(r.len())..])
    );
    // Verb, 11 standard headers (all empty here), x-ms-* headers, resource.
    let to_sign = format!(
        "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n/{account}{path}\nrestype:container"
    );
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).expect("hmac key");
    mac.update(to_sign.as_bytes());
    let signature = STANDARD.encode(mac.finalize().into_bytes());
    let status = reqwest::Client::new()
        .put(format!("{blob_url}/{container}?restype=container"))
        .header("x-ms-date", date)
        .header("x-ms-version", version)
        .header("content-length", "0")
        .header("authorization", format!("SharedKey {account}:{signature}"))
        .send()
        .await
        .expect("Azurite answers")
        .status();
    assert!(
        status.is_success() || status.as_u16() == 409,
        "create container: {status}"
    );
}
