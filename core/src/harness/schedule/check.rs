//! What a schedule checks once drained: every message's effects applied
//! exactly once (none lost, duplicated, made up or inconsistent), nothing
//! error-queued, no outbox entry or token left behind, blobs accounted for.

use std::collections::BTreeMap;
use std::time::Duration;

use super::World;
use crate::blob::BlobCollector;
use crate::codec::{CodecExt, Json};
use crate::env::Env;
use crate::harness::recorder::lock;
use crate::harness::workload::Applied;
use crate::harness::{Config, Report, Violation, ViolationKind};
use crate::message::MessageId;
use crate::protocol::Mutant;
use crate::record::{ENTITY_PREFIX, EntityRecord, OutboxEntry};

impl World {
    /// Blob invariants at quiescence, after one collection: every
    /// referenced blob exists with its committed bytes (NoDanglingReference,
    /// PublishedFromCommittedAttempt), nothing unreferenced is left (orphans
    /// collected), and no claim-check body outlives its message.
    async fn check_blobs(&self, seed: u64, report: &mut Report) {
        let Some(blobs) = &self.blobs else { return };
        let mut violate =
            |kind, detail: String| report.violations.push(Violation { seed, kind, detail });
        let collector = BlobCollector::new(self.raw_store.clone(), blobs.clone())
            .grace(Duration::ZERO)
            // Blob stores stamp writes with their own clock (real files with
            // the real one); with no grace, "older than now" is all that
            // matters, and every blob is.
            .env(Env::system())
            .mutant(self.mutant);
        if let Err(e) = collector.collect_once().await {
            violate(ViolationKind::OrphanBlob, format!("collection failed: {e}"));
            return;
        }
        let mut referenced = std::collections::BTreeSet::new();
        let mut in_state = std::collections::BTreeSet::new();
        for endpoint in &self.endpoints {
            let prefix = format!("{ENTITY_PREFIX}{}/", endpoint.name());
            for (key, record) in self.records(&prefix).await {
                if !record.blob_attempts.is_empty() {
                    violate(
                        ViolationKind::OrphanBlob,
                        format!("{key} keeps blob registrations after collection"),
                    );
                }
                referenced.extend(record.blobs.iter().cloned());
                let state: Applied = record
                    .state
                    .as_deref()
                    .and_then(|b| Json.decode(b).ok())
                    .unwrap_or_default();
                for invoice in state.invoices {
                    match crate::blob::read(blobs.as_ref(), &invoice).await {
                        Ok(stream) => {
                            if let Err(e) = crate::blob::collect(stream).await {
                                violate(ViolationKind::DanglingBlob, format!("{key}: {e}"));
                            }
                        }
                        Err(e) => violate(ViolationKind::DanglingBlob, format!("{key}: {e}")),
                    }
                    in_state.insert(invoice.key);
                }
            }
        }
        let existing: std::collections::BTreeSet<String> =
            match blobs.list(crate::blob::BLOB_PREFIX).await {
                Ok(list) => list.into_iter().map(|b| b.key).collect(),
                Err(e) => {
                    violate(ViolationKind::OrphanBlob, format!("listing failed: {e}"));
                    return;
                }
            };
        for orphan in existing.difference(&referenced) {
            violate(
                ViolationKind::OrphanBlob,
                format!("{orphan} survived collection unreferenced"),
            );
        }
        for dangling in referenced.difference(&existing) {
            violate(
                ViolationKind::DanglingBlob,
                format!("{dangling} is referenced but missing"),
            );
        }
        for leaked in referenced.difference(&in_state) {
            violate(
                ViolationKind::OrphanBlob,
                format!("{leaked} is published but no state references it"),
            );
        }
    }

    pub(super) async fn check(&self, config: &Config, seed: u64, report: &mut Report) {
        self.check_blobs(seed, report).await;
        let mut violate =
            |kind, detail: String| report.violations.push(Violation { seed, kind, detail });
        let mut applied: BTreeMap<(usize, String, String), u32> = BTreeMap::new();
        // Workers leave their entries, done, only on the current paths: the
        // older broken variants remove every entry, so any left is stranded.
        let leaves = config.mutant.is_none_or(Mutant::breaks_only_new_paths);
        for (index, endpoint) in self.endpoints.iter().enumerate() {
            let prefix = format!("{ENTITY_PREFIX}{}/", endpoint.name());
            for (key, record) in self.records(&prefix).await {
                let mut pending = 0;
                for entry in &record.outbox {
                    if !(leaves && self.left_done(entry).await) {
                        pending += 1;
                    }
                }
                if pending > 0 {
                    violate(
                        ViolationKind::LeftoverOutbox,
                        format!("{key} holds {pending} unfinished outbox entries at quiescence"),
                    );
                }
                if !record.tokens.is_empty() {
                    let fates = self.fates(record.tokens.iter());
                    violate(
                        ViolationKind::LeftoverToken,
                        format!(
                            "{key} holds {} tokens at quiescence: {fates}",
                            record.tokens.len()
                        ),
                    );
                }
                let state: Applied = record
                    .state
                    .as_deref()
                    .and_then(|b| Json.decode(b).ok())
                    .unwrap_or_default();
                let entity = key[prefix.len()..].to_owned();
                for (effect, n) in state.effects {
                    *applied.entry((index, entity.clone(), effect)).or_default() += n;
                }
            }
        }
        for (key, record) in self.records(&self.intent_prefix).await {
            if !record.is_settled() {
                violate(
                    ViolationKind::LeftoverToken,
                    format!(
                        "intent {key} not settled: {} entries, {} tokens",
                        record.outbox.len(),
                        record.tokens.len()
                    ),
                );
            }
        }
        if let Some(calls) = &self.calls {
            let mut per_chain: BTreeMap<u32, u32> = BTreeMap::new();
            for (_, chain) in (calls.charges)().await {
                *per_chain.entry(chain).or_default() += 1;
            }
            for chain in 0..config.workload.chains {
                match per_chain.get(&chain).copied().unwrap_or(0) {
                    1 => {}
                    0 => {
                        report.lost += 1;
                        violate(
                            ViolationKind::Lost,
                            format!("chain {chain} was never charged"),
                        );
                    }
                    n => {
                        report.duplicated += u64::from(n - 1);
                        violate(
                            ViolationKind::Duplicated,
                            format!("chain {chain} was charged {n} times"),
                        );
                    }
                }
            }
        }
        for expected in config.workload.expected(self.calls.is_some()) {
            let n = applied.remove(&expected).unwrap_or(0);
            if n == 0 {
                report.lost += 1;
                violate(ViolationKind::Lost, format!("{expected:?} never applied"));
            } else if n > 1 {
                report.duplicated += u64::from(n - 1);
                violate(
                    ViolationKind::Duplicated,
                    format!("{expected:?} applied {n} times"),
                );
            }
        }
        for (unexpected, n) in applied {
            report.duplicated += u64::from(n);
            violate(
                ViolationKind::Duplicated,
                format!("{unexpected:?} applied where it does not belong"),
            );
        }
        {
            let log = lock(&self.log);
            report.one_write_commits += log.one_write_commits;
            report.colocated_commits += log.colocated_commits;
            for stats in self.endpoints.iter().map(|e| e.stats().snapshot()) {
                report.batched += stats.batched;
                report.shared_consumes += stats.shared_consumes;
            }
            report.grouped_intents += self.sender.grouped_intents();
            for sent in &log.sent {
                let (id, body) = (sent.envelope.id, &sent.envelope.body);
                match log.committed.get(&id) {
                    None => violate(
                        ViolationKind::Ghost,
                        format!(
                            "{} {id} was sent but never committed",
                            sent.envelope.message_type
                        ),
                    ),
                    Some(expected) if expected != body => violate(
                        ViolationKind::InconsistentOutput,
                        format!("a copy of {id} differs from the committed bytes"),
                    ),
                    Some(_) => {}
                }
            }
        }
        if let Ok(dead) = self
            .raw_transport
            .receive(&self.error_queue, 16, Duration::ZERO)
            .await
        {
            for d in dead {
                let reason = d
                    .envelope
                    .header(crate::message::headers::ERROR_REASON)
                    .unwrap_or("?");
                violate(
                    ViolationKind::ErrorQueued,
                    format!("{} error-queued: {reason}", d.envelope.id),
                );
            }
        }
    }

    /// What became of the messages `ids`: how often each was sent, to
    /// which queue, and received — to tell a transport that lost a message
    /// from a protocol that never sent it.
    fn fates<'a>(&self, ids: impl Iterator<Item = &'a MessageId>) -> String {
        let log = lock(&self.log);
        let fate = |id: &MessageId| {
            let sent: Vec<&str> = log
                .sent
                .iter()
                .filter(|o| o.envelope.id == *id)
                .map(|o| o.queue.as_str())
                .collect();
            let received = log.received.get(id).copied().unwrap_or(0);
            format!(
                "{id} sent {} times {sent:?}, received {received} times",
                sent.len()
            )
        };
        ids.map(fate).collect::<Vec<_>>().join("; ")
    }

    /// Whether `entry` is one a worker left, done (`tla/ExactlyOnce.tla`,
    /// `LeftDone`): nothing but its incoming token to consume, consumed.
    /// Such an entry stays until the record's next commit or the sweeper.
    async fn left_done(&self, entry: &OutboxEntry) -> bool {
        let Some(token) = &entry.incoming_token else {
            return false;
        };
        if !entry.messages.is_empty() || !entry.sends_and_consumes_only() {
            return false;
        }
        match self.raw_store.get(&token.record).await {
            Ok(Some(v)) => EntityRecord::decode(&token.record, &v.value)
                .is_ok_and(|holder| !holder.tokens.contains(&token.id)),
            Ok(None) => true,
            Err(_) => false,
        }
    }

    async fn records(&self, prefix: &str) -> Vec<(String, EntityRecord)> {
        let mut out = Vec::new();
        let Ok(keys) = self.raw_store.list(prefix, None, 10_000).await else {
            return out;
        };
        for key in keys {
            if let Ok(Some(v)) = self.raw_store.get(&key).await
                && let Ok(record) = EntityRecord::decode(&key, &v.value)
            {
                out.push((key, record));
            }
        }
        out
    }
}
