//! Building an [`ObjectStoreStore`]: a [`Builder`] over any object store,
//! and constructors for the backends exactly is tested on.

use std::sync::Arc;
use std::time::Duration;

use exactly::StoreError;
use object_store::aws::{AmazonS3Builder, S3ConditionalPut};
use object_store::azure::MicrosoftAzureBuilder;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{BackoffConfig, ObjectStore, RetryConfig};

use crate::local_files::LocalFiles;
use crate::store::{DEFAULT_MAX_VALUE_BYTES, ObjectStoreStore};

/// Azurite's published development account and key (not a secret).
const AZURITE_ACCOUNT: &str = "devstoreaccount1";
const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// The retries the built-in constructors give object_store: 3 tries
/// within 10 s, then the call fails `Unavailable` and the protocol's own
/// retry takes over (object_store's default keeps a call for 3 minutes).
pub fn retry_config() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig::default(),
        max_retries: 3,
        retry_timeout: Duration::from_secs(10),
    }
}

/// Options for an [`ObjectStoreStore`]; [`open`](Builder::open) probes
/// the backend and builds it.
#[derive(Debug)]
pub struct Builder {
    store: Arc<dyn ObjectStore>,
    root: String,
    max_value_bytes: usize,
    sorted_listing: bool,
}

impl Builder {
    /// Where the store's objects go: `{root}/kv/...` (default `exactly`).
    pub fn root(mut self, root: impl Into<String>) -> Self {
        self.root = root.into();
        self
    }

    /// Refuses values over `limit` bytes with [`StoreError::TooLarge`]
    /// (default [`DEFAULT_MAX_VALUE_BYTES`]).
    pub fn max_value_bytes(mut self, limit: usize) -> Self {
        self.max_value_bytes = limit;
        self
    }

    /// Whether the backend lists names in ascending byte order (S3, Azure,
    /// GCS and `InMemory` do; object_store does not promise it). Then a
    /// `list` page stops reading once it is full; otherwise it reads every
    /// name under the prefix and sorts. Default: false.
    pub fn sorted_listing(mut self, sorted: bool) -> Self {
        self.sorted_listing = sorted;
        self
    }

    /// Probes the backend's conditional writes and builds the store.
    pub async fn open(self) -> Result<ObjectStoreStore, StoreError> {
        let root = Path::parse(&self.root)
            .map_err(|e| StoreError::generic(format!("invalid root {:?}: {e}", self.root)))?;
        crate::probe::probe(self.store.as_ref(), &root).await?;
        Ok(ObjectStoreStore {
            kv: crate::key::join(&root, "kv"),
            store: self.store,
            max_value_bytes: self.max_value_bytes,
            sorted_listing: self.sorted_listing,
        })
    }
}

fn config_err(e: object_store::Error) -> StoreError {
    StoreError::generic(e)
}

/// Probes and opens a backend that lists in byte order, with defaults.
async fn open_sorted(store: impl ObjectStore) -> Result<ObjectStoreStore, StoreError> {
    ObjectStoreStore::builder(Arc::new(store))
        .sorted_listing(true)
        .open()
        .await
}

impl ObjectStoreStore {
    /// A [`Builder`] over any object store.
    pub fn builder(store: Arc<dyn ObjectStore>) -> Builder {
        Builder {
            store,
            root: "exactly".to_owned(),
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
            sorted_listing: false,
        }
    }

    /// S3 `bucket`, with credentials and region from the `AWS_*`
    /// environment variables. `endpoint` is for S3-compatible services
    /// (MinIO, R2, moto: e.g. `http://127.0.0.1:9000`): path-style
    /// requests, plain HTTP allowed when the URL says `http://`.
    /// Conditional writes use the standard `If-Match` / `If-None-Match`
    /// headers (`S3ConditionalPut::ETagMatch`).
    pub async fn s3(endpoint: Option<&str>, bucket: &str) -> Result<Self, StoreError> {
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_conditional_put(S3ConditionalPut::ETagMatch)
            .with_retry(retry_config());
        if let Some(endpoint) = endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"))
                .with_virtual_hosted_style_request(false);
        }
        let s3 = builder.build().map_err(config_err)?;
        open_sorted(s3).await
    }

    /// Azure Blob `container`, configured from the `AZURE_*` environment
    /// variables (account, credentials).
    pub async fn azure(container: &str) -> Result<Self, StoreError> {
        let azure = MicrosoftAzureBuilder::from_env()
            .with_container_name(container)
            .with_retry(retry_config())
            .build()
            .map_err(config_err)?;
        open_sorted(azure).await
    }

    /// `container` on the Azurite emulator at `blob_url` (e.g.
    /// `http://127.0.0.1:10000/devstoreaccount1`), with its well-known
    /// development account and key.
    pub async fn azure_emulator(blob_url: &str, container: &str) -> Result<Self, StoreError> {
        let azure = MicrosoftAzureBuilder::new()
            .with_endpoint(blob_url.to_owned())
            .with_allow_http(true)
            .with_account(AZURITE_ACCOUNT)
            .with_access_key(AZURITE_KEY)
            .with_container_name(container)
            .with_retry(retry_config())
            .build()
            .map_err(config_err)?;
        open_sorted(azure).await
    }

    /// Files under `dir` (created if missing), through [`LocalFiles`]:
    /// object_store's `LocalFileSystem` with compare-and-swap added under
    /// a lock file, so processes of one host may share `dir`. A plain
    /// `LocalFileSystem` given to [`builder`](Self::builder) is refused:
    /// it has no `PutMode::Update`.
    pub async fn local(dir: impl AsRef<std::path::Path>) -> Result<Self, StoreError> {
        let local = LocalFiles::new(dir).map_err(config_err)?;
        Self::builder(Arc::new(local)).open().await
    }

    /// In memory (object_store's `InMemory`), for tests: a crash loses it.
    pub async fn memory() -> Result<Self, StoreError> {
        open_sorted(InMemory::new()).await
    }
}
