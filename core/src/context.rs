//! [`Context`]: what a handler sees of the runtime, and where its effects are
//! captured. Nothing here touches a queue or a store.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use crate::blob::session::BlobSession;
use crate::blob::{BlobRef, ByteStream};
use crate::call::{HttpCall, PendingCall};
use crate::codec::{Codec, CodecExt};
use crate::env::Env;
use crate::error::HandlerError;
use crate::message::{DedupToken, Envelope, Message, MessageId};
use crate::transport::Outgoing;

/// Publish/subscribe routing: which endpoints receive each published type.
#[derive(Clone, Debug, Default)]
pub struct Routes {
    subscribers: HashMap<String, Vec<String>>,
}

impl Routes {
    /// No subscriptions.
    pub fn new() -> Self {
        Self::default()
    }

    /// Subscribes `endpoint` to messages of type `M`.
    pub fn subscribe<M: Message>(mut self, endpoint: impl Into<String>) -> Self {
        let endpoint = endpoint.into();
        let subs = self.subscribers.entry(M::TYPE.to_owned()).or_default();
        if !subs.contains(&endpoint) {
            subs.push(endpoint);
        }
        self
    }

    /// The endpoints subscribed to a message type.
    pub fn subscribers(&self, message_type: &str) -> &[String] {
        self.subscribers
            .get(message_type)
            .map_or(&[], Vec::as_slice)
    }
}

/// The incoming message's identity, as a handler may read it.
#[derive(Clone, Debug)]
pub(crate) struct Incoming {
    pub id: MessageId,
    pub correlation_id: Option<MessageId>,
    pub reply_to: Option<String>,
    pub headers: BTreeMap<String, String>,
}

impl Incoming {
    pub(crate) fn of(envelope: &Envelope) -> Self {
        Self {
            id: envelope.id,
            correlation_id: envelope.correlation_id,
            reply_to: envelope.reply_to.clone(),
            headers: envelope.headers.clone(),
        }
    }
}

/// A handler's view of the runtime. Effects are captured here, given ids at
/// capture time, and committed with the new state in one conditional write;
/// they are sent only after that commit.
pub struct Context {
    endpoint: String,
    entity: String,
    record_key: String,
    incoming: Incoming,
    env: Env,
    codec: Arc<dyn Codec>,
    routes: Arc<Routes>,
    outgoing: Vec<Outgoing>,
    calls: Vec<PendingCall>,
    blobs: Option<BlobSession>,
    max_payload: usize,
}

impl Context {
    pub(crate) fn new(
        endpoint: &str,
        record_key: &str,
        incoming: Incoming,
        env: Env,
        codec: Arc<dyn Codec>,
        routes: Arc<Routes>,
    ) -> Self {
        let entity = record_key
            .strip_prefix(crate::record::ENTITY_PREFIX)
            .and_then(|rest| rest.strip_prefix(endpoint))
            .and_then(|rest| rest.strip_prefix('/'))
            .unwrap_or(record_key)
            .to_owned();
        Self {
            endpoint: endpoint.to_owned(),
            entity,
            record_key: record_key.to_owned(),
            incoming,
            env,
            codec,
            routes,
            outgoing: Vec::new(),
            calls: Vec::new(),
            blobs: None,
            max_payload: usize::MAX,
        }
    }

    pub(crate) fn with_blobs(mut self, session: Option<BlobSession>, max_payload: usize) -> Self {
        self.blobs = session;
        self.max_payload = max_payload;
        self
    }

    fn session(&mut self) -> Result<&mut BlobSession, HandlerError> {
        self.blobs.as_mut().ok_or_else(|| {
            HandlerError::failed("this endpoint has no blob store (EndpointBuilder::blobs)")
        })
    }

    /// Writes a blob as an effect of this attempt (e.g. an invoice). It is
    /// written under this attempt's own key, registered in the entity record
    /// first; if this attempt commits, the blob is published (keep the
    /// returned reference in state or in a message), otherwise it is deleted.
    pub async fn write_blob(
        &mut self,
        name: &str,
        content_type: &str,
        data: impl Into<bytes::Bytes>,
    ) -> Result<BlobRef, HandlerError> {
        self.session()?
            .write_bytes(name, content_type, data.into())
            .await
    }

    /// Like [`Context::write_blob`], streaming: memory stays bounded
    /// whatever the size.
    pub async fn write_blob_stream(
        &mut self,
        name: &str,
        content_type: &str,
        data: ByteStream,
    ) -> Result<BlobRef, HandlerError> {
        self.session()?.write(name, content_type, data).await
    }

    /// Reads a published blob as a stream, checked against its reference
    /// (a mismatch is an error at the end of the stream, never silent).
    pub async fn read_blob(&mut self, blob: &BlobRef) -> Result<ByteStream, HandlerError> {
        let store = self.session()?.blobs.clone();
        crate::blob::read(store.as_ref(), blob)
            .await
            .map_err(HandlerError::failed)
    }

    /// Deletes a published blob of this entity once this attempt commits
    /// (e.g. when the state replaces it).
    pub fn delete_blob(&mut self, blob: &BlobRef) -> Result<(), HandlerError> {
        self.session()?.deleted.push(blob.key.clone());
        Ok(())
    }

    /// The key of the entity being handled.
    pub fn entity_key(&self) -> &str {
        &self.entity
    }

    /// Captures a third-party HTTP call, made after this attempt commits,
    /// with an `Idempotency-Key` derived from the incoming message id and the
    /// call's index. Its [`CallResult`](crate::CallResult) comes back to this
    /// entity as a message (register a handler for `CallResult`; its
    /// `entity` field is this entity's key). Returns the result message's id.
    pub fn call(&mut self, mut call: HttpCall) -> Result<MessageId, HandlerError> {
        let index = self.calls.len();
        call.idempotency_key =
            MessageId::derived(&self.incoming.id.to_string(), &format!("call-{index}")).to_string();
        let mut result = self.envelope_with_body(
            &self.endpoint.clone(),
            crate::call::CallResult::TYPE,
            bytes::Bytes::new(),
        );
        result.headers.insert(
            crate::message::headers::CALL_ENTITY.into(),
            self.entity.clone(),
        );
        let id = result.id;
        self.calls.push(PendingCall {
            call,
            result: Some(result),
        });
        Ok(id)
    }

    /// The id of the message being handled.
    pub fn message_id(&self) -> MessageId {
        self.incoming.id
    }

    /// The conversation id (the incoming correlation id, or its own id).
    pub fn correlation_id(&self) -> MessageId {
        self.incoming.correlation_id.unwrap_or(self.incoming.id)
    }

    /// A header of the incoming message.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.incoming.headers.get(name).map(String::as_str)
    }

    /// The endpoint handling the message.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The current time, ms since the epoch (from the injected clock).
    pub fn now_millis(&self) -> u64 {
        self.env.now_millis()
    }

    /// A fresh id from the injected randomness (reproducible under test).
    pub fn new_id(&self) -> MessageId {
        self.env.new_id()
    }

    /// The codec bodies and state use.
    pub fn codec(&self) -> &Arc<dyn Codec> {
        &self.codec
    }

    /// Captures a message to `destination`; returns its id.
    pub fn send<M: Message>(
        &mut self,
        destination: &str,
        message: &M,
    ) -> Result<MessageId, HandlerError> {
        self.send_delayed(destination, message, Duration::ZERO)
    }

    /// Captures a message to `destination`, delivered after `delay`.
    pub fn send_delayed<M: Message>(
        &mut self,
        destination: &str,
        message: &M,
        delay: Duration,
    ) -> Result<MessageId, HandlerError> {
        let envelope = self.envelope(destination, message)?;
        let id = envelope.id;
        self.outgoing.push(Outgoing {
            queue: destination.to_owned(),
            envelope,
            delay,
        });
        Ok(id)
    }

    /// Captures one copy of `message` for every endpoint subscribed to its
    /// type (see [`Routes`]); each copy has its own id and token.
    pub fn publish<M: Message>(&mut self, message: &M) -> Result<Vec<MessageId>, HandlerError> {
        let routes = Arc::clone(&self.routes);
        routes
            .subscribers(M::TYPE)
            .iter()
            .map(|endpoint| self.send(endpoint, message))
            .collect()
    }

    /// Captures a reply to the endpoint that sent the incoming message.
    pub fn reply<M: Message>(&mut self, message: &M) -> Result<MessageId, HandlerError> {
        let to = self.incoming.reply_to.clone().ok_or_else(|| {
            HandlerError::Routing("the incoming message names no reply_to endpoint".into())
        })?;
        self.send(&to, message)
    }

    fn envelope<M: Message>(
        &self,
        destination: &str,
        message: &M,
    ) -> Result<Envelope, HandlerError> {
        let body = self.codec.encode(message)?;
        if body.len() > self.max_payload {
            return Err(HandlerError::failed(format!(
                "a {} message of {} bytes exceeds the payload limit of {} bytes",
                M::TYPE,
                body.len(),
                self.max_payload
            )));
        }
        Ok(self.envelope_with_body(destination, M::TYPE, body))
    }

    fn envelope_with_body(
        &self,
        destination: &str,
        message_type: &str,
        body: bytes::Bytes,
    ) -> Envelope {
        let id = self.env.new_id();
        Envelope {
            id,
            message_type: message_type.to_owned(),
            destination: destination.to_owned(),
            headers: BTreeMap::new(),
            correlation_id: Some(self.correlation_id()),
            causation_id: Some(self.incoming.id),
            reply_to: Some(self.endpoint.clone()),
            // The token lives in this entity's own record and is created by
            // the same write that commits this attempt (TokensBounded).
            token: Some(DedupToken {
                record: self.record_key.clone(),
                id,
            }),
            content_type: self.codec.content_type().to_owned(),
            body,
        }
    }

    pub(crate) fn into_effects(self) -> (Vec<Outgoing>, Vec<PendingCall>, Option<BlobSession>) {
        (self.outgoing, self.calls, self.blobs)
    }
}
