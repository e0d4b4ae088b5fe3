//! The store + transport pairs a scenario runs on, created fresh for every
//! run so no run inherits another's rows.

use std::sync::Arc;

use exactly::{MemoryStore, MemoryTransport};
use exactly_store_sqlite::SqliteStore;
use exactly_transport_sql::StoreAndQueue;

use crate::workload::Fresh;

/// Where a run's records and queue live.
pub enum Backend {
    /// `MemoryStore` + `MemoryTransport`: no I/O at all.
    Memory,
    /// `SqliteStore` + `SqlQueue` sharing one pool on one file (the
    /// embedded default: WAL, `synchronous = FULL`).
    Sqlite,
    /// `PostgresStore` + `SqlQueue` sharing one pool.
    #[cfg(feature = "postgres")]
    Postgres(crate::pg::Postgres),
    /// `PostgresStore` + `RabbitQueue` on the broker at the URL.
    #[cfg(feature = "rabbitmq")]
    PostgresRabbit(crate::pg::Postgres, String),
    /// `ObjectStoreStore` in a fresh S3 bucket + `NatsQueue`.
    #[cfg(feature = "s3-nats")]
    S3Nats(crate::s3_nats::S3Nats),
}

impl Backend {
    pub fn label(&self) -> &'static str {
        match self {
            Backend::Memory => "memory",
            Backend::Sqlite => "sqlite",
            #[cfg(feature = "postgres")]
            Backend::Postgres(_) => "postgres",
            #[cfg(feature = "rabbitmq")]
            Backend::PostgresRabbit(..) => "postgres + rabbitmq",
            #[cfg(feature = "s3-nats")]
            Backend::S3Nats(_) => "s3 + nats",
        }
    }

    /// A fresh store and transport for run `run` (a name no other run
    /// has, see [`crate::workload::run_name`]) with `workers` workers, each
    /// taking up to `batch` deliveries at once.
    pub async fn fresh(&self, workers: usize, batch: usize, run: &str) -> Result<Fresh, String> {
        #[cfg(not(feature = "rabbitmq"))]
        let _ = batch; // Only the broker's prefetch depends on it.
        #[cfg(not(feature = "s3-nats"))]
        let _ = run; // The other backends empty their tables instead.
        match self {
            // With `put_all` (the store's opt-in), like SQLite and PostgreSQL.
            Backend::Memory => Ok(Fresh {
                store: Arc::new(MemoryStore::new().atomic_multi_key(true)),
                transport: Arc::new(MemoryTransport::new()),
                colocated: None,
                _keep: Box::new(()),
            }),
            Backend::Sqlite => {
                let _ = workers; // SQLite has one writer; the default pool is used as is.
                let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
                let pool = exactly_store_sqlite::open_pool(dir.path().join("bench.db"))
                    .await
                    .map_err(|e| e.to_string())?;
                let store = SqliteStore::from_pool(pool)
                    .await
                    .map_err(|e| e.to_string())?;
                let db = Arc::new(
                    StoreAndQueue::sqlite(store)
                        .await
                        .map_err(|e| e.to_string())?,
                );
                Ok(Fresh {
                    store: db.clone(),
                    transport: db.clone(),
                    colocated: Some(db),
                    _keep: Box::new(dir),
                })
            }
            #[cfg(feature = "postgres")]
            Backend::Postgres(pg) => pg.fresh(workers).await,
            #[cfg(feature = "rabbitmq")]
            Backend::PostgresRabbit(pg, url) => {
                pg.fresh_with(workers, async |_| {
                    // As `RabbitQueue::prefetch` advises: above what the
                    // workers hold at once, or batches come out short and
                    // the rest by `basic.get`, one message each.
                    let held = 2 * workers * batch;
                    let prefetch = u16::try_from(held)
                        .unwrap_or(u16::MAX)
                        .max(exactly_transport_rabbitmq::DEFAULT_PREFETCH);
                    let queue = exactly_transport_rabbitmq::RabbitQueue::connect(url)
                        .await
                        .map_err(|e| e.to_string())?
                        .prefetch(prefetch);
                    Ok(Arc::new(queue) as Arc<dyn exactly::Transport>)
                })
                .await
            }
            #[cfg(feature = "s3-nats")]
            Backend::S3Nats(servers) => servers.fresh(run).await,
        }
    }
}

/// The server URL in the environment variable `var`; `Err` says how to
/// start `service` and set it.
#[cfg(any(feature = "rabbitmq", feature = "s3-nats"))]
pub fn server_url(var: &str, service: &str) -> Result<String, String> {
    std::env::var(var).map_err(|_| {
        format!(
            "{var} is not set (`scripts/services.sh up {service}`, then \
             `eval \"$(scripts/services.sh env)\"`)"
        )
    })
}
