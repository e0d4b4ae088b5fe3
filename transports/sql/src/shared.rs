//! [`StoreAndQueue`]: the SQL store and the SQL queue in one database, and
//! the one transaction of a commit, its sends and its ack
//! ([`Colocated`]).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use exactly::store::Capabilities as StoreCapabilities;
use exactly::transport::Capabilities;
use exactly::{
    Colocated, Delivery, Outgoing, Precondition, Receipt, Store, StoreError, Transport,
    TransportError, Version, Versioned, Write,
};

use crate::SqlQueue;
use crate::queue::acked_rows;

/// A store and the [`SqlQueue`] on the same database connection pool: the
/// endpoint's [`Store`], its [`Transport`] and their one transaction
/// ([`Colocated`]), in one object, so that the three cannot name
/// different databases.
///
/// Pass it as all three: a message that sends nothing then costs the
/// endpoint one read and one commit that also acks it (against a commit
/// and a separate ack), a message whose handler sends is committed, sent
/// and acked in that same transaction, and a [`Sender`](exactly::Sender)
/// commits each intent together with its message (one commit against two).
///
/// ```
/// use std::sync::Arc;
/// use exactly::{Endpoint, Sender};
/// use exactly_transport_sql::StoreAndQueue;
///
/// # #[cfg(feature = "sqlite")]
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let dir = tempfile::tempdir().unwrap();
/// let store = exactly_store_sqlite::SqliteStore::open(dir.path().join("app.db"))
///     .await
///     .unwrap();
/// let db = Arc::new(StoreAndQueue::sqlite(store).await.unwrap());
///
/// let sender = Sender::new("web", db.clone(), db.clone())
///     .unwrap()
///     .colocated(db.clone());
/// let endpoint = Endpoint::builder("accounts", db.clone(), db.clone())
///     .colocated(db.clone())
///     .build()
///     .unwrap();
/// # let _ = (sender, endpoint);
/// # });
/// ```
#[derive(Clone, Debug)]
pub struct StoreAndQueue {
    store: Arc<dyn Store>,
    queue: SqlQueue,
    max_value_bytes: usize,
}

impl StoreAndQueue {
    /// The SQLite `store` and a queue on its pool (the table created if
    /// missing).
    #[cfg(feature = "sqlite")]
    pub async fn sqlite(store: exactly_store_sqlite::SqliteStore) -> Result<Self, TransportError> {
        let queue = SqlQueue::from_pool(store.pool().clone()).await?;
        Ok(Self::new(Arc::new(store), queue))
    }

    /// The PostgreSQL `store` and a queue on its pool (the table created if
    /// missing).
    #[cfg(feature = "postgres")]
    pub async fn postgres(
        store: exactly_store_postgres::PostgresStore,
    ) -> Result<Self, TransportError> {
        let queue = SqlQueue::from_pg_pool(store.pool().clone()).await?;
        Ok(Self::new(Arc::new(store), queue))
    }

    fn new(store: Arc<dyn Store>, queue: SqlQueue) -> Self {
        let max_value_bytes = store.capabilities().max_value_bytes.unwrap_or(usize::MAX);
        Self {
            store,
            queue,
            max_value_bytes,
        }
    }

    /// Changes the queue's settings (visibility timeout, poll interval,
    /// clock, message size limit), e.g.
    /// `db.with_queue(|q| q.visibility_timeout(Duration::from_secs(60)))`.
    pub fn with_queue(mut self, settings: impl FnOnce(SqlQueue) -> SqlQueue) -> Self {
        self.queue = settings(self.queue);
        self
    }

    /// The queue.
    pub fn queue(&self) -> &SqlQueue {
        &self.queue
    }
}

#[async_trait]
impl Colocated for StoreAndQueue {
    async fn put_all_with(
        &self,
        writes: Vec<Write>,
        send: Vec<Outgoing>,
        ack: Vec<Receipt>,
    ) -> Result<Vec<Version>, StoreError> {
        let rows = self.queue.rows(send).map_err(refused_message)?;
        let acked = acked_rows(&ack).map_err(refused_message)?;
        let sent = !rows.is_empty();
        let versions = self
            .queue
            .table()
            .commit_with(&writes, self.max_value_bytes, rows, &acked)
            .await?;
        if sent {
            self.queue.wake();
        }
        Ok(versions)
    }
}

/// A message the queue refuses (too large, a receipt it did not issue)
/// fails the whole transaction before it starts.
fn refused_message(error: TransportError) -> StoreError {
    StoreError::generic(format!("the queue refused the commit's messages: {error}"))
}

#[async_trait]
impl Store for StoreAndQueue {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        self.store.get(key).await
    }

    async fn get_all(&self, keys: &[&str]) -> Result<Vec<Option<Versioned>>, StoreError> {
        self.store.get_all(keys).await
    }

    async fn put(
        &self,
        key: &str,
        value: Bytes,
        precondition: Precondition,
    ) -> Result<Version, StoreError> {
        self.store.put(key, value, precondition).await
    }

    async fn delete(&self, key: &str, version: &Version) -> Result<(), StoreError> {
        self.store.delete(key, version).await
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        self.store.list(prefix, start_after, limit).await
    }

    async fn put_all(&self, writes: Vec<Write>) -> Result<Vec<Version>, StoreError> {
        self.store.put_all(writes).await
    }

    fn capabilities(&self) -> StoreCapabilities {
        self.store.capabilities()
    }
}

#[async_trait]
impl Transport for StoreAndQueue {
    async fn send(&self, batch: Vec<Outgoing>) -> Result<(), TransportError> {
        self.queue.send(batch).await
    }

    async fn receive(
        &self,
        queue: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>, TransportError> {
        self.queue.receive(queue, max, wait).await
    }

    async fn ack(&self, receipt: &Receipt) -> Result<(), TransportError> {
        self.queue.ack(receipt).await
    }

    async fn ack_all(&self, receipts: &[Receipt]) -> Result<(), TransportError> {
        self.queue.ack_all(receipts).await
    }

    async fn nack(&self, receipt: &Receipt, delay: Duration) -> Result<(), TransportError> {
        self.queue.nack(receipt, delay).await
    }

    fn capabilities(&self) -> Capabilities {
        self.queue.capabilities()
    }
}
