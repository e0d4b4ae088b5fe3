use std::sync::Arc;

use async_trait::async_trait;

use super::{MemoryStore, MemoryTransport};
use crate::colocated::Colocated;
use crate::error::StoreError;
use crate::store::{Store, Version, Write};
use crate::transport::{Outgoing, Receipt, Transport};

/// [`Colocated`] over a [`MemoryStore`] and a [`MemoryTransport`]: for unit
/// tests and the fault harness. The write happens first and the sends and
/// acks only if it did; in memory neither can fail afterwards (message
/// sizes are checked before anything is written), and no other task runs
/// in between, so it is all or nothing.
#[derive(Clone, Debug)]
pub struct MemoryColocated {
    store: Arc<MemoryStore>,
    transport: Arc<MemoryTransport>,
}

impl MemoryColocated {
    /// Commits to `store` and queues on `transport`: the endpoint's own.
    pub fn new(store: Arc<MemoryStore>, transport: Arc<MemoryTransport>) -> Self {
        Self { store, transport }
    }
}

#[async_trait]
impl Colocated for MemoryColocated {
    async fn put_all_with(
        &self,
        writes: Vec<Write>,
        send: Vec<Outgoing>,
        ack: Vec<Receipt>,
    ) -> Result<Vec<Version>, StoreError> {
        self.transport
            .check_sizes(&send)
            .map_err(StoreError::generic)?;
        let versions = match <[Write; 1]>::try_from(writes) {
            Ok([w]) => vec![self.store.put(&w.key, w.value, w.precondition).await?],
            Err(writes) => self.store.put_all(writes).await?,
        };
        if !send.is_empty() {
            self.transport
                .send(send)
                .await
                .map_err(StoreError::generic)?;
        }
        self.transport
            .ack_all(&ack)
            .await
            .map_err(StoreError::generic)?;
        Ok(versions)
    }
}
