//! [`Endpoint`]: handlers bound to a queue, a store and a transport, run by N
//! concurrent workers and a sweeper.

mod config;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::warn;

pub use config::{Config, Guarantee, RetryPolicy};

use crate::blob::BlobStore;
use crate::call::CallExecutor;
use crate::codec::{Codec, Json};
use crate::colocated::Colocated;
use crate::context::Routes;
use crate::env::Env;
use crate::error::InvalidName;
use crate::handler::{Erased, ErasedHandler, Handler};
use crate::message::Message;
use crate::protocol::{Core, Outcome, Probe, Stats, Sweeper};
use crate::record::{ENTITY_PREFIX, validate_name};
use crate::store::Store;
use crate::transport::{Delivery, Transport};

/// A named endpoint: receives from the queue of the same name and handles
/// each message exactly once per entity. Cheap to clone.
///
/// ```
/// use std::sync::Arc;
/// use exactly::{Endpoint, MemoryStore, MemoryTransport, Message, Sender, handler_fn};
/// # use serde::{Deserialize, Serialize};
/// #[derive(Serialize, Deserialize)]
/// struct Deposit { account: String, cents: u64 }
/// impl Message for Deposit { const TYPE: &'static str = "Deposit"; }
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let store = Arc::new(MemoryStore::new());
/// let transport = Arc::new(MemoryTransport::new());
/// let accounts = Endpoint::builder("accounts", store.clone(), transport.clone())
///     .handler(handler_fn(
///         |m: &Deposit| m.account.clone(),
///         |balance: &mut u64, m: Deposit, _ctx| { *balance += m.cents; Ok(()) },
///     ))
///     .build()
///     .unwrap();
///
/// let sender = Sender::new("teller", store.clone(), transport.clone()).unwrap();
/// sender.send("accounts", &Deposit { account: "a1".into(), cents: 500 }).await.unwrap();
///
/// let delivery = accounts.receive_one().await.unwrap().expect("a message");
/// assert_eq!(accounts.handle_delivery(delivery).await, exactly::Outcome::Processed);
/// # });
/// ```
#[derive(Clone)]
pub struct Endpoint {
    core: Arc<Core>,
}

#[cfg(test)]
impl Endpoint {
    /// The shared state, for the protocol's unit tests.
    pub(crate) fn core(&self) -> &Core {
        &self.core
    }
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("name", &self.core.name)
            .finish_non_exhaustive()
    }
}

/// Builds an [`Endpoint`].
pub struct EndpointBuilder {
    name: String,
    store: Arc<dyn Store>,
    transport: Arc<dyn Transport>,
    handlers: HashMap<String, Arc<dyn ErasedHandler>>,
    duplicate_types: Vec<&'static str>,
    codec: Arc<dyn Codec>,
    routes: Arc<Routes>,
    env: Env,
    config: Config,
    calls: Option<Arc<dyn CallExecutor>>,
    blobs: Option<Arc<dyn BlobStore>>,
    colocated: Option<Arc<dyn Colocated>>,
    dispatched: Arc<crate::protocol::dispatched::Dispatched>,
}

impl EndpointBuilder {
    /// Shares another process part's memory of sent entries (the harness
    /// gives its endpoints, `Sender` and sweeper one).
    #[cfg(feature = "harness")]
    pub(crate) fn dispatched(
        mut self,
        memory: Arc<crate::protocol::dispatched::Dispatched>,
    ) -> Self {
        self.dispatched = memory;
        self
    }

    /// Stores blob side effects and claim-checked bodies here.
    pub fn blobs(mut self, blobs: Arc<dyn BlobStore>) -> Self {
        self.blobs = Some(blobs);
        self
    }

    /// Bodies over `bytes` go through the claim check (default 256 KiB).
    pub fn claim_threshold(mut self, bytes: usize) -> Self {
        self.config.claim_threshold = bytes;
        self
    }

    /// Hard limit of one message body (default 64 MiB).
    pub fn max_payload_bytes(mut self, bytes: usize) -> Self {
        self.config.max_payload_bytes = bytes;
        self
    }

    /// Performs the third-party calls handlers capture with
    /// [`Context::call`](crate::Context::call).
    pub fn calls(mut self, executor: Arc<dyn CallExecutor>) -> Self {
        self.calls = Some(executor);
        self
    }

    /// Commits through `unit`, whose database holds this endpoint's store
    /// and queue: a message's commit, the messages it sends and its ack
    /// become one transaction (see [`Colocated`]; `unit` MUST commit to the
    /// store and transport this builder was given, as the SQL backend's
    /// `StoreAndQueue`, which is all three, does). Without it, the same
    /// steps run as separate calls.
    pub fn colocated(mut self, unit: Arc<dyn Colocated>) -> Self {
        self.colocated = Some(unit);
        self
    }

    /// Registers the handler for messages of type `M`.
    pub fn handler<M: Message, H: Handler<M>>(mut self, handler: H) -> Self {
        let erased: Arc<dyn ErasedHandler> = Arc::new(Erased::<M, H>::new(handler));
        if self.handlers.insert(M::TYPE.to_owned(), erased).is_some() {
            self.duplicate_types.push(M::TYPE);
        }
        self
    }

    /// Uses another codec for bodies and state (default: JSON).
    pub fn codec(mut self, codec: Arc<dyn Codec>) -> Self {
        self.codec = codec;
        self
    }

    /// Publish/subscribe routes for [`Context::publish`](crate::Context::publish).
    pub fn routes(mut self, routes: Arc<Routes>) -> Self {
        self.routes = routes;
        self
    }

    /// Injects time and randomness (default: system clock, OS randomness).
    pub fn env(mut self, env: Env) -> Self {
        self.env = env;
        self
    }

    /// The delivery guarantee (default exactly-once; at-least-once is the
    /// benchmark baseline).
    pub fn guarantee(mut self, guarantee: Guarantee) -> Self {
        self.config.guarantee = guarantee;
        self
    }

    /// Deliveries handled at once (default 8).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.config.concurrency = n.max(1);
        self
    }

    /// Most deliveries a worker receives and handles together (default 1,
    /// one at a time). A batch reads every entity record and token holder
    /// in one `Store::get_all`, commits in one `Store::put_all` on stores
    /// that write keys atomically, sends the messages of all its entries in
    /// one send and acks with one `Transport::ack_all`: fewer round trips
    /// and commits per message under load. Messages from one sender whose
    /// tokens share a record (a fan-out) consume them in one write of it
    /// on such stores, instead of racing each other for it one at a time
    /// (`Stats::shared_consumes`). Messages that share an entity with one
    /// already in the batch (or, on other stores, a token holder), and any
    /// the batch cannot settle, are handled one at a time after it. A
    /// transport that buffers deliveries ahead (RabbitMQ's prefetch) needs
    /// room for every worker's batch, or batches come out short.
    pub fn batch(mut self, n: usize) -> Self {
        self.config.batch = n.max(1);
        self
    }

    /// The retry policy.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.config.retry = policy;
        self
    }

    /// Accepts tokenless messages, deduplicated by an identity inbox that
    /// remembers processed ids for `retention`. A copy that arrives later
    /// than that is processed again: see `docs/protocol.md`.
    pub fn inbox_retention(mut self, retention: Duration) -> Self {
        self.config.inbox_retention = Some(retention);
        self
    }

    /// The error queue's name (default `error`).
    pub fn error_queue(mut self, queue: impl Into<String>) -> Self {
        self.config.error_queue = queue.into();
        self
    }

    /// How often the sweeper runs and how old an entry must be for it.
    pub fn sweep(mut self, interval: Duration, min_age: Duration) -> Self {
        self.config.sweep_interval = interval;
        self.config.sweep_min_age = min_age;
        self
    }

    /// Bounds each sweep pass to `records` entity records, each pass going
    /// on where the last stopped ([`Sweeper::records_per_pass`]). By
    /// default a pass reads every entity record of the endpoint.
    pub fn sweep_records_per_pass(mut self, records: usize) -> Self {
        self.config.sweep_records_per_pass = Some(records);
        self
    }

    /// How long one receive call waits (default 1 s).
    pub fn receive_wait(mut self, wait: Duration) -> Self {
        self.config.receive_wait = wait;
        self
    }

    /// Selects a deliberately broken protocol variant (harness only).
    #[cfg(feature = "harness")]
    #[doc(hidden)]
    pub fn mutant(mut self, mutant: Option<crate::protocol::Mutant>) -> Self {
        self.config.mutant = mutant;
        self
    }

    /// Checks the settings and builds the endpoint.
    pub fn build(self) -> Result<Endpoint, InvalidName> {
        validate_name("endpoint name", &self.name)?;
        if self.name.contains('/') {
            return Err(InvalidName {
                what: "endpoint name",
                value: self.name,
                reason: "must not contain '/'",
            });
        }
        if let Some(t) = self.duplicate_types.first() {
            return Err(InvalidName {
                what: "message type",
                value: (*t).to_owned(),
                reason: "has two handlers on this endpoint",
            });
        }
        let stats = Arc::new(Stats::for_endpoint(&self.name));
        Ok(Endpoint {
            core: Arc::new(Core {
                name: self.name,
                store: self.store,
                transport: self.transport,
                handlers: self.handlers,
                codec: self.codec,
                routes: self.routes,
                env: self.env,
                config: self.config,
                stats,
                calls: self.calls,
                blobs: self.blobs,
                colocated: self.colocated,
                dispatched: self.dispatched,
                consumes: Default::default(),
            }),
        })
    }
}

impl Endpoint {
    /// Starts building an endpoint named `name` (also its queue's name).
    pub fn builder(
        name: impl Into<String>,
        store: Arc<dyn Store>,
        transport: Arc<dyn Transport>,
    ) -> EndpointBuilder {
        EndpointBuilder {
            name: name.into(),
            store,
            transport,
            handlers: HashMap::new(),
            duplicate_types: Vec::new(),
            codec: Arc::new(Json),
            routes: Arc::default(),
            env: Env::system(),
            config: Config::default(),
            calls: None,
            blobs: None,
            colocated: None,
            dispatched: Arc::default(),
        }
    }

    /// The endpoint's name and queue.
    pub fn name(&self) -> &str {
        &self.core.name
    }

    /// Counters of what this endpoint did.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.core.stats
    }

    /// The settings in force.
    pub fn config(&self) -> &Config {
        &self.core.config
    }

    /// Receives at most one delivery without waiting.
    pub async fn receive_one(&self) -> Result<Option<Delivery>, crate::TransportError> {
        let mut got = self
            .core
            .transport
            .receive(&self.core.name, 1, Duration::ZERO)
            .await?;
        Ok(got.pop())
    }

    /// Handles one delivery completely, ack included.
    pub async fn handle_delivery(&self, delivery: Delivery) -> Outcome {
        self.core.handle_delivery(delivery, None).await
    }

    /// Handles the deliveries of one receive together (see
    /// [`EndpointBuilder::batch`]), acks included; returns their outcomes
    /// in the order given.
    pub async fn handle_batch(&self, deliveries: Vec<Delivery>) -> Vec<Outcome> {
        self.core.handle_batch(deliveries, None).await
    }

    /// Like [`Endpoint::handle_batch`], calling `probe` before every step.
    pub async fn handle_batch_probed(
        &self,
        deliveries: Vec<Delivery>,
        probe: &dyn Probe,
    ) -> Vec<Outcome> {
        self.core.handle_batch(deliveries, Some(probe)).await
    }

    /// Handles one delivery, calling `probe` before every protocol step.
    pub async fn handle_delivery_probed(&self, delivery: Delivery, probe: &dyn Probe) -> Outcome {
        self.core.handle_delivery(delivery, Some(probe)).await
    }

    /// A sweeper over this endpoint's entity records.
    pub fn sweeper(&self) -> Sweeper {
        let core = &self.core;
        let sweeper = Sweeper::new(core.store.clone(), core.transport.clone())
            .prefix(format!("{ENTITY_PREFIX}{}/", core.name))
            .min_age(core.config.sweep_min_age)
            .env(core.env.clone())
            .codec(core.codec.clone())
            .calls(core.calls.clone())
            .blobs(core.blobs.clone())
            .dispatched(core.dispatched.clone())
            .with_stats(core.stats.clone(), core.config.mutant);
        match core.config.sweep_records_per_pass {
            Some(records) => sweeper.records_per_pass(records),
            None => sweeper,
        }
    }

    /// Runs `concurrency` workers and (exactly-once only) the sweeper until
    /// `shutdown` completes.
    /// Deliveries in progress are finished; nothing unfinished is acked.
    pub async fn run(&self, shutdown: impl Future<Output = ()> + Send) {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..self.core.config.concurrency {
            let endpoint = self.clone();
            let stop = stop_rx.clone();
            tasks.spawn(async move { endpoint.work(stop).await });
        }
        // At-least-once endpoints keep no outbox: nothing for a sweep to find.
        if self.core.config.guarantee == Guarantee::ExactlyOnce {
            let sweeper = self.sweeper();
            let interval = self.core.config.sweep_interval;
            let mut stop = stop_rx.clone();
            tasks.spawn(async move {
                sweeper
                    .run(interval, async move {
                        let _ = stop.wait_for(|s| *s).await;
                    })
                    .await;
            });
        }
        shutdown.await;
        let _ = stop_tx.send(true);
        while tasks.join_next().await.is_some() {}
    }

    async fn work(&self, mut stop: watch::Receiver<bool>) {
        let core = &self.core;
        while !*stop.borrow() {
            let (batch, wait) = (core.config.batch, core.config.receive_wait);
            let received = tokio::select! {
                r = core.transport.receive(&core.name, batch, wait) => r,
                _ = stop.wait_for(|s| *s) => return,
            };
            match received {
                Ok(mut deliveries) if deliveries.len() == 1 => {
                    if let Some(delivery) = deliveries.pop() {
                        core.handle_delivery(delivery, None).await;
                    }
                }
                Ok(deliveries) => {
                    core.handle_batch(deliveries, None).await;
                }
                Err(e) => {
                    warn!(endpoint = %core.name, error = %e, "receive failed; backing off");
                    core.env.clock.sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }
}
