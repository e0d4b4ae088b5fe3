//! What every endpoint of the service is built from: the store, the queue,
//! the blob store and the endpoint settings, shared by all roles.

use std::sync::Arc;
use std::time::Duration;

use exactly::{BlobStore, Colocated, Endpoint, EndpointBuilder, Store, Transport};

/// Message bodies above this go through the claim check (an order's
/// attachment on its way to Shipping).
pub const CLAIM_THRESHOLD: usize = 64 * 1024;

/// The backends and settings the endpoints share.
#[derive(Clone, Debug)]
pub struct Deps {
    /// Entity and intent records.
    pub store: Arc<dyn Store>,
    /// The queues.
    pub transport: Arc<dyn Transport>,
    /// Invoices and claim-checked bodies.
    pub blobs: Arc<dyn BlobStore>,
    /// Deliveries each endpoint handles at once.
    pub concurrency: usize,
    /// How often each endpoint's sweeper runs.
    pub sweep_interval: Duration,
    /// The fake (or real) payment provider's base URL, for Billing.
    pub payments_url: Option<String>,
    /// Store and queue in one database: commit, sends and ack in one
    /// transaction.
    pub colocated: Option<Arc<dyn Colocated>>,
}

impl Deps {
    /// An endpoint builder with the shared settings.
    pub fn builder(&self, name: &str) -> EndpointBuilder {
        let builder = Endpoint::builder(name, self.store.clone(), self.transport.clone());
        let builder = match &self.colocated {
            Some(unit) => builder.colocated(unit.clone()),
            None => builder,
        };
        builder
            .blobs(self.blobs.clone())
            .claim_threshold(CLAIM_THRESHOLD)
            .concurrency(self.concurrency)
            .sweep(self.sweep_interval, Duration::from_secs(2))
            // Workers of other processes send into our queues; a short wait
            // keeps shutdown quick (the SQL queue polls anyway).
            .receive_wait(Duration::from_millis(500))
    }
}
