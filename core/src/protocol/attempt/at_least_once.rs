//! The at-least-once baseline (`Guarantee::AtLeastOnce`): the same load,
//! handler and conditional write of the state, without token, outbox entry
//! or dedup. What the benchmarks measure exactly-once against.

use super::commit::Along;
use super::load_entity;
use super::prepare::{Job, Prepared, handler_failure};
use crate::context::{Context, Incoming};
use crate::handler::ErasedHandler;
use crate::message::Envelope;
use crate::protocol::stats::Counter;
use crate::protocol::{AttemptError, Core, Outcome};
use crate::record::{Loaded, OutboxEntry};

impl Core {
    /// The at-least-once baseline: load, handle, write the state under the
    /// version read, send. No token, no outbox entry, no dedup.
    pub(super) async fn at_least_once(
        &self,
        envelope: &Envelope,
        handler: &dyn ErasedHandler,
        key: &str,
        body: &[u8],
        along: Option<&Along<'_>>,
    ) -> Result<Outcome, AttemptError> {
        let loaded = load_entity(self.store.as_ref(), key).await?;
        let job = Job {
            envelope,
            handler,
            key,
            body,
            claim: None,
        };
        let prepared = self.prepare_at_least_once(&job, loaded).await?;
        // Where the queue shares the database, the sends and the ack go
        // with the write, as they do with exactly-once.
        let queued = along
            .and_then(|a| self.queued_with_commit(&prepared.entry, prepared.pending, a.receipt));
        let committed = self
            .commit(key, &prepared.base, &prepared.record, queued.as_ref())
            .await;
        if let Err(e) = committed {
            if matches!(e, AttemptError::Conflict) {
                self.stats.add(Counter::Conflicts);
            }
            return Err(e);
        }
        if let (Some(along), Some(_)) = (along, &queued) {
            along.acked();
            return Ok(Outcome::Processed);
        }
        let messages = prepared.entry.messages;
        if !messages.is_empty() {
            self.transport.send(messages).await?;
        }
        Ok(Outcome::Processed)
    }

    /// The at-least-once baseline's step 3 short of the write: the new
    /// state, and the captured messages (in `entry`, without tokens, to be
    /// sent after the write; `record` keeps no entry).
    pub(crate) async fn prepare_at_least_once(
        &self,
        job: &Job<'_>,
        loaded: Loaded,
    ) -> Result<Prepared, AttemptError> {
        let mut ctx = Context::new(
            &self.name,
            job.key,
            Incoming::of(job.envelope),
            self.env.clone(),
            self.codec.clone(),
            self.routes.clone(),
        );
        let state = job
            .handler
            .run(loaded.record.state.as_deref(), job.body, &mut ctx)
            .await
            .map_err(handler_failure)?;
        let (mut messages, _, _) = ctx.into_effects();
        for m in &mut messages {
            m.envelope.token = None;
        }
        let mut record = loaded.record.clone();
        record.state = Some(state);
        Ok(Prepared {
            base: loaded,
            record,
            entry: OutboxEntry {
                incoming: job.envelope.id,
                messages,
                ..OutboxEntry::default()
            },
            pending: false,
            consume: None,
            holder: None,
        })
    }
}
