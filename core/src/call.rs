//! Third-party calls as captured effects.
//!
//! A handler never calls an outside API itself: it records an [`HttpCall`]
//! in its [`Context`](crate::Context). The call is committed with the new
//! state in the `OutboxEntry`, carrying an idempotency key derived from the
//! incoming message id and the call's index, and a result message whose id
//! and `DedupToken` are fixed at that commit. After the commit, whoever
//! finishes the entry (the worker, a redelivery, the `Sweeper`) performs the
//! call through a [`CallExecutor`] with that same key, then sends the
//! [`CallResult`] back to the entity as an ordinary message — handled exactly
//! once like any other.
//!
//! The third party sees each call once per idempotency key for as long as it
//! remembers keys. For APIs without idempotency keys, [`HttpCall::check`]
//! names a query that tells whether the effect already happened; see
//! `docs/http.md` for what that can and cannot promise.

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::base64_bytes;
use crate::message::{Envelope, Message};

/// The method of an [`HttpCall::exactly_rpc`] call: PUT, then POST.
pub const EXACTLY_RPC: &str = "EXACTLY-RPC";

/// An HTTP request a handler wants made, after its state change commits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpCall {
    /// The handler's label for the call, returned in the [`CallResult`].
    pub name: String,
    /// HTTP method, e.g. `POST`.
    pub method: String,
    /// Absolute URL.
    pub url: String,
    /// Request headers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Request body.
    #[serde(with = "base64_bytes")]
    pub body: Bytes,
    /// Sent as the `Idempotency-Key` header; the same on every retry. Set by
    /// the runtime when the call is captured.
    #[serde(default)]
    pub idempotency_key: String,
    /// For APIs without idempotency keys: a `GET` URL asked before every
    /// execution. A 2xx answer means the effect already happened, and that
    /// answer becomes the result; a 404 means it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<String>,
}

impl HttpCall {
    /// A call with an empty body.
    pub fn new(name: impl Into<String>, method: &str, url: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            method: method.to_owned(),
            url: url.into(),
            headers: BTreeMap::new(),
            body: Bytes::new(),
            idempotency_key: String::new(),
            check: None,
        }
    }

    /// A `POST` with a JSON body.
    pub fn post_json<T: Serialize>(
        name: impl Into<String>,
        url: impl Into<String>,
        body: &T,
    ) -> Result<Self, serde_json::Error> {
        let mut call = Self::new(name, "POST", url);
        call.body = Bytes::from(serde_json::to_vec(body)?);
        call.headers
            .insert("content-type".into(), "application/json".into());
        Ok(call)
    }

    /// A request to another service built on exactly, executed exactly once
    /// with no retention window: the executor `PUT`s `body` as a request of
    /// type `request_type` under the call's key at
    /// `{service}/exactly/requests/{key}`, `POST`s to execute it, returns the
    /// stored response, and the runtime `DELETE`s the request once the
    /// response has been handled (see `docs/http.md`).
    pub fn exactly_rpc<T: Serialize>(
        name: impl Into<String>,
        service: impl Into<String>,
        request_type: &str,
        body: &T,
    ) -> Result<Self, serde_json::Error> {
        let request = serde_json::json!({ "type": request_type, "body": body });
        let mut call = Self::new(name, EXACTLY_RPC, service);
        call.body = Bytes::from(serde_json::to_vec(&request)?);
        call.headers
            .insert("content-type".into(), "application/json".into());
        Ok(call)
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }

    /// Sets the check-before-retry query (see [`HttpCall::check`]).
    pub fn check_before_retry(mut self, url: impl Into<String>) -> Self {
        self.check = Some(url.into());
        self
    }
}

/// What came back from a call: a definitive answer (2xx, 3xx or 4xx), or
/// the last error once retries were used up for a call that cannot succeed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallResult {
    /// The key of the entity that made the call (route results by it).
    pub entity: String,
    /// The call's [`HttpCall::name`].
    pub name: String,
    /// The call's idempotency key.
    pub idempotency_key: String,
    /// HTTP status code.
    pub status: u16,
    /// Response headers (lower-case names).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Response body.
    #[serde(with = "base64_bytes")]
    pub body: Bytes,
    /// Whether the answer came from the check-before-retry query.
    #[serde(default)]
    pub from_check: bool,
    /// For a call to another exactly service ([`HttpCall::exactly_rpc`]):
    /// the URL to `DELETE` once this result has been handled. The runtime
    /// makes that call itself, after the handling commits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
}

impl CallResult {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// Parses the body as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

impl Message for CallResult {
    const TYPE: &'static str = "exactly.CallResult";
}

/// A captured call waiting in an `OutboxEntry`, with its result message's
/// envelope prepared at capture time (id and token fixed; body filled in
/// when the answer arrives).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingCall {
    /// The call.
    pub call: HttpCall,
    /// The result message, addressed back to the calling entity; `None`
    /// for a call whose answer nobody waits for (the `DELETE` that releases
    /// an exactly-once request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Envelope>,
}

/// Why a call did not produce a definitive answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// Timeout, connection error, 5xx, 429: retry later with the same key.
    #[error("call failed, retry with the same key: {0}")]
    Transient(String),
    /// The call cannot be made (bad URL, no executor).
    #[error("call cannot be made: {0}")]
    Permanent(String),
}

/// Performs captured calls. `exactly-http` provides one over `reqwest`.
///
/// # Contract
///
/// - MUST send [`HttpCall::idempotency_key`] as the `Idempotency-Key` header.
/// - MUST return `Ok` only for a definitive answer (2xx–4xx except 408 and
///   429) and [`CallError::Transient`] for anything a retry could change.
/// - When [`HttpCall::check`] is set, MUST ask it first and return its 2xx
///   answer (with `from_check`) instead of making the call.
#[async_trait]
pub trait CallExecutor: Send + Sync + fmt::Debug + 'static {
    /// Performs `call` once (the runtime retries).
    async fn execute(&self, call: &HttpCall) -> Result<CallResult, CallError>;
}
