//! A `Sender`'s intents: each message committed as an intent record (alone,
//! in a group commit, in one `put_all` for a batch, or with the message in
//! one transaction where the queue shares the store's database), then
//! dispatched.

use bytes::Bytes;
use tracing::warn;

use super::{SendError, Sender};
use crate::error::{InvalidName, StoreError};
use crate::group_commit::{GroupCommit, Target};
use crate::message::{Envelope, MessageId};
use crate::protocol::finish::Finisher;
use crate::protocol::put_groups::{Group, put_groups};
use crate::protocol::{AttemptError, Probe};
use crate::record::{EntityRecord, Loaded, OutboxEntry, read_record};
use crate::store::{Precondition, Version, Write};
use crate::transport::Outgoing;

impl Sender {
    /// [`Sender::send_envelopes`], pausing at `probe` before each step.
    pub(crate) async fn send_batch(
        &self,
        envelopes: Vec<Envelope>,
        probe: Option<&dyn Probe>,
    ) -> Result<Vec<MessageId>, SendError> {
        for envelope in &envelopes {
            self.check_token(envelope)?;
        }
        let ids: Vec<MessageId> = envelopes.iter().map(|e| e.id).collect();
        // An id listed twice is one intent record: its repeats go after.
        let mut seen = std::collections::HashSet::new();
        let (envelopes, repeats): (Vec<Envelope>, Vec<Envelope>) =
            envelopes.into_iter().partition(|e| seen.insert(e.id));
        if envelopes.len() < 2 || !self.store.capabilities().atomic_multi_key {
            for envelope in envelopes.into_iter().chain(repeats) {
                self.commit_and_dispatch(envelope, None, probe).await?;
            }
            return Ok(ids);
        }
        let finisher = self.finisher(probe);
        let intents: Vec<(String, EntityRecord)> = envelopes
            .iter()
            .map(|e| (self.record_key(e.id), self.intent_record(e.clone(), None)))
            .collect();
        if self.send_colocated(&finisher, &intents).await?.is_some() {
            for envelope in repeats {
                self.commit_and_dispatch(envelope, None, probe).await?;
            }
            return Ok(ids);
        }
        let groups: Vec<Group> = intents
            .iter()
            .map(|(key, record)| Group::from(vec![intent_write(key, record)]))
            .collect();
        finisher.step(crate::Step::Commit).await;
        let all = (0..groups.len()).collect();
        let written = put_groups(
            self.store.as_ref(),
            None,
            &groups,
            all,
            |_| Vec::new(),
            |_| {},
        )
        .await
        .groups;
        // Written in the batch: sent together. Not written (sent before
        // under this id, or the batch write failed): decided one at a time
        // afterwards, with the repeats (a conflict is read, not trusted).
        let (mut fresh, mut alone) = (Vec::with_capacity(envelopes.len()), Vec::new());
        for (envelope, written) in envelopes.into_iter().zip(written) {
            match written {
                Some(_) => fresh.push(Outgoing::new(envelope)),
                None => alone.push(envelope),
            }
        }
        let sent: Vec<(String, MessageId)> = fresh
            .iter()
            .map(|o| (self.record_key(o.envelope.id), o.envelope.id))
            .collect();
        let entry = OutboxEntry {
            messages: fresh,
            committed_at: self.env.now_millis(),
            ..OutboxEntry::default()
        };
        match finisher.dispatch(&entry).await {
            Ok(()) => sent
                .iter()
                .for_each(|(key, id)| self.dispatched.remember(key, *id)),
            Err(e) => {
                warn!(error = ?e, "intents committed but not yet dispatched; the sweeper will");
            }
        }
        for envelope in alone.into_iter().chain(repeats) {
            self.commit_and_dispatch(envelope, None, probe).await?;
        }
        Ok(ids)
    }

    /// Where the queue shares the store's database: creates the intent
    /// records and sends their messages in one transaction, and remembers
    /// them as sent (left for the receivers' consumes, as after a
    /// dispatch); returns their versions. `None` when there is no such
    /// database, or when a record exists already (an earlier send of the
    /// same id: the caller reads it and finishes what it left).
    async fn send_colocated(
        &self,
        finisher: &Finisher<'_>,
        intents: &[(String, EntityRecord)],
    ) -> Result<Option<Vec<Version>>, SendError> {
        let Some(unit) = &self.colocated else {
            return Ok(None);
        };
        let writes: Vec<Write> = intents
            .iter()
            .map(|(key, record)| intent_write(key, record))
            .collect();
        let send: Vec<Outgoing> = intents
            .iter()
            .flat_map(|(_, record)| &record.outbox)
            .flat_map(|entry| entry.messages.iter().cloned())
            .collect();
        // One send: first with the others running (one transaction for
        // all their records and messages), then, if not reported done,
        // alone.
        let mut grouped = None;
        if let (1, Some(group)) = (writes.len(), self.grouping(true)) {
            let target = Target::Colocated(unit.as_ref());
            grouped = self
                .commit_grouped(finisher, group, target, writes[0].clone(), send.clone())
                .await;
        }
        let versions = match grouped {
            Some(version) => vec![version],
            None => {
                finisher.step(crate::Step::Commit).await;
                let started = std::time::Instant::now();
                let written = unit.put_all_with(writes, send, Vec::new()).await;
                self.record_write_time(started);
                match written {
                    Ok(versions) => versions,
                    Err(e) if e.is_conflict() => return Ok(None),
                    Err(e) => return Err(e.into()),
                }
            }
        };
        for (key, record) in intents {
            for entry in &record.outbox {
                self.dispatched.remember(key, entry.incoming);
            }
        }
        Ok(Some(versions))
    }

    /// Refuses an envelope whose token is not this sender's for its id: its
    /// intent record would hold a token no receiver could consume.
    fn check_token(&self, envelope: &Envelope) -> Result<(), InvalidName> {
        let key = self.record_key(envelope.id);
        match &envelope.token {
            Some(token) if token.record == key && token.id == envelope.id => Ok(()),
            _ => Err(InvalidName {
                what: "envelope token",
                value: envelope.id.to_string(),
                reason: "must be this sender's token for the envelope's id (Sender::envelope)",
            }),
        }
    }

    /// The intent record for `envelope`: its token, and an entry that only
    /// sends it.
    fn intent_record(&self, envelope: Envelope, state: Option<Bytes>) -> EntityRecord {
        let id = envelope.id;
        let mut record = EntityRecord {
            state,
            ..EntityRecord::default()
        };
        record.tokens.insert(id);
        record.outbox.push(OutboxEntry {
            incoming: id,
            incoming_token: None,
            committed_at: self.env.now_millis(),
            messages: vec![Outgoing::new(envelope)],
            ..OutboxEntry::default()
        });
        record
    }

    pub(super) async fn commit_and_dispatch(
        &self,
        envelope: Envelope,
        state: Option<Bytes>,
        probe: Option<&dyn Probe>,
    ) -> Result<Loaded, SendError> {
        let id = envelope.id;
        let key = self.record_key(id);
        let intent = [(key, self.intent_record(envelope, state))];
        let finisher = self.finisher(probe);
        let sent = self.send_colocated(&finisher, &intent).await?;
        let [(key, record)] = intent;
        if let Some(versions) = sent {
            return Ok(Loaded {
                record,
                version: versions.into_iter().next(),
            });
        }
        let mut committed = self.commit_intent(&finisher, &key, record).await?;
        match self
            .dispatch_pending(&finisher, &key, id, &mut committed)
            .await
        {
            Ok(()) => {}
            Err(AttemptError::Retry(reason) | AttemptError::Poison(reason)) => {
                warn!(%id, %reason, "intent committed but not yet dispatched; the sweeper will");
            }
            Err(AttemptError::Conflict) => {}
        }
        Ok(committed)
    }

    /// Sends what the intent record for `id` (at `key`) has pending,
    /// bringing `current` up to date. Its intent entry (the one for `id`,
    /// which only sends a message) is left in place once sent, and
    /// remembered as sent: the receiver's consume of its token drops it,
    /// so this sender does not write again. An entry this sender already
    /// sent is skipped; any other entry (a `run_once` commit's) is finished
    /// in full. On an error, `current` is the record as last written.
    pub(super) async fn dispatch_pending(
        &self,
        finisher: &Finisher<'_>,
        key: &str,
        id: MessageId,
        current: &mut Loaded,
    ) -> Result<(), AttemptError> {
        let entries: Vec<MessageId> = current.record.outbox.iter().map(|e| e.incoming).collect();
        for incoming in entries {
            let Some(entry) = current.record.entry(incoming) else {
                continue;
            };
            let intent = incoming == id;
            if intent && self.dispatched.contains(key, id) {
                continue;
            }
            if !(intent && entry.sends_only()) {
                let entry = entry.clone();
                *current = finisher.finish_entry(key, current.clone(), &entry).await?;
                continue;
            }
            // Remembered only once sent: the sweeper removes a remembered
            // entry without sending it.
            finisher.dispatch(entry).await?;
            self.dispatched.remember(key, id);
        }
        Ok(())
    }

    /// The group commit, if this send should go through it: on, writes
    /// that can hold several records at once (`atomic`), and recent writes
    /// slow enough for it to pay.
    fn grouping(&self, atomic: bool) -> Option<&GroupCommit> {
        let group = self.group.as_deref()?;
        (atomic && group.write_time() >= self.group_above).then_some(group)
    }

    /// Queues `write` (and `send`) with the sends running at the same time
    /// and waits for the group's write: `Some` once stored, `None` when the
    /// caller must write alone.
    async fn commit_grouped(
        &self,
        finisher: &Finisher<'_>,
        group: &GroupCommit,
        target: Target<'_>,
        write: Write,
        send: Vec<Outgoing>,
    ) -> Option<Version> {
        finisher.step(crate::Step::Group).await;
        let ticket = group.queue(write, send);
        finisher.step(crate::Step::Commit).await;
        group.commit(target, ticket, self.mutant).await
    }

    /// Counts a write that started at `started` into the group commit's
    /// running average.
    fn record_write_time(&self, started: std::time::Instant) {
        if let Some(group) = &self.group {
            group.record_write_time(started.elapsed());
        }
    }

    /// Creates the intent record, or finds the one an earlier send of the
    /// same id created. A conflict counts as "sent before" only once a read
    /// shows the record: trusting the conflict alone would report a message
    /// as accepted that was never committed (a lost message).
    pub(super) async fn commit_intent(
        &self,
        finisher: &Finisher<'_>,
        key: &str,
        record: EntityRecord,
    ) -> Result<Loaded, SendError> {
        let mut last = None;
        // First with whatever other sends are running (one `put_all`), then,
        // if that write is not reported done, alone.
        let mut group = self.grouping(self.store.capabilities().atomic_multi_key);
        for _ in 0..crate::protocol::finish::CONFLICT_LIMIT {
            if let Some(group) = group.take() {
                let target = Target::Store(self.store.as_ref());
                let write = intent_write(key, &record);
                let grouped = self.commit_grouped(finisher, group, target, write, Vec::new());
                if let Some(version) = grouped.await {
                    return Ok(Loaded {
                        record,
                        version: Some(version),
                    });
                }
            }
            finisher.step(crate::Step::Commit).await;
            let started = std::time::Instant::now();
            let written = self
                .store
                .put(key, record.encode(), Precondition::Absent)
                .await;
            self.record_write_time(started);
            match written {
                Ok(version) => {
                    return Ok(Loaded {
                        record,
                        version: Some(version),
                    });
                }
                Err(e) if e.is_conflict() => {
                    finisher.step(crate::Step::Load).await;
                    let existing = read_record(self.store.as_ref(), key).await?;
                    if existing.version.is_some() {
                        return Ok(existing);
                    }
                    last = Some(e);
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(last
            .unwrap_or_else(|| StoreError::generic("intent commit kept conflicting"))
            .into())
    }
}

/// The write that creates the intent record `record` at `key`.
fn intent_write(key: &str, record: &EntityRecord) -> Write {
    Write {
        key: key.to_owned(),
        value: record.encode(),
        precondition: Precondition::Absent,
    }
}
