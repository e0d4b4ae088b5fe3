//! What the soak checks once the service is quiet: every accepted order
//! shipped, every effect applied once, nobody charged twice, every invoice
//! readable, no orphan blob, and what went to the error queue and why.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use exactly::blob::BLOB_PREFIX;
use exactly::record::{ENTITY_PREFIX, EntityRecord, INTENT_PREFIX, read_record};
use exactly::{BlobCollector, BlobStore, Store, Transport};
use exactly_store_sqlite::sqlx::{self, SqlitePool};
use serde::de::DeserializeOwned;
use tracing::info;

use crate::backend::Backend;
use crate::billing::Bill;
use crate::orders::{Order, Status};
use crate::shipping::Shipment;

/// The state of `e/{endpoint}/{id}`, if committed.
pub async fn state<T: DeserializeOwned>(
    store: &dyn Store,
    endpoint: &str,
    id: &str,
) -> anyhow::Result<Option<T>> {
    let loaded = read_record(store, &format!("{ENTITY_PREFIX}{endpoint}/{id}")).await?;
    Ok(match loaded.record.state {
        Some(bytes) => Some(serde_json::from_slice(&bytes)?),
        None => None,
    })
}

/// Whether order `id` is shipped.
pub async fn shipped(store: &dyn Store, id: &str) -> bool {
    matches!(
        state::<Order>(store, "orders", id).await,
        Ok(Some(o)) if o.status == Status::Shipped
    )
}

/// Records with an unfinished outbox entry or an unconsumed token: work
/// still in flight. 0 means every message sent has been processed.
pub async fn unsettled(store: &dyn Store) -> anyhow::Result<usize> {
    let mut count = 0;
    for prefix in [ENTITY_PREFIX, INTENT_PREFIX] {
        let mut after: Option<String> = None;
        loop {
            let keys = store.list(prefix, after.as_deref(), 500).await?;
            for key in &keys {
                if let Some(found) = store.get(key).await?
                    && !EntityRecord::decode(key, &found.value)?.is_settled()
                {
                    count += 1;
                }
            }
            match keys.last() {
                Some(last) if keys.len() == 500 => after = Some(last.clone()),
                _ => break,
            }
        }
    }
    Ok(count)
}

/// Messages in each queue (delayed retries included), read from the SQL
/// queue's table — a peek at `exactly-transport-sql`'s schema, fine for a
/// soak on SQLite.
pub async fn queue_depths(pool: &SqlitePool) -> anyhow::Result<BTreeMap<String, i64>> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT queue, COUNT(*) FROM exactly_queue GROUP BY queue")
            .fetch_all(pool)
            .await?;
    Ok(rows.into_iter().collect())
}

/// What the verification found.
#[derive(Debug, Default)]
pub struct Findings {
    /// Accepted orders shipped.
    pub completed: u64,
    /// Orders whose messages were applied more than once somewhere.
    pub duplicated: u64,
    /// Invoices that read back with their checksum.
    pub invoices: u64,
    /// Invoices missing or corrupt.
    pub bad_invoices: u64,
    /// Attachments that reached Shipping with the right size.
    pub attachments: u64,
    /// Blobs the final collection deleted.
    pub gc_deleted: usize,
    /// Blobs left that nothing references.
    pub orphans: usize,
    /// Claim-check bodies left over.
    pub claims_left: usize,
    /// Blobs left in total (invoices, mostly).
    pub blobs_left: usize,
    /// Error-queued messages by reason.
    pub errors: BTreeMap<String, u64>,
}

/// Checks every accepted order (`(order id, attachment size)`).
pub async fn check_orders(
    store: &dyn Store,
    blobs: &dyn BlobStore,
    orders: &[(String, Option<u64>)],
    findings: &mut Findings,
) -> anyhow::Result<()> {
    for (id, attachment) in orders {
        let order: Option<Order> = state(store, "orders", id).await?;
        let bill: Option<Bill> = state(store, "billing", id).await?;
        let shipment: Option<Shipment> = state(store, "shipping", id).await?;
        let Some(order) = order else { continue };
        if order.status == Status::Shipped {
            findings.completed += 1;
        }
        let a = &order.applied;
        let twice = a.placed > 1
            || a.settled > 1
            || a.shipped > 1
            || bill
                .as_ref()
                .is_some_and(|b| b.charges_applied > 1 || b.answers_applied > 1)
            || shipment.as_ref().is_some_and(|s| s.ships_applied > 1);
        if twice {
            findings.duplicated += 1;
        }
        if *attachment == shipment.as_ref().and_then(|s| s.attachment_bytes) && attachment.is_some()
        {
            findings.attachments += 1;
        }
        let readable = match &order.invoice {
            Some(r) => match exactly::blob::read(blobs, r).await {
                Ok(stream) => exactly::blob::collect(stream).await.is_ok(),
                Err(_) => false,
            },
            None => false,
        };
        if readable {
            findings.invoices += 1;
        } else if order.status == Status::Shipped {
            findings.bad_invoices += 1;
        }
    }
    Ok(())
}

/// Runs the blob collector with no grace (every worker is stopped), then
/// counts what is left that no record references.
pub async fn check_blobs(
    store: Arc<dyn Store>,
    blobs: Arc<dyn BlobStore>,
    findings: &mut Findings,
) -> anyhow::Result<()> {
    let report = BlobCollector::new(store.clone(), blobs.clone())
        .grace(Duration::ZERO)
        .collect_once()
        .await?;
    findings.gc_deleted = report.deleted;
    for blob in blobs.list(BLOB_PREFIX).await? {
        findings.blobs_left += 1;
        let mut parts = blob.key[BLOB_PREFIX.len()..].splitn(3, '/');
        let (owner, attempt, name) = (parts.next(), parts.next(), parts.next().unwrap_or(""));
        if name.starts_with("claim-") {
            findings.claims_left += 1;
        }
        let owner = owner
            .and_then(|o| URL_SAFE_NO_PAD.decode(o).ok())
            .and_then(|o| String::from_utf8(o).ok());
        let referenced = match owner {
            Some(owner) => {
                let record = read_record(store.as_ref(), &owner).await?.record;
                record.blobs.contains(&blob.key)
                    || attempt.is_some_and(|a| record.blob_attempts.contains_key(a))
            }
            None => false,
        };
        if !referenced {
            findings.orphans += 1;
        }
    }
    Ok(())
}

/// Reads (leases, without acking) every message in the error queue and
/// groups them by reason.
pub async fn check_errors(
    transport: &dyn Transport,
    findings: &mut Findings,
) -> anyhow::Result<()> {
    loop {
        let got = transport.receive("error", 64, Duration::ZERO).await?;
        if got.is_empty() {
            return Ok(());
        }
        for delivery in got {
            let reason = delivery
                .envelope
                .headers
                .get("exactly-error-reason")
                .map_or("(no reason)", String::as_str);
            let reason: String = reason.chars().take(100).collect();
            let what = format!("{}: {reason}", delivery.envelope.message_type);
            *findings.errors.entry(what).or_default() += 1;
        }
    }
}

/// Waits until no record holds unfinished work and the queues are empty
/// (the error queue aside); returns whether that happened before `limit`.
pub async fn quiesce(backend: &Backend, limit: Duration) -> anyhow::Result<bool> {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        let unsettled = unsettled(backend.store.as_ref()).await?;
        let queued: i64 = match &backend.queue_pool {
            Some(pool) => queue_depths(pool)
                .await?
                .iter()
                .filter(|(q, _)| q.as_str() != "error")
                .map(|(_, n)| n)
                .sum(),
            None => 0,
        };
        if unsettled == 0 && queued == 0 {
            return Ok(true);
        }
        info!(unsettled, queued, "not quiet yet");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(false)
}
