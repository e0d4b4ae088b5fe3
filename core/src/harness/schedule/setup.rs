//! A schedule's world: its endpoints, sender and sweepers over the backend
//! with faults and recording between them and it.

use std::sync::Arc;
use std::time::Duration;

use super::World;
use crate::blob::BlobStore;
use crate::colocated::Colocated;
use crate::context::Routes;
use crate::endpoint::{Endpoint, RetryPolicy};
use crate::env::{Env, Random};
use crate::fault::{FaultyColocated, FaultyStore, FaultyTransport};
use crate::harness::Config;
use crate::harness::calls::CallsUnderTest;
use crate::harness::recorder::{RecordingColocated, RecordingStore, RecordingTransport, SharedLog};
use crate::harness::workload::{CLAIM_THRESHOLD, FanHandler, Fanned, HopHandler, PaidHandler};
use crate::protocol::Sweeper;
use crate::record::{ENTITY_PREFIX, INTENT_PREFIX};
use crate::sender::Sender;
use crate::store::Store;
use crate::transport::Transport;

impl World {
    pub(super) fn new(
        config: &Config,
        backend: &crate::harness::Backend,
        env: &Env,
        fault_random: Arc<dyn Random>,
        calls: Option<CallsUnderTest>,
        blobs: Option<Arc<dyn BlobStore>>,
    ) -> Self {
        let executor = calls.as_ref().map(|c| c.executor.clone());
        let log = SharedLog::default();
        let ns = &backend.namespace;
        let recording_store = Arc::new(RecordingStore {
            inner: backend.store.clone(),
            log: log.clone(),
        });
        let faulty_store = Arc::new(FaultyStore::new(
            recording_store.clone(),
            config.store_faults,
            fault_random.clone(),
        ));
        let colocated = backend.colocated.clone().map(|inner| {
            let recording = Arc::new(RecordingColocated {
                inner,
                store: recording_store,
            });
            Arc::new(FaultyColocated::new(recording, faulty_store.clone())) as Arc<dyn Colocated>
        });
        let recording_transport = Arc::new(RecordingTransport {
            inner: backend.transport.clone(),
            log: log.clone(),
        });
        let faulty_transport = Arc::new(FaultyTransport::new(
            recording_transport,
            config.transport_faults,
            fault_random,
        ));
        let store: Arc<dyn Store> = faulty_store.clone();
        let transport: Arc<dyn Transport> = faulty_transport.clone();
        let names = [format!("{ns}a"), format!("{ns}b")];
        let error_queue = format!("{ns}error");
        let routes = Arc::new(
            Routes::new()
                .subscribe::<Fanned>(names[0].clone())
                .subscribe::<Fanned>(names[1].clone()),
        );
        let mut sender = Sender::new(format!("{ns}client"), store.clone(), transport.clone())
            .expect("harness names are valid")
            .env(env.clone())
            .group_commit_above(Duration::ZERO)
            .mutant(config.mutant);
        if let Some(unit) = &colocated {
            sender = sender.colocated(unit.clone());
        }
        // One memory of sent entries for the whole "process": the client,
        // both endpoints and the in-run sweeper.
        let memory = sender.dispatched_memory();
        let endpoints: Vec<Endpoint> = names
            .iter()
            .map(|name| {
                let builder = Endpoint::builder(name.clone(), store.clone(), transport.clone())
                    .handler(HopHandler {
                        workload: config.workload,
                        endpoints: names.clone(),
                        charge: calls.as_ref().map(|c| (c.url.clone(), c.rpc)),
                        blobs: blobs.is_some(),
                    })
                    .handler(FanHandler {
                        workload: config.workload,
                    })
                    .handler(PaidHandler);
                let builder = match &executor {
                    Some(e) => builder.calls(e.clone()),
                    None => builder,
                };
                let builder = match &blobs {
                    Some(b) => builder.blobs(b.clone()).claim_threshold(CLAIM_THRESHOLD),
                    None => builder,
                };
                let builder = match &colocated {
                    Some(unit) => builder.colocated(unit.clone()),
                    None => builder,
                };
                builder
                    .routes(routes.clone())
                    .env(env.clone())
                    .retry(RetryPolicy::no_delays())
                    .error_queue(error_queue.clone())
                    .sweep(Duration::ZERO, Duration::ZERO)
                    .mutant(config.mutant)
                    .dispatched(memory.clone())
                    .build()
                    .expect("harness endpoint settings are valid")
            })
            .collect();
        let intent_prefix = format!("{INTENT_PREFIX}{ns}client/");
        let intent_sweeper = Sweeper::new(backend.store.clone(), backend.transport.clone())
            .prefix(intent_prefix.clone())
            .min_age(Duration::ZERO)
            .env(env.clone());
        // No grace at all, not even for entries left done: the model's
        // Sweeper may remove a left entry at any moment.
        let mut sweeper = Sweeper::new(store, transport)
            .min_age(Duration::ZERO)
            .left_age(Duration::ZERO)
            .env(env.clone())
            .calls(executor)
            .blobs(blobs.clone())
            .with_stats(Arc::default(), config.mutant)
            .prefix(intent_prefix.clone())
            // Shares the memory of sent entries (removed without a resend);
            // the final intent sweep has none (resends them).
            .dispatched(memory);
        if config.sweep_entities {
            for name in &names {
                sweeper = sweeper.prefix(format!("{ENTITY_PREFIX}{name}/"));
            }
        }
        Self {
            endpoints,
            sender,
            sweeper,
            intent_sweeper,
            raw_transport: backend.transport.clone(),
            raw_store: backend.store.clone(),
            faulty_store,
            faulty_transport,
            log,
            error_queue,
            intent_prefix,
            calls,
            blobs,
            mutant: config.mutant,
        }
    }
}
