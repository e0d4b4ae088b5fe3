//! Opens the store, the queue and the blob store named on the command line.
//! The embedded default is one SQLite file (store and queue share a pool)
//! and a directory of blobs (`exactly-blob` over `object_store`'s local
//! file system). With the servers: PostgreSQL (store, queue), RabbitMQ or
//! NATS JetStream (queue), an S3 bucket (blobs), each behind its feature.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use exactly::{BlobStore, Colocated, Store, Transport};
use exactly_store_sqlite::{SqliteStore, open_pool, sqlx::SqlitePool};
use exactly_transport_sql::{SqlQueue, StoreAndQueue};

use exactly_blob::ObjectBlobStore;

/// Where a store or queue lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL URL (kept whole; never logged, it may hold a password).
    Postgres(String),
    /// A RabbitMQ URL, `amqp://` or `amqps://` (queues only).
    Amqp(String),
    /// A NATS URL, `nats://` (JetStream queues only).
    Nats(String),
}

impl Location {
    /// Parses `sqlite:PATH`, `sqlite://PATH`, `postgres://...`,
    /// `amqp://...` / `amqps://...` or `nats://...`.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        if let Some(path) = text.strip_prefix("sqlite:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                bail!("sqlite: needs a file path, e.g. sqlite:./data/exactly.sqlite");
            }
            return Ok(Self::Sqlite(PathBuf::from(path)));
        }
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            return Ok(Self::Postgres(text.to_owned()));
        }
        if text.starts_with("amqp://") || text.starts_with("amqps://") {
            return Ok(Self::Amqp(text.to_owned()));
        }
        if text.starts_with("nats://") {
            return Ok(Self::Nats(text.to_owned()));
        }
        let scheme = text.split(':').next().unwrap_or_default();
        bail!(
            "unsupported location scheme {scheme:?}: use sqlite:PATH, postgres://..., \
             amqp://... or nats://..."
        )
    }
}

/// The opened backends.
#[derive(Clone, Debug)]
pub struct Backend {
    /// Entity and intent records.
    pub store: Arc<dyn Store>,
    /// The queues.
    pub transport: Arc<dyn Transport>,
    /// Invoices and claim-checked bodies.
    pub blobs: Arc<dyn BlobStore>,
    /// The queue's SQLite pool, when the queue is on SQLite (the soak reads
    /// queue depths from it).
    pub queue_pool: Option<SqlitePool>,
    /// Store and queue in one SQLite file: commits, their sends and acks
    /// in one transaction (`EndpointBuilder::colocated`).
    pub colocated: Option<Arc<dyn Colocated>>,
}

/// Opens the store at `store`, the queue at `transport` (the store's
/// location if `None`) and blobs under `blobs`. Store and queue at the same
/// location share one connection pool.
pub async fn open(
    store: &Location,
    transport: Option<&Location>,
    blobs: &Path,
    lease: Duration,
) -> anyhow::Result<Backend> {
    let transport = transport.unwrap_or(store);
    let mut sqlite = SqlitePools::default();
    if let (Location::Sqlite(path), Location::Sqlite(queue_path)) = (store, transport)
        && path == queue_path
    {
        // One file, one pool: a commit, the messages it sends and its ack
        // are one SQLite transaction.
        let pool = sqlite.get(path).await?;
        let store = SqliteStore::from_pool(pool.clone()).await?;
        let db = StoreAndQueue::sqlite(store)
            .await?
            .with_queue(|q| q.visibility_timeout(lease));
        let db = Arc::new(db);
        return Ok(Backend {
            store: db.clone(),
            transport: db.clone(),
            blobs: Arc::new(open_blobs(blobs)?),
            queue_pool: Some(pool),
            colocated: Some(db),
        });
    }
    let (store, shared_pg): (Arc<dyn Store>, _) = match store {
        Location::Sqlite(path) => (
            Arc::new(SqliteStore::from_pool(sqlite.get(path).await?).await?),
            None,
        ),
        Location::Postgres(url) => {
            let (store, pool) = postgres::store(url).await?;
            (store, Some((url, pool)))
        }
        Location::Amqp(_) | Location::Nats(_) => {
            bail!("--store: RabbitMQ and NATS are queues; use sqlite:PATH or postgres://...")
        }
    };
    let (transport, queue_pool): (Arc<dyn Transport>, _) = match transport {
        Location::Sqlite(path) => {
            let pool = sqlite.get(path).await?;
            let queue = SqlQueue::from_pool(pool.clone())
                .await?
                .visibility_timeout(lease);
            (Arc::new(queue), Some(pool))
        }
        Location::Postgres(url) => {
            let pool = shared_pg.filter(|(u, _)| *u == url).map(|(_, p)| p);
            (postgres::queue(url, pool, lease).await?, None)
        }
        Location::Amqp(url) => (brokers::rabbitmq(url, lease).await?, None),
        Location::Nats(url) => (brokers::nats(url, lease).await?, None),
    };
    let blobs = open_blobs(blobs)?;
    Ok(Backend {
        store,
        transport,
        blobs: Arc::new(blobs),
        queue_pool,
        colocated: None,
    })
}

/// Blobs in the directory `location`, or in the S3 bucket `s3://BUCKET`
/// (endpoint from `AWS_ENDPOINT_URL` for S3-compatible servers, credentials
/// and region from the usual `AWS_*` variables; the bucket must exist).
fn open_blobs(location: &Path) -> anyhow::Result<ObjectBlobStore> {
    if let Some(bucket) = location.to_str().and_then(|l| l.strip_prefix("s3://")) {
        let bucket = bucket.trim_end_matches('/');
        if bucket.is_empty() || bucket.contains('/') {
            bail!("--blobs: s3://BUCKET names a bucket, without a path");
        }
        let endpoint = std::env::var("AWS_ENDPOINT_URL").ok();
        return ObjectBlobStore::s3(bucket, endpoint.as_deref())
            .with_context(|| format!("opening S3 bucket {bucket}"));
    }
    ObjectBlobStore::local(location)
        .with_context(|| format!("opening blob directory {}", location.display()))
}

/// RabbitMQ and NATS queues, each behind its feature; without it, a clear
/// error naming the feature.
mod brokers {
    use super::*;

    #[cfg(feature = "rabbitmq")]
    pub(super) async fn rabbitmq(url: &str, lease: Duration) -> anyhow::Result<Arc<dyn Transport>> {
        let queue = exactly_transport_rabbitmq::RabbitQueue::connect(url)
            .await
            .context("connecting to RabbitMQ")?;
        Ok(Arc::new(queue.visibility_timeout(lease)))
    }

    #[cfg(not(feature = "rabbitmq"))]
    pub(super) async fn rabbitmq(_: &str, _: Duration) -> anyhow::Result<Arc<dyn Transport>> {
        bail!("RabbitMQ support is not built in: build with `--features rabbitmq`")
    }

    #[cfg(feature = "nats")]
    pub(super) async fn nats(url: &str, lease: Duration) -> anyhow::Result<Arc<dyn Transport>> {
        let queue = exactly_transport_nats::NatsQueue::connect(url)
            .await
            .context("connecting to NATS")?;
        Ok(Arc::new(queue.visibility_timeout(lease)))
    }

    #[cfg(not(feature = "nats"))]
    pub(super) async fn nats(_: &str, _: Duration) -> anyhow::Result<Arc<dyn Transport>> {
        bail!("NATS support is not built in: build with `--features nats`")
    }
}

/// One pool per SQLite file, so store and queue on one file share it.
#[derive(Default)]
struct SqlitePools(Vec<(PathBuf, SqlitePool)>);

impl SqlitePools {
    async fn get(&mut self, path: &PathBuf) -> anyhow::Result<SqlitePool> {
        if let Some((_, pool)) = self.0.iter().find(|(p, _)| p == path) {
            return Ok(pool.clone());
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let pool = open_pool(path)
            .await
            .with_context(|| format!("opening SQLite file {}", path.display()))?;
        self.0.push((path.clone(), pool.clone()));
        Ok(pool)
    }
}

/// PostgreSQL store and queue (feature `postgres`). Their errors never
/// contain the password.
#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use exactly_store_postgres::PostgresStore;
    use exactly_store_postgres::sqlx::PgPool;

    pub(super) async fn store(url: &str) -> anyhow::Result<(Arc<dyn Store>, Option<PgPool>)> {
        let store = PostgresStore::connect(url).await?;
        let pool = store.pool().clone();
        Ok((Arc::new(store), Some(pool)))
    }

    pub(super) async fn queue(
        url: &str,
        shared: Option<Option<PgPool>>,
        lease: Duration,
    ) -> anyhow::Result<Arc<dyn Transport>> {
        let queue = match shared.flatten() {
            Some(pool) => SqlQueue::from_pg_pool(pool).await?,
            None => SqlQueue::connect_postgres(url).await?,
        };
        Ok(Arc::new(queue.visibility_timeout(lease)))
    }
}

/// Without the `postgres` feature: a clear error.
#[cfg(not(feature = "postgres"))]
mod postgres {
    use super::*;

    fn not_built<T>() -> anyhow::Result<T> {
        bail!(
            "PostgreSQL support is not built in: build with \
             `cargo run -p order-service --features postgres`, or use sqlite:PATH"
        )
    }

    pub(super) async fn store(_: &str) -> anyhow::Result<(Arc<dyn Store>, Option<()>)> {
        not_built()
    }

    pub(super) async fn queue(
        _: &str,
        _: Option<Option<()>>,
        _: Duration,
    ) -> anyhow::Result<Arc<dyn Transport>> {
        not_built()
    }
}

#[cfg(test)]
mod tests {
    use super::Location;

    #[test]
    fn locations_parse_and_bad_ones_are_refused() {
        assert_eq!(
            Location::parse("sqlite:data/x.sqlite").expect("parses"),
            Location::Sqlite("data/x.sqlite".into())
        );
        assert_eq!(
            Location::parse("sqlite:///tmp/x.sqlite").expect("parses"),
            Location::Sqlite("/tmp/x.sqlite".into())
        );
        assert!(matches!(
            Location::parse("postgres://u:secret@db/app").expect("parses"),
            Location::Postgres(_)
        ));
        assert!(matches!(
            Location::parse("amqp://guest:guest@127.0.0.1:5672/%2f").expect("parses"),
            Location::Amqp(_)
        ));
        assert!(matches!(
            Location::parse("nats://127.0.0.1:4222").expect("parses"),
            Location::Nats(_)
        ));
        assert!(Location::parse("sqlite:").is_err());
        let err = Location::parse("mysql://u:secret@db/app")
            .expect_err("refused")
            .to_string();
        assert!(!err.contains("secret"), "{err}");
    }
}
