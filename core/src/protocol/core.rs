//! The state an endpoint's workers share.

use std::collections::HashMap;
use std::sync::Arc;

use super::consume_group::ConsumeGroups;
use super::dispatched::Dispatched;
use super::finish::Finisher;
use super::{Mutant, Probe, Stats};
use crate::blob::BlobStore;
use crate::call::CallExecutor;
use crate::codec::Codec;
use crate::colocated::Colocated;
use crate::context::Routes;
use crate::endpoint::Config;
use crate::env::Env;
use crate::handler::ErasedHandler;
use crate::store::Store;
use crate::transport::Transport;

/// One endpoint: its name (= its queue), its seams, handlers and settings.
pub(crate) struct Core {
    pub name: String,
    pub store: Arc<dyn Store>,
    pub transport: Arc<dyn Transport>,
    pub handlers: HashMap<String, Arc<dyn ErasedHandler>>,
    pub codec: Arc<dyn Codec>,
    pub routes: Arc<Routes>,
    pub env: Env,
    pub config: Config,
    pub stats: Arc<Stats>,
    pub calls: Option<Arc<dyn CallExecutor>>,
    pub blobs: Option<Arc<dyn BlobStore>>,
    /// Commits, sends and acks in one transaction, where the queue shares
    /// the store's database.
    pub colocated: Option<Arc<dyn Colocated>>,
    /// The entries this endpoint's commits left, sent, for the receivers'
    /// consumes to drop; shared with its sweeper.
    pub dispatched: Arc<Dispatched>,
    /// Commits waiting to consume their tokens in a group, by holder.
    pub consumes: ConsumeGroups,
}

impl Core {
    pub(crate) fn finisher<'a>(&'a self, probe: Option<&'a dyn Probe>) -> Finisher<'a> {
        Finisher {
            store: self.store.as_ref(),
            transport: self.transport.as_ref(),
            env: &self.env,
            codec: self.codec.as_ref(),
            calls: self.calls.as_deref(),
            blobs: self.blobs.as_deref(),
            probe,
            mutant: self.config.mutant,
            stats: Some(&self.stats),
        }
    }

    pub(crate) fn is(&self, mutant: Mutant) -> bool {
        self.config.mutant == Some(mutant)
    }

    /// Whether this endpoint runs the current protocol's paths: no mutant,
    /// or one that breaks only a newer path (`Mutant::breaks_only_new_paths`).
    pub(crate) fn current_paths(&self) -> bool {
        self.config.mutant.is_none_or(Mutant::breaks_only_new_paths)
    }
}
