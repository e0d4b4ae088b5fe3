//! The record the protocol keeps under one store key: the entity's state, its
//! pending `OutboxEntry`s, the `DedupToken`s of the messages it sent that are
//! still in flight, and (fallback mode only) its identity inbox.
//!
//! Everything the protocol needs to commit atomically lives in this one
//! record, so one conditional write commits it.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::base64_bytes;
use crate::call::PendingCall;
use crate::error::{InvalidName, StoreError};
#[cfg(test)]
use crate::message::Envelope;
use crate::message::{DedupToken, MessageId};
use crate::store::{Precondition, Store, Version, Versioned, Write};
use crate::transport::Outgoing;

/// Prefix of entity records: `e/{endpoint}/{entity key}`.
pub const ENTITY_PREFIX: &str = "e/";
/// Prefix of intent records written by a [`Sender`](crate::Sender):
/// `i/{source}/{message id}`.
pub const INTENT_PREFIX: &str = "i/";
/// Longest entity key or name accepted from outside, in bytes.
pub const MAX_NAME_BYTES: usize = 256;

/// The effects of one committed attempt, waiting to be finished: its
/// outgoing messages are dispatched, the incoming message's token consumed,
/// and then the entry removed (in that order; see `docs/protocol.md`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEntry {
    /// The incoming message whose processing produced this entry.
    pub incoming: MessageId,
    /// The incoming message's token, consumed when the entry is finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incoming_token: Option<DedupToken>,
    /// When the entry was committed (ms since the epoch; for the sweeper's
    /// grace period only).
    pub committed_at: u64,
    /// The captured outgoing messages, ids fixed at capture time.
    pub messages: Vec<Outgoing>,
    /// Captured third-party calls, performed after the messages are sent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub calls: Vec<PendingCall>,
    /// The incoming message's claim-check blob, deleted once its token is
    /// consumed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incoming_claim: Option<String>,
    /// Attempts that lost to this commit: their blobs are deleted in cleanup.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub doomed: Vec<String>,
    /// Published blobs the committed state no longer references.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delete_blobs: Vec<String>,
}

impl OutboxEntry {
    /// Whether finishing it has nothing to do: no message, call, token,
    /// claim-check body or blob.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty() && self.nothing_but_messages()
    }

    /// Whether sending its messages is all that is left to do (no token to
    /// consume, no call, no claim-check body, no blob): such an entry goes
    /// with the consume of its last message's token.
    pub fn sends_only(&self) -> bool {
        !self.messages.is_empty() && self.nothing_but_messages()
    }

    /// Whether finishing it is sending its messages and consuming the
    /// incoming token, no more (no call, claim-check body or blob): once
    /// both are done, nothing but the entry itself is left, and it may
    /// stay in the record until a later write drops it.
    pub fn sends_and_consumes_only(&self) -> bool {
        !self.is_empty() && self.nothing_to_clean()
    }

    /// Whether anything is left to do in it once the messages `consumed`
    /// (their tokens consumed, so sent and processed) are forgotten: the one
    /// rule by which a consume drops an entry.
    fn outlives(&self, consumed: &[MessageId]) -> bool {
        self.messages
            .iter()
            .any(|m| !consumed.contains(&m.envelope.id))
            || !self.nothing_but_messages()
    }

    /// Forgets the messages `consumed`: nothing is left to send of them.
    fn forget(&mut self, consumed: &[MessageId]) {
        self.messages.retain(|m| !consumed.contains(&m.envelope.id));
    }

    fn nothing_but_messages(&self) -> bool {
        self.incoming_token.is_none() && self.nothing_to_clean()
    }

    fn nothing_to_clean(&self) -> bool {
        self.calls.is_empty()
            && self.incoming_claim.is_none()
            && self.doomed.is_empty()
            && self.delete_blobs.is_empty()
    }
}

/// One store record: state plus protocol bookkeeping.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityRecord {
    /// The codec-encoded state; `None` until the first commit.
    #[serde(default, with = "base64_bytes::option")]
    pub state: Option<Bytes>,
    /// Committed attempts not yet finished, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outbox: Vec<OutboxEntry>,
    /// Tokens of messages this record's owner sent that no receiver has
    /// consumed yet. Bounded by the messages in flight.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub tokens: BTreeSet<MessageId>,
    /// Identity inbox (fallback dedup): processed message id → processed at (ms).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub inbox: BTreeMap<MessageId, u64>,
    /// Attempts registered to write blobs (attempt id → registered at, ms).
    /// Registered before their first blob write; removed by the next commit.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub blob_attempts: BTreeMap<String, u64>,
    /// Published blobs: written by committed attempts, still referenced by
    /// state or by messages in flight (claim checks).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub blobs: BTreeSet<String>,
}

impl EntityRecord {
    /// Parses a stored record.
    pub fn decode(key: &str, bytes: &[u8]) -> Result<Self, StoreError> {
        serde_json::from_slice(bytes).map_err(|e| {
            StoreError::generic(format!("record {key:?} is not an exactly record: {e}"))
        })
    }

    /// Serializes the record.
    pub fn encode(&self) -> Bytes {
        // Serializing plain data structures to JSON cannot fail.
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }

    /// The pending entry produced by `incoming`, if any.
    pub fn entry(&self, incoming: MessageId) -> Option<&OutboxEntry> {
        self.outbox.iter().find(|e| e.incoming == incoming)
    }

    /// Consumes the token of message `id` (a receiver has committed it):
    /// removes the token and, since `id` is processed, forgets it in every
    /// entry that still lists it for dispatch. An entry left with nothing
    /// to do is dropped in the same write: this is how a `Sender`'s intent
    /// entry, and the entry of a one-write commit that sent one message,
    /// go away without a write of their own. Returns whether the token was
    /// there.
    pub fn consume_token(&mut self, id: MessageId) -> bool {
        if !self.tokens.remove(&id) {
            return false;
        }
        let gone = [id];
        self.outbox.retain(|e| e.outlives(&gone));
        for entry in &mut self.outbox {
            entry.forget(&gone);
        }
        true
    }

    /// This record as [`consume_token`](Self::consume_token) of each of
    /// `ids` would leave it, built without copying what the consumes drop
    /// (a `Sender`'s intent entry, its envelope with it): the write a
    /// commit makes of a token holder it read.
    pub fn consumed(&self, ids: &[MessageId]) -> EntityRecord {
        // A consume of an id whose token is not here changes nothing.
        let ids: Vec<MessageId> = ids
            .iter()
            .filter(|id| self.tokens.contains(id))
            .copied()
            .collect();
        if ids.is_empty() {
            return self.clone();
        }
        let outbox = self
            .outbox
            .iter()
            .filter(|e| e.outlives(&ids))
            .map(|e| {
                let mut entry = e.clone();
                entry.forget(&ids);
                entry
            })
            .collect();
        EntityRecord {
            state: self.state.clone(),
            outbox,
            tokens: self
                .tokens
                .iter()
                .filter(|id| !ids.contains(id))
                .copied()
                .collect(),
            inbox: self.inbox.clone(),
            blob_attempts: self.blob_attempts.clone(),
            blobs: self.blobs.clone(),
        }
    }

    /// Whether nothing is pending: no outbox entry, no token.
    pub fn is_settled(&self) -> bool {
        self.outbox.is_empty() && self.tokens.is_empty()
    }
}

/// A record as read, with the version a conditional write must match.
#[derive(Clone, Debug, Default)]
pub struct Loaded {
    /// The record (default if the key did not exist).
    pub record: EntityRecord,
    /// Its version; `None` if the key did not exist.
    pub version: Option<Version>,
}

impl Loaded {
    /// The precondition for writing this record back.
    pub fn precondition(&self) -> Precondition {
        Precondition::from_read(self.version.as_ref())
    }

    /// Parses the record stored under `key` as read (`None`: no record).
    pub fn parse(key: &str, stored: Option<Versioned>) -> Result<Self, StoreError> {
        Ok(match stored {
            Some(v) => Loaded {
                record: EntityRecord::decode(key, &v.value)?,
                version: Some(v.version),
            },
            None => Loaded::default(),
        })
    }
}

/// Reads and parses a record.
pub async fn read_record(store: &dyn Store, key: &str) -> Result<Loaded, StoreError> {
    Loaded::parse(key, store.get(key).await?)
}

/// Writes a record under the precondition of the read it came from.
pub async fn write_record(
    store: &dyn Store,
    key: &str,
    loaded: &Loaded,
    record: &EntityRecord,
) -> Result<Version, StoreError> {
    store.put(key, record.encode(), loaded.precondition()).await
}

/// The conditional write of `record` at `key` over `loaded`, for a
/// `Store::put_all`: what [`write_record`] writes alone.
pub(crate) fn record_write(key: &str, loaded: &Loaded, record: &EntityRecord) -> Write {
    Write {
        key: key.to_owned(),
        value: record.encode(),
        precondition: loaded.precondition(),
    }
}

/// Checks a name that comes from outside (entity key, idempotency key, queue
/// name): non-empty, at most [`MAX_NAME_BYTES`], no control characters, and
/// no `.` / `..` path segment (so it cannot walk out of its namespace in a
/// path-like store).
pub fn validate_name(what: &'static str, value: &str) -> Result<(), InvalidName> {
    let refuse = |reason| {
        Err(InvalidName {
            what,
            value: value.chars().take(80).collect(),
            reason,
        })
    };
    if value.is_empty() {
        return refuse("must not be empty");
    }
    if value.len() > MAX_NAME_BYTES {
        return refuse("longer than 256 bytes");
    }
    if value.chars().any(char::is_control) {
        return refuse("contains a control character");
    }
    if value.split('/').any(|seg| seg == "." || seg == "..") {
        return refuse("contains a '.' or '..' path segment");
    }
    Ok(())
}

/// The store key of an entity's record.
pub fn entity_key(endpoint: &str, key: &str) -> Result<String, InvalidName> {
    validate_name("entity key", key)?;
    Ok(format!("{ENTITY_PREFIX}{endpoint}/{key}"))
}

/// Checks that a token reference from a received message points at a record
/// the protocol owns, so a crafted message cannot make a receiver write
/// outside the protocol's namespace.
pub fn validate_token(token: &DedupToken) -> Result<(), InvalidName> {
    let owned = token.record.starts_with(ENTITY_PREFIX) || token.record.starts_with(INTENT_PREFIX);
    if !owned {
        return Err(InvalidName {
            what: "token record",
            value: token.record.chars().take(80).collect(),
            reason: "is not an exactly record key",
        });
    }
    validate_name("token record", &token.record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        assert!(validate_name("k", "order-17").is_ok());
        assert!(validate_name("k", "ünïcødé/ok").is_ok());
        assert!(validate_name("k", "").is_err());
        assert!(validate_name("k", "../etc/passwd").is_err());
        assert!(validate_name("k", "a/./b").is_err());
        assert!(validate_name("k", "a\nb").is_err());
        assert!(validate_name("k", &"x".repeat(257)).is_err());
    }

    #[test]
    fn foreign_token_records_are_refused() {
        let id = MessageId::derived("t", "1");
        let ok = DedupToken {
            record: "e/orders/o1".into(),
            id,
        };
        assert!(validate_token(&ok).is_ok());
        let bad = DedupToken {
            record: "secrets/x".into(),
            id,
        };
        assert!(validate_token(&bad).is_err());
    }

    /// Every record of a few entries, tokens and messages against every
    /// choice of ids: `consumed` is `consume_token` of each, in one copy.
    #[test]
    fn consumed_is_consume_token_of_each() {
        let id = |i: u8| MessageId::derived("consumed", &i.to_string());
        let message = |i: u8| {
            let mut envelope = Envelope::undecodable("q", "m", Vec::new(), "test");
            envelope.id = id(i);
            Outgoing::new(envelope)
        };
        let entry = |incoming: u8, messages: &[u8], token: bool| OutboxEntry {
            incoming: id(incoming),
            incoming_token: token.then(|| DedupToken {
                record: "e/a/b".into(),
                id: id(incoming),
            }),
            messages: messages.iter().map(|&i| message(i)).collect(),
            ..OutboxEntry::default()
        };
        let records = [
            EntityRecord::default(),
            EntityRecord {
                tokens: [id(1)].into(),
                outbox: vec![entry(1, &[1], false)],
                ..EntityRecord::default()
            },
            EntityRecord {
                state: Some(Bytes::from_static(b"7")),
                tokens: [id(1), id(2), id(3)].into(),
                outbox: vec![
                    entry(9, &[1, 2], false),
                    entry(8, &[3], true),
                    entry(7, &[], false),
                    entry(6, &[4], false),
                ],
                blobs: ["b".to_owned()].into(),
                ..EntityRecord::default()
            },
        ];
        let choices: [&[u8]; 6] = [&[], &[1], &[2], &[1, 2], &[3, 4], &[5]];
        for record in &records {
            for choice in choices {
                let ids: Vec<MessageId> = choice.iter().map(|&i| id(i)).collect();
                let mut expected = record.clone();
                for id in &ids {
                    expected.consume_token(*id);
                }
                assert_eq!(record.consumed(&ids), expected, "{choice:?} of {record:?}");
            }
        }
    }

    #[test]
    fn record_round_trips() {
        let mut r = EntityRecord {
            state: Some(Bytes::from_static(b"{\"n\":1}")),
            ..Default::default()
        };
        r.tokens.insert(MessageId::derived("t", "a"));
        let back = EntityRecord::decode("k", &r.encode()).expect("decode");
        assert_eq!(back, r);
    }
}
