//! The transports measured, each with the way to remove the queues a run
//! leaves on its server.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use exactly::{MemoryTransport, Transport, TransportError};
use exactly_transport_nats::NatsQueue;
use exactly_transport_rabbitmq::RabbitQueue;
use exactly_transport_sql::SqlQueue;
use exactly_transport_sqs::SqsQueue;

/// A transport the bench cleans up after.
#[async_trait]
pub trait Benched: Transport {
    /// Removes `queue` where the server keeps a queue once it is empty.
    async fn clean_up(&self, queue: &str) -> Result<(), TransportError>;
}

#[async_trait]
impl Benched for MemoryTransport {
    async fn clean_up(&self, _queue: &str) -> Result<(), TransportError> {
        Ok(())
    }
}

/// A drained SQL queue leaves no rows: every message was acked (deleted).
#[async_trait]
impl Benched for SqlQueue {
    async fn clean_up(&self, _queue: &str) -> Result<(), TransportError> {
        Ok(())
    }
}

#[async_trait]
impl Benched for RabbitQueue {
    async fn clean_up(&self, queue: &str) -> Result<(), TransportError> {
        self.delete_queue(queue).await
    }
}

#[async_trait]
impl Benched for NatsQueue {
    async fn clean_up(&self, queue: &str) -> Result<(), TransportError> {
        self.delete_queue(queue).await
    }
}

#[async_trait]
impl Benched for SqsQueue {
    async fn clean_up(&self, queue: &str) -> Result<(), TransportError> {
        self.delete_queue(queue).await
    }
}

/// One transport to measure.
pub struct Subject {
    /// Its name in queue names.
    pub name: &'static str,
    /// Its name in the table.
    pub label: String,
    /// The transport, with its clean-up.
    pub transport: Arc<dyn Benched>,
    /// It gets `1 / share` of the messages.
    pub share: usize,
}

impl Subject {
    fn new(name: &'static str, transport: Arc<dyn Benched>) -> Self {
        Self {
            name,
            label: name.to_owned(),
            transport,
            share: 1,
        }
    }
}

/// PostgreSQL's durability settings, which the numbers depend on.
async fn durability(url: &str) -> String {
    let read = async {
        let pool = sqlx::PgPool::connect(url).await?;
        let fsync: String = sqlx::query_scalar("SHOW fsync").fetch_one(&pool).await?;
        let commit: String = sqlx::query_scalar("SHOW synchronous_commit")
            .fetch_one(&pool)
            .await?;
        pool.close().await;
        Ok::<_, sqlx::Error>(format!("fsync={fsync}, synchronous_commit={commit}"))
    };
    read.await
        .unwrap_or_else(|e| format!("durability unknown: {e}"))
}

/// Names the transport in a connection error.
fn failed(name: &'static str) -> impl Fn(TransportError) -> String {
    move |e| format!("{name}: {e}")
}

/// The transports to measure: the embedded ones always, each server
/// transport whose `EXACTLY_TEST_*_URL` is set.
pub async fn subjects(dir: &Path) -> Result<Vec<Subject>, String> {
    let url = |var: &str| {
        let url = std::env::var(var).ok();
        if url.is_none() {
            println!("(left out: {var} is not set)");
        }
        url
    };
    let sqlite = SqlQueue::open(dir.join("bench.db"))
        .await
        .map_err(failed("sqlite"))?;
    let mut all = vec![
        Subject::new("memory", Arc::new(MemoryTransport::new())),
        Subject::new("sqlite", Arc::new(sqlite)),
    ];
    if let Some(url) = url("EXACTLY_TEST_POSTGRES_URL") {
        let queue = SqlQueue::connect_postgres(&url)
            .await
            .map_err(failed("postgres"))?;
        let mut subject = Subject::new("postgres", Arc::new(queue));
        subject.label = format!("postgres ({})", durability(&url).await);
        all.push(subject);
    }
    if let Some(url) = url("EXACTLY_TEST_RABBITMQ_URL") {
        let queue = RabbitQueue::connect(&url)
            .await
            .map_err(failed("rabbitmq"))?;
        all.push(Subject::new("rabbitmq", Arc::new(queue)));
    }
    if let Some(url) = url("EXACTLY_TEST_NATS_URL") {
        let queue = NatsQueue::connect(&url).await.map_err(failed("nats"))?;
        all.push(Subject::new("nats", Arc::new(queue)));
    }
    if let Some(url) = url("EXACTLY_TEST_SQS_URL") {
        let mut subject = Subject::new("sqs", Arc::new(SqsQueue::emulator(&url)));
        subject.label = "sqs (moto, an emulator)".into();
        subject.share = 10;
        all.push(subject);
    }
    Ok(all)
}
