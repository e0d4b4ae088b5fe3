//! The [`Intent`] extractor: principal, idempotency key, content type, size
//! limit and JSON parsing, each refused with its own clear error.

use axum::extract::{FromRef, FromRequest, Request};
use axum::http::request::Parts;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use super::{FrontError, IntentFront};

/// Establishes who is calling, so idempotency keys are scoped per caller:
/// one client can never obtain another's stored answer by guessing its key.
pub trait PrincipalSource: Send + Sync + std::fmt::Debug + 'static {
    /// The caller's identity (API key id, JWT subject, mTLS name, ...).
    fn principal(&self, parts: &Parts) -> Result<String, FrontError>;
}

/// Everyone is the same principal (single-tenant services and tests).
#[derive(Clone, Copy, Debug, Default)]
pub struct Anonymous;

impl PrincipalSource for Anonymous {
    fn principal(&self, _: &Parts) -> Result<String, FrontError> {
        Ok("anonymous".into())
    }
}

/// The principal is the value of a header (e.g. an API key checked by a
/// layer in front); requests without it are refused with 401.
#[derive(Clone, Debug)]
pub struct HeaderPrincipal(pub String);

impl PrincipalSource for HeaderPrincipal {
    fn principal(&self, parts: &Parts) -> Result<String, FrontError> {
        parts
            .headers
            .get(self.0.as_str())
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map(|v| format!("{:x}", Sha256::digest(v.as_bytes())))
            .ok_or_else(|| FrontError::Unauthenticated(format!("missing {} header", self.0)))
    }
}

/// A parsed intent request: who sent it, under which key, and what.
#[derive(Debug)]
pub struct Intent<T> {
    /// The caller (from the front's [`PrincipalSource`]).
    pub principal: String,
    /// The `Idempotency-Key` header, if sent.
    pub key: Option<String>,
    /// The parsed body.
    pub body: T,
    /// SHA-256 over method, path and body: a reused key with a different
    /// request is refused with 422.
    pub fingerprint: String,
}

impl<S, T> FromRequest<S> for Intent<T>
where
    S: Send + Sync,
    IntentFront: FromRef<S>,
    T: DeserializeOwned,
{
    type Rejection = FrontError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let front = IntentFront::from_ref(state);
        let (parts, body) = request.into_parts();
        let principal = front.principals().principal(&parts)?;
        let content_type = parts
            .headers
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !content_type.starts_with("application/json") {
            return Err(FrontError::UnsupportedMediaType(content_type.to_owned()));
        }
        let key = parts
            .headers
            .get("idempotency-key")
            .map(|v| v.to_str().map(str::to_owned))
            .transpose()
            .map_err(|_| FrontError::MissingKey)?;
        let limit = front.config().max_body_bytes;
        let bytes: Bytes = axum::body::to_bytes(body, limit)
            .await
            .map_err(|_| FrontError::TooLarge { limit })?;
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        let parsed: T =
            serde_path_to_error::deserialize(&mut de).map_err(|e| FrontError::MalformedJson {
                path: e.path().to_string(),
                reason: e.inner().to_string(),
            })?;
        let mut digest = Sha256::new();
        digest.update(parts.method.as_str().as_bytes());
        digest.update(b" ");
        digest.update(parts.uri.path().as_bytes());
        digest.update(b"\n");
        digest.update(&bytes);
        Ok(Self {
            principal,
            key,
            body: parsed,
            fingerprint: format!("{:x}", digest.finalize()),
        })
    }
}
