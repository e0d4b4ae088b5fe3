//! S3 + NATS: `ObjectStoreStore` in a fresh bucket on an S3-compatible
//! server (moto, `EXACTLY_TEST_S3_URL`) and `NatsQueue` on a JetStream
//! server (`EXACTLY_TEST_NATS_URL`), both from `scripts/services.sh`.

use std::sync::Arc;

use exactly_store_object::ObjectStoreStore;
use exactly_transport_nats::NatsQueue;

use crate::backend::server_url;
use crate::workload::Fresh;

/// The two servers' addresses, read by [`S3Nats::from_env`].
pub struct S3Nats {
    s3_url: String,
    nats_url: String,
    http: reqwest::Client,
}

impl S3Nats {
    /// Reads `EXACTLY_TEST_S3_URL` and `EXACTLY_TEST_NATS_URL` (the S3
    /// credentials and region come from the `AWS_*` variables, which
    /// `scripts/services.sh env` sets for moto). `Err` names what is
    /// missing.
    pub fn from_env() -> Result<Self, String> {
        let s3_url = server_url("EXACTLY_TEST_S3_URL", "moto");
        let nats_url = server_url("EXACTLY_TEST_NATS_URL", "nats");
        match (s3_url, nats_url) {
            (Ok(s3_url), Ok(nats_url)) => Ok(Self {
                s3_url,
                nats_url,
                http: reqwest::Client::new(),
            }),
            (Err(why), Ok(_)) | (Ok(_), Err(why)) => Err(why),
            (Err(s3), Err(nats)) => Err(format!("{s3}; {nats}")),
        }
    }

    /// A store in the new bucket `exactly-bench-{run}` and a new NATS
    /// connection (the run's queue names are fresh already).
    pub async fn fresh(&self, run: &str) -> Result<Fresh, String> {
        let bucket = bucket_name(run);
        self.create_bucket(&bucket).await?;
        let store = ObjectStoreStore::s3(Some(&self.s3_url), &bucket)
            .await
            .map_err(|e| format!("the S3 store in {bucket}: {e}"))?;
        let queue = NatsQueue::connect(&self.nats_url)
            .await
            .map_err(|e| format!("connecting to NATS: {e}"))?;
        Ok(Fresh {
            store: Arc::new(store),
            transport: Arc::new(queue),
            colocated: None,
            _keep: Box::new(()),
        })
    }

    /// An unsigned `PUT /{bucket}`, which moto accepts (object_store
    /// cannot create buckets); an existing bucket (409) is fine.
    async fn create_bucket(&self, bucket: &str) -> Result<(), String> {
        let url = format!("{}/{bucket}", self.s3_url.trim_end_matches('/'));
        let status = self
            .http
            .put(&url)
            .send()
            .await
            .map_err(|e| format!("creating the bucket {url}: {e}"))?
            .status();
        if status.is_success() || status.as_u16() == 409 {
            Ok(())
        } else {
            Err(format!("creating the bucket {url}: {status}"))
        }
    }
}

/// The bucket of run `run`: S3 wants 3–63 lowercase letters, digits and
/// hyphens.
fn bucket_name(run: &str) -> String {
    format!("exactly-bench-{run}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_buckets_are_valid_and_distinct() {
        let (a, b) = (
            bucket_name(&crate::workload::run_name()),
            bucket_name(&crate::workload::run_name()),
        );
        assert_ne!(a, b);
        for name in [a, b] {
            assert!((3..=63).contains(&name.len()), "{name}");
            assert!(
                name.bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-'),
                "{name}"
            );
        }
    }
}
