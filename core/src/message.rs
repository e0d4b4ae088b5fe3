//! The message model: ids, the wire [`Envelope`], and the [`Message`] trait
//! that user message types implement.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::base64_bytes;

/// The identity of one logical message: a UUID v7, fixed when the message is
/// captured and carried unchanged by every copy and every retry.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct MessageId(Uuid);

impl MessageId {
    /// Wraps a UUID.
    pub fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid)
    }

    /// Derives a stable id from a namespace and a name (UUID v5 of the name
    /// inside a v5 namespace derived from `namespace`). Used where an id must
    /// follow from an outside key, e.g. an HTTP idempotency key.
    pub fn derived(namespace: &str, name: &str) -> Self {
        Self::derived_from_bytes(namespace, name.as_bytes())
    }

    /// [`MessageId::derived`] for a name that is bytes, not text.
    fn derived_from_bytes(namespace: &str, name: &[u8]) -> Self {
        let ns = Uuid::new_v5(&Uuid::NAMESPACE_URL, namespace.as_bytes());
        Self(Uuid::new_v5(&ns, name))
    }

    /// The underlying UUID.
    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for MessageId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

/// Where the receiver finds the proof that a message is still owed
/// processing: the store key of the sender's record and the token's id.
///
/// The token is written into the sender's record by the same conditional
/// write that commits the sender's new state and its `OutboxEntry`, and is
/// never created again afterwards; the receiver consumes it with a
/// conditional write on that record once it has committed the message's
/// effects. A missing token therefore means "already processed".
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DedupToken {
    /// Store key of the record that holds the token.
    pub record: String,
    /// The token's id (the id of the message it guards).
    pub id: MessageId,
}

/// A message as it travels: identity, routing, headers and an encoded body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Stable identity of the logical message.
    pub id: MessageId,
    /// The message type name ([`Message::TYPE`]), used to pick a handler.
    pub message_type: String,
    /// The endpoint (queue) the message is addressed to.
    pub destination: String,
    /// Free-form headers. Keys starting with `exactly-` are reserved.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// The id of the conversation this message belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<MessageId>,
    /// The id of the message whose handling produced this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<MessageId>,
    /// The endpoint replies go to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    /// The dedup token guarding this message, if the producer created one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<DedupToken>,
    /// The codec's content type, e.g. `application/json`.
    pub content_type: String,
    /// The encoded body.
    #[serde(with = "base64_bytes")]
    pub body: Bytes,
}

impl Envelope {
    /// Serializes the envelope (for transports that carry one opaque blob).
    pub fn to_bytes(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }

    /// Parses an envelope written by [`Envelope::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// A header value, if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// What a transport hands over for a message on `queue` that is not an
    /// envelope (another producer's bytes, a truncated write), instead of
    /// failing the receive or leaving it to come back forever: the bytes
    /// untouched as the body, type [`UNDECODABLE_TYPE`], and `reason` in
    /// header [`headers::UNDECODABLE_REASON`]. Its id is derived from the
    /// queue and `transport_id` (the broker's id of the message, stable
    /// across redeliveries), or from the bytes when that is empty. No
    /// handler takes it: an endpoint moves it to its error queue with the
    /// reason, and acks it.
    ///
    /// ```
    /// use exactly::{Envelope, UNDECODABLE_TYPE};
    ///
    /// let bad = Envelope::undecodable("orders", "42", b"not json".to_vec(), "expected value");
    /// assert_eq!(bad.message_type, UNDECODABLE_TYPE);
    /// assert_eq!(&bad.body[..], b"not json");
    /// assert_eq!(bad.id, Envelope::undecodable("orders", "42", vec![], "").id);
    /// // Without a broker id, the bytes name it.
    /// let a = Envelope::undecodable("orders", "", b"x".to_vec(), "");
    /// assert_eq!(a.id, Envelope::undecodable("orders", "", b"x".to_vec(), "").id);
    /// assert_ne!(a.id, Envelope::undecodable("orders", "", b"y".to_vec(), "").id);
    /// ```
    pub fn undecodable(
        queue: &str,
        transport_id: &str,
        bytes: impl Into<Bytes>,
        reason: impl fmt::Display,
    ) -> Self {
        let body: Bytes = bytes.into();
        let name = match transport_id.is_empty() {
            true => &body[..],
            false => transport_id.as_bytes(),
        };
        Self {
            id: MessageId::derived_from_bytes(&format!("exactly-undecodable/{queue}"), name),
            message_type: UNDECODABLE_TYPE.to_owned(),
            destination: queue.to_owned(),
            headers: BTreeMap::from([(
                headers::UNDECODABLE_REASON.to_owned(),
                format!("not an envelope: {reason}"),
            )]),
            correlation_id: None,
            causation_id: None,
            reply_to: None,
            token: None,
            content_type: "application/octet-stream".to_owned(),
            body,
        }
    }
}

/// The message type of [`Envelope::undecodable`]: bytes a transport could
/// not read as an envelope. Reserved: an endpoint never hands it to a
/// handler, whatever handlers it has.
pub const UNDECODABLE_TYPE: &str = "exactly.Undecodable";

/// Header names the runtime writes. All start with `exactly-`.
pub mod headers {
    /// Why the message was moved to the error queue.
    pub const ERROR_REASON: &str = "exactly-error-reason";
    /// How many attempts were made before giving up.
    pub const ERROR_ATTEMPTS: &str = "exactly-error-attempts";
    /// First failure time, milliseconds since the Unix epoch.
    pub const ERROR_FIRST_FAILURE: &str = "exactly-error-first-failure";
    /// Last failure time, milliseconds since the Unix epoch.
    pub const ERROR_LAST_FAILURE: &str = "exactly-error-last-failure";
    /// The queue the message was taken from before it failed.
    pub const ERROR_SOURCE_QUEUE: &str = "exactly-error-source-queue";
    /// Number of delayed retries already made.
    pub const RETRY_COUNT: &str = "exactly-retry-count";
    /// First failure time carried across delayed retries.
    pub const FIRST_FAILURE: &str = "exactly-first-failure";
    /// On a `CallResult` message: the key of the entity that made the call.
    pub const CALL_ENTITY: &str = "exactly-call-entity";
    /// On an [`Envelope::undecodable`](super::Envelope::undecodable): why
    /// the transport could not read it.
    pub const UNDECODABLE_REASON: &str = "exactly-undecodable-reason";
}

/// A message type handlers can receive and send.
///
/// ```
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct PlaceOrder { order_id: String }
///
/// impl exactly::Message for PlaceOrder {
///     const TYPE: &'static str = "PlaceOrder";
/// }
/// ```
pub trait Message: Serialize + DeserializeOwned + Send + 'static {
    /// The stable name of this type on the wire.
    const TYPE: &'static str;
}
