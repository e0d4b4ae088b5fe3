//! Intents in: an idempotent front end for axum.
//!
//! A request carrying an `Idempotency-Key` (or an id in its path) becomes a
//! message whose id derives from the caller's principal and that key. The
//! message is committed as an intent record together with the answer, then
//! sent; the answer is `202 Accepted` with a status URL. A repeat of the same
//! request — while the first is still in flight, or on another front-end
//! instance sharing the store — gets the stored answer byte for byte; the
//! same key with a different request gets `422`. A crash between commit and
//! send strands nothing: the front's sweeper sends it.

mod error;
mod extract;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use exactly::record::{EntityRecord, INTENT_PREFIX, validate_name};
use exactly::{Env, Message, MessageId, Sender, Store, StoreError, Sweeper, Transport};
use serde::{Deserialize, Serialize};

pub use error::FrontError;
pub use extract::{Anonymous, HeaderPrincipal, Intent, PrincipalSource};

/// The sender source (and intent-record prefix `i/http/`) of the front end.
pub const SOURCE: &str = "http";

/// Front-end settings.
#[derive(Clone, Debug)]
pub struct FrontConfig {
    /// Largest accepted body (default 1 MiB); larger → 413.
    pub max_body_bytes: usize,
    /// How long a settled intent (and its stored answer) is kept (default
    /// 24 h). A retry after that is a new request.
    pub retention: Duration,
    /// Path prefix of status resources (default `/intents`).
    pub status_path: String,
    /// How often the sweeper looks for stranded intents (default 1 s).
    pub sweep_interval: Duration,
    /// Intents younger than this are left to the request that made them
    /// (default 2 s). A stranded intent is sent within about
    /// `sweep_interval + sweep_min_age`.
    pub sweep_min_age: Duration,
}

impl Default for FrontConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 1 << 20,
            retention: Duration::from_secs(24 * 3600),
            status_path: "/intents".into(),
            sweep_interval: Duration::from_secs(1),
            sweep_min_age: Duration::from_secs(2),
        }
    }
}

/// What the intent record keeps next to the message: who asked, what they
/// asked (fingerprint), and the exact answer bytes.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct StoredAnswer {
    principal: String,
    fingerprint: String,
    created_at: u64,
    location: String,
    body: String,
}

/// The `202 Accepted` answer to an intent, identical for every repeat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// The message id the intent became.
    pub id: MessageId,
    /// The status resource URL (also the `Location` header).
    pub location: String,
    /// The JSON body bytes.
    pub body: Bytes,
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let mut response = (StatusCode::ACCEPTED, self.body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Ok(location) = HeaderValue::from_str(&self.location) {
            headers.insert(header::LOCATION, location);
        }
        response
    }
}

/// Where an intent is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IntentStatus {
    /// Committed, not yet processed by its receiver: queued, or about to
    /// be (the record does not tell the two apart: once sent, the intent is
    /// left as it was committed, and the receiver's consume settles it).
    Accepted,
    /// Processed by its receiver (its token was consumed).
    Processed,
}

/// The idempotent front end. Cheap to clone; use it as axum state (or
/// implement `FromRef` for your state) and take [`Intent`] in handlers.
#[derive(Clone, Debug)]
pub struct IntentFront {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    sender: Sender,
    store: Arc<dyn Store>,
    config: FrontConfig,
    principals: Arc<dyn PrincipalSource>,
    env: Env,
}

impl IntentFront {
    /// A front end committing intents to `store` and sending them on
    /// `transport`, with default settings and one anonymous principal.
    pub fn new(store: Arc<dyn Store>, transport: Arc<dyn Transport>) -> Self {
        Self::with(
            store,
            transport,
            FrontConfig::default(),
            Arc::new(Anonymous),
            Env::system(),
        )
    }

    /// A front end with explicit settings, principals and environment.
    pub fn with(
        store: Arc<dyn Store>,
        transport: Arc<dyn Transport>,
        config: FrontConfig,
        principals: Arc<dyn PrincipalSource>,
        env: Env,
    ) -> Self {
        let sender = Sender::new(SOURCE, store.clone(), transport)
            .unwrap_or_else(|_| unreachable!("\"http\" is a valid source name"))
            .env(env.clone());
        Self {
            inner: Arc::new(Inner {
                sender,
                store,
                config,
                principals,
                env,
            }),
        }
    }

    /// The settings.
    pub fn config(&self) -> &FrontConfig {
        &self.inner.config
    }

    pub(crate) fn principals(&self) -> &dyn PrincipalSource {
        self.inner.principals.as_ref()
    }

    /// Commits `message` for `destination` under the request's
    /// `Idempotency-Key` (required), and answers 202.
    pub async fn submit<T, M: Message>(
        &self,
        intent: &Intent<T>,
        destination: &str,
        message: &M,
    ) -> Result<Answer, FrontError> {
        let key = intent.key.as_deref().ok_or(FrontError::MissingKey)?;
        self.submit_with_key(intent, key, destination, message)
            .await
    }

    /// Like [`IntentFront::submit`], with the key taken from elsewhere,
    /// e.g. the `{id}` of `PUT /carts/{id}/submit`.
    pub async fn submit_with_key<T, M: Message>(
        &self,
        intent: &Intent<T>,
        key: &str,
        destination: &str,
        message: &M,
    ) -> Result<Answer, FrontError> {
        validate_name("idempotency key", key).map_err(FrontError::InvalidKey)?;
        let id = MessageId::derived(&format!("exactly-http:{}", intent.principal), key);
        let location = format!("{}/{id}", self.inner.config.status_path);
        let body = serde_json::json!({ "id": id, "status": "accepted", "status_url": location });
        let stored = StoredAnswer {
            principal: intent.principal.clone(),
            fingerprint: intent.fingerprint.clone(),
            created_at: self.inner.env.now_millis(),
            location,
            body: body.to_string(),
        };
        let state = Bytes::from(
            serde_json::to_vec(&stored).map_err(|e| FrontError::Unavailable(e.to_string()))?,
        );
        let envelope = self.inner.sender.envelope(id, destination, message)?;
        let committed = self.inner.sender.send_with_state(envelope, state).await?;
        let first: StoredAnswer = committed
            .state
            .as_deref()
            .and_then(|s| serde_json::from_slice(s).ok())
            .ok_or_else(|| FrontError::Unavailable("the intent record has no answer".into()))?;
        if first.fingerprint != intent.fingerprint || first.principal != intent.principal {
            return Err(FrontError::KeyReused);
        }
        Ok(Answer {
            id,
            location: first.location,
            body: Bytes::from(first.body),
        })
    }

    /// Where the intent `id` of `principal` is.
    pub async fn status(&self, principal: &str, id: &str) -> Result<IntentStatus, FrontError> {
        let id: MessageId = id.parse().map_err(|_| FrontError::NotFound)?;
        let key = self.inner.sender.record_key(id);
        let found = self
            .inner
            .store
            .get(&key)
            .await
            .map_err(|e| FrontError::Unavailable(e.to_string()))?
            .ok_or(FrontError::NotFound)?;
        let record = EntityRecord::decode(&key, &found.value)
            .map_err(|e| FrontError::Unavailable(e.to_string()))?;
        let stored: Option<StoredAnswer> = record
            .state
            .as_deref()
            .and_then(|s| serde_json::from_slice(s).ok());
        if stored.map(|s| s.principal) != Some(principal.to_owned()) {
            return Err(FrontError::NotFound);
        }
        Ok(if !record.is_settled() {
            IntentStatus::Accepted
        } else {
            IntentStatus::Processed
        })
    }

    /// An axum router serving `GET {status_path}/{id}`.
    pub fn status_routes<S: Clone + Send + Sync + 'static>(&self) -> axum::Router<S> {
        let path = format!("{}/{{id}}", self.inner.config.status_path);
        axum::Router::new()
            .route(&path, axum::routing::get(status_handler))
            .with_state(self.clone())
    }

    /// The sweeper that sends intents stranded between commit and send.
    pub fn sweeper(&self) -> Sweeper {
        self.inner
            .sender
            .sweeper()
            .min_age(self.inner.config.sweep_min_age)
    }

    /// Deletes settled intents older than the retention; returns how many.
    pub async fn expire_once(&self) -> Result<usize, StoreError> {
        let store = self.inner.store.as_ref();
        let prefix = format!("{INTENT_PREFIX}{SOURCE}/");
        let horizon = self
            .inner
            .env
            .now_millis()
            .saturating_sub(self.inner.config.retention.as_millis() as u64);
        let (mut deleted, mut after) = (0, None::<String>);
        loop {
            let keys = store.list(&prefix, after.as_deref(), 256).await?;
            for key in &keys {
                let Some(found) = store.get(key).await? else {
                    continue;
                };
                let record = EntityRecord::decode(key, &found.value)?;
                let created = record
                    .state
                    .as_deref()
                    .and_then(|s| serde_json::from_slice::<StoredAnswer>(s).ok())
                    .map_or(0, |s| s.created_at);
                // Only settled intents: nothing to send, no token in flight.
                if record.is_settled() && created <= horizon {
                    match store.delete(key, &found.version).await {
                        Ok(()) => deleted += 1,
                        Err(e) if e.is_conflict() || matches!(e, StoreError::NotFound { .. }) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            match keys.last() {
                Some(last) if keys.len() == 256 => after = Some(last.clone()),
                _ => return Ok(deleted),
            }
        }
    }

    /// Runs the sweeper and the expiry until `shutdown` completes.
    pub async fn run(&self, shutdown: impl std::future::Future<Output = ()>) {
        let sweeper = self.sweeper();
        let interval = self.inner.config.sweep_interval;
        tokio::pin!(shutdown);
        loop {
            if let Err(e) = sweeper.sweep_once().await {
                tracing::warn!(error = %e, "intent sweep failed");
            }
            if let Err(e) = self.expire_once().await {
                tracing::warn!(error = %e, "intent expiry failed");
            }
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(interval) => {}
            }
        }
    }
}

async fn status_handler(
    State(front): State<IntentFront>,
    Path(id): Path<String>,
    request: axum::extract::Request,
) -> Result<axum::Json<serde_json::Value>, FrontError> {
    let (parts, _) = request.into_parts();
    let principal = front.principals().principal(&parts)?;
    let status = front.status(&principal, &id).await?;
    Ok(axum::Json(
        serde_json::json!({ "id": id, "status": status }),
    ))
}
