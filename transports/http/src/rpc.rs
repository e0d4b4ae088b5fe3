//! Exactly-once requests between two services that both run exactly: the
//! server half (`PUT` / `POST` / `DELETE /exactly/requests/{id}`).
//!
//! The stored request *is* the token. `PUT` stores it under the caller's
//! fresh id; `POST` runs the handler for its type against that one record
//! and commits the response and the handler's captured messages in one
//! conditional write — concurrent or repeated `POST`s get the stored
//! response, a stale one cannot commit a second time; `DELETE` releases it
//! once the caller has handled the response. Released requests keep a
//! small tombstone (no bodies) for `tombstone_grace`, so a caller worker
//! that stalled past the release cannot make it execute again; see
//! `docs/http.md` for exactly what that window means.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use exactly::record::{EntityRecord, INTENT_PREFIX, read_record, validate_name};
use exactly::{
    Context, Env, HandlerError, MessageId, Once, OnceStep, Sender, Store, StoreError, Sweeper,
    Transport,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::front::{Anonymous, FrontError, PrincipalSource};

/// Sender source (and record prefix `i/rpc/`) of the server.
pub const SOURCE: &str = "rpc";

type BoxHandler = Box<
    dyn Fn(&serde_json::Value, &mut Context) -> Result<serde_json::Value, HandlerError>
        + Send
        + Sync,
>;

/// One stored request: the token, the request, then the response.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct RequestRecord {
    principal: String,
    fingerprint: String,
    request_type: String,
    #[serde(default)]
    request: serde_json::Value,
    #[serde(default)]
    response: Option<serde_json::Value>,
    /// Set by `DELETE`: bodies dropped, only this tombstone kept.
    #[serde(default)]
    released_at: Option<u64>,
    /// When the `PUT` stored it (ms).
    #[serde(default)]
    created_at: u64,
}

#[derive(Deserialize)]
struct PutBody {
    #[serde(rename = "type")]
    request_type: String,
    body: serde_json::Value,
}

/// The server half of the exactly-once HTTP protocol. Cheap to clone.
#[derive(Clone)]
pub struct RpcServer {
    inner: Arc<Inner>,
}

struct Inner {
    sender: Sender,
    store: Arc<dyn Store>,
    env: Env,
    handlers: HashMap<String, BoxHandler>,
    principals: Arc<dyn PrincipalSource>,
    tombstone_grace: Duration,
    request_ttl: Duration,
}

impl std::fmt::Debug for RpcServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcServer").finish_non_exhaustive()
    }
}

/// Builds an [`RpcServer`].
pub struct RpcServerBuilder {
    store: Arc<dyn Store>,
    transport: Arc<dyn Transport>,
    env: Env,
    handlers: HashMap<String, BoxHandler>,
    principals: Arc<dyn PrincipalSource>,
    tombstone_grace: Duration,
    request_ttl: Duration,
}

impl RpcServerBuilder {
    /// Handles requests of type `request_type`: `handler` gets the request
    /// and a [`Context`] to capture messages, and returns the response.
    /// It runs at least once and commits exactly once per request.
    pub fn handler<Req, Resp, F>(mut self, request_type: &str, handler: F) -> Self
    where
        Req: DeserializeOwned,
        Resp: Serialize,
        F: Fn(Req, &mut Context) -> Result<Resp, HandlerError> + Send + Sync + 'static,
    {
        let erased: BoxHandler = Box::new(move |request, ctx| {
            let request: Req =
                serde_json::from_value(request.clone()).map_err(HandlerError::failed)?;
            let response = handler(request, ctx)?;
            serde_json::to_value(response).map_err(HandlerError::failed)
        });
        self.handlers.insert(request_type.to_owned(), erased);
        self
    }

    /// Who is calling (default: everyone is one principal).
    pub fn principals(mut self, principals: Arc<dyn PrincipalSource>) -> Self {
        self.principals = principals;
        self
    }

    /// How long released requests keep their tombstone (default 24 h).
    pub fn tombstone_grace(mut self, grace: Duration) -> Self {
        self.tombstone_grace = grace;
        self
    }

    /// How long a stored request that was never executed is kept (default
    /// 24 h): a `PUT` whose `POST` never comes (a caller that gave up, or a
    /// late `PUT` that arrived after its release) must not linger.
    pub fn request_ttl(mut self, ttl: Duration) -> Self {
        self.request_ttl = ttl;
        self
    }

    /// Injects time and randomness.
    pub fn env(mut self, env: Env) -> Self {
        self.env = env;
        self
    }

    /// Builds the server.
    pub fn build(self) -> RpcServer {
        let sender = Sender::new(SOURCE, self.store.clone(), self.transport)
            .unwrap_or_else(|_| unreachable!("\"rpc\" is a valid source name"))
            .env(self.env.clone());
        RpcServer {
            inner: Arc::new(Inner {
                sender,
                store: self.store,
                env: self.env,
                handlers: self.handlers,
                principals: self.principals,
                tombstone_grace: self.tombstone_grace,
                request_ttl: self.request_ttl,
            }),
        }
    }
}

impl RpcServer {
    /// Starts building a server storing requests in `store`; messages its
    /// handlers capture go out on `transport`.
    pub fn builder(store: Arc<dyn Store>, transport: Arc<dyn Transport>) -> RpcServerBuilder {
        RpcServerBuilder {
            store,
            transport,
            env: Env::system(),
            handlers: HashMap::new(),
            principals: Arc::new(Anonymous),
            tombstone_grace: Duration::from_secs(24 * 3600),
            request_ttl: Duration::from_secs(24 * 3600),
        }
    }

    /// The routes: `PUT`, `POST` and `DELETE /exactly/requests/{id}`.
    pub fn routes<S: Clone + Send + Sync + 'static>(&self) -> axum::Router<S> {
        axum::Router::new()
            .route(
                "/exactly/requests/{id}",
                axum::routing::put(put).post(post).delete(delete),
            )
            .with_state(self.clone())
    }

    fn id(&self, request: &Request, id: &str) -> Result<(String, MessageId), FrontError> {
        validate_name("request id", id).map_err(FrontError::InvalidKey)?;
        let (parts, ()) = Request::new(()).into_parts();
        let mut parts = parts;
        parts.headers = request.headers().clone();
        let principal = self.inner.principals.principal(&parts)?;
        let rid = MessageId::derived(&format!("exactly-rpc:{principal}"), id);
        Ok((principal, rid))
    }

    async fn read(
        &self,
        rid: MessageId,
    ) -> Result<Option<(RequestRecord, EntityRecord, exactly::Version)>, FrontError> {
        let key = self.inner.sender.record_key(rid);
        let loaded = read_record(self.inner.store.as_ref(), &key)
            .await
            .map_err(unavailable)?;
        let Some(version) = loaded.version else {
            return Ok(None);
        };
        let stored = decode(loaded.record.state.as_deref())?;
        Ok(Some((stored, loaded.record, version)))
    }

    /// The sweeper that sends messages a crashed `POST` committed but did
    /// not send.
    pub fn sweeper(&self) -> Sweeper {
        self.inner.sender.sweeper()
    }

    /// Deletes tombstones older than the grace period whose messages are
    /// all delivered, and requests never executed within the request TTL;
    /// returns how many.
    pub async fn cleanup_once(&self) -> Result<usize, StoreError> {
        let store = self.inner.store.as_ref();
        let prefix = format!("{INTENT_PREFIX}{SOURCE}/");
        let now = self.inner.env.now_millis();
        let horizon = now.saturating_sub(self.inner.tombstone_grace.as_millis() as u64);
        let expired = now.saturating_sub(self.inner.request_ttl.as_millis() as u64);
        let mut deleted = 0;
        for key in store.list(&prefix, None, usize::MAX).await? {
            let Some(found) = store.get(&key).await? else {
                continue;
            };
            let record = EntityRecord::decode(&key, &found.value)?;
            let stored = decode(record.state.as_deref()).ok();
            let released = stored
                .as_ref()
                .and_then(|r| r.released_at)
                .is_some_and(|at| at <= horizon);
            let abandoned = stored.as_ref().is_some_and(|r| {
                r.response.is_none() && r.released_at.is_none() && r.created_at <= expired
            });
            if (released || abandoned) && record.is_settled() {
                match store.delete(&key, &found.version).await {
                    Ok(()) => deleted += 1,
                    Err(e) if e.is_conflict() || matches!(e, StoreError::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(deleted)
    }
}

fn decode(state: Option<&[u8]>) -> Result<RequestRecord, FrontError> {
    state
        .and_then(|s| serde_json::from_slice(s).ok())
        .ok_or_else(|| FrontError::Unavailable("not an exactly request record".into()))
}

fn unavailable(e: impl std::fmt::Display) -> FrontError {
    FrontError::Unavailable(e.to_string())
}

fn gone() -> Response {
    let body = serde_json::json!({"error": "released", "message": "this request was already executed and released"});
    (StatusCode::GONE, axum::Json(body)).into_response()
}

async fn put(
    State(server): State<RpcServer>,
    Path(id): Path<String>,
    request: Request,
) -> Result<Response, FrontError> {
    let (principal, rid) = server.id(&request, &id)?;
    let bytes = axum::body::to_bytes(request.into_body(), 1 << 20)
        .await
        .map_err(|_| FrontError::TooLarge { limit: 1 << 20 })?;
    let body: PutBody = serde_json::from_slice(&bytes).map_err(|e| FrontError::MalformedJson {
        path: ".".into(),
        reason: e.to_string(),
    })?;
    let stored = RequestRecord {
        principal,
        fingerprint: format!("{:x}", Sha256::digest(&bytes)),
        request_type: body.request_type,
        request: body.body,
        response: None,
        released_at: None,
        created_at: server.inner.env.now_millis(),
    };
    let state = Bytes::from(serde_json::to_vec(&stored).map_err(unavailable)?);
    let first = decode(
        server
            .inner
            .sender
            .create(rid, state)
            .await?
            .state
            .as_deref(),
    )?;
    if first.released_at.is_some() {
        return Ok(gone());
    }
    if first.fingerprint != stored.fingerprint {
        return Err(FrontError::KeyReused);
    }
    Ok(StatusCode::CREATED.into_response())
}

async fn post(
    State(server): State<RpcServer>,
    Path(id): Path<String>,
    request: Request,
) -> Result<Response, FrontError> {
    let (_, rid) = server.id(&request, &id)?;
    let handlers = &server.inner.handlers;
    let outcome = server
        .inner
        .sender
        .run_once(rid, |state: &Bytes, ctx: &mut Context| {
            let mut stored = decode(Some(state)).map_err(HandlerError::failed)?;
            if stored.response.is_some() || stored.released_at.is_some() {
                return Ok(OnceStep::Done);
            }
            let handler = handlers.get(&stored.request_type).ok_or_else(|| {
                HandlerError::Routing(format!(
                    "no handler for request type {:?}",
                    stored.request_type
                ))
            })?;
            stored.response = Some(handler(&stored.request, ctx)?);
            Ok(OnceStep::Commit(Bytes::from(
                serde_json::to_vec(&stored).map_err(HandlerError::failed)?,
            )))
        })
        .await;
    let state = match outcome {
        Ok(Once::Missing) => return Err(FrontError::NotFound),
        Ok(Once::Done(state) | Once::Ran(state)) => state,
        Err(exactly::SendError::Handler(e)) => {
            let body = serde_json::json!({"error": "handler_failed", "message": e.to_string()});
            return Ok((StatusCode::UNPROCESSABLE_ENTITY, axum::Json(body)).into_response());
        }
        Err(e) => return Err(e.into()),
    };
    let stored = decode(Some(&state))?;
    match stored.response {
        Some(response) if stored.released_at.is_none() => {
            Ok((StatusCode::OK, axum::Json(response)).into_response())
        }
        _ => Ok(gone()),
    }
}

async fn delete(
    State(server): State<RpcServer>,
    Path(id): Path<String>,
    request: Request,
) -> Result<Response, FrontError> {
    let (_, rid) = server.id(&request, &id)?;
    let key = server.inner.sender.record_key(rid);
    for _ in 0..64 {
        let Some((mut stored, mut record, version)) = server.read(rid).await? else {
            return Ok(StatusCode::NO_CONTENT.into_response());
        };
        if stored.released_at.is_some() {
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
        // Keep a tombstone without the bodies: nothing personal lingers.
        stored.request = serde_json::Value::Null;
        stored.response = None;
        stored.released_at = Some(server.inner.env.now_millis());
        record.state = Some(Bytes::from(
            serde_json::to_vec(&stored).map_err(unavailable)?,
        ));
        let put = server
            .inner
            .store
            .put(
                &key,
                record.encode(),
                exactly::Precondition::Matches(version),
            )
            .await;
        match put {
            Ok(_) => return Ok(StatusCode::NO_CONTENT.into_response()),
            Err(e) if e.is_conflict() => continue,
            Err(e) => return Err(unavailable(e)),
        }
    }
    Err(FrontError::Unavailable("the request kept changing".into()))
}
