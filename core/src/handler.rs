//! The handler API: a handler gets the entity's state, the message and a
//! [`Context`] that captures effects; it never performs an effect itself.

use std::future::Future;
use std::marker::PhantomData;

use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::{Codec, CodecExt};
use crate::context::Context;
use crate::error::{CodecError, HandlerError};
use crate::message::Message;

/// Handles one message type for one kind of entity.
///
/// The runtime loads the state of the entity named by [`Handler::entity_key`],
/// calls [`Handler::handle`], and commits the new state together with the
/// effects captured in the [`Context`] — or, if another attempt committed
/// first, throws this attempt's work away. A handler may therefore run more
/// than once for one message; only one run's state and effects take hold.
///
/// ```
/// use exactly::{Context, Handler, HandlerError, Message};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Deposit { account: String, cents: u64 }
/// impl Message for Deposit { const TYPE: &'static str = "Deposit"; }
///
/// #[derive(Serialize, Deserialize, Default)]
/// struct Account { balance: u64 }
///
/// struct Deposits;
/// impl Handler<Deposit> for Deposits {
///     type State = Account;
///     fn entity_key(&self, m: &Deposit) -> String { m.account.clone() }
///     async fn handle(&self, s: &mut Account, m: Deposit, _: &mut Context) -> Result<(), HandlerError> {
///         s.balance += m.cents;
///         Ok(())
///     }
/// }
/// ```
pub trait Handler<M: Message>: Send + Sync + 'static {
    /// The entity's state; `Default` is the state of a new entity.
    type State: Serialize + DeserializeOwned + Default + Send + 'static;

    /// The key of the entity this message is for.
    fn entity_key(&self, message: &M) -> String;

    /// Applies the message to the state, capturing effects in `ctx`.
    fn handle(
        &self,
        state: &mut Self::State,
        message: M,
        ctx: &mut Context,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;
}

/// A handler from two plain functions: one picks the entity key, one updates
/// the state. Most handlers are this simple, since effects are only captured.
///
/// ```
/// use exactly::{handler_fn, Message};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Serialize, Deserialize)] struct Deposit { account: String, cents: u64 }
/// # impl Message for Deposit { const TYPE: &'static str = "Deposit"; }
/// let deposits = handler_fn(
///     |m: &Deposit| m.account.clone(),
///     |balance: &mut u64, m: Deposit, _ctx| { *balance += m.cents; Ok(()) },
/// );
/// # let _ = deposits;
/// ```
pub fn handler_fn<M, S, K, F>(key: K, handle: F) -> FnHandler<M, S, K, F>
where
    K: Fn(&M) -> String,
    F: Fn(&mut S, M, &mut Context) -> Result<(), HandlerError>,
{
    FnHandler {
        key,
        handle,
        _types: PhantomData,
    }
}

/// The handler [`handler_fn`] builds.
pub struct FnHandler<M, S, K, F> {
    key: K,
    handle: F,
    _types: PhantomData<fn(M) -> S>,
}

impl<M, S, K, F> Handler<M> for FnHandler<M, S, K, F>
where
    M: Message,
    S: Serialize + DeserializeOwned + Default + Send + 'static,
    K: Fn(&M) -> String + Send + Sync + 'static,
    F: Fn(&mut S, M, &mut Context) -> Result<(), HandlerError> + Send + Sync + 'static,
{
    type State = S;

    fn entity_key(&self, message: &M) -> String {
        (self.key)(message)
    }

    fn handle(
        &self,
        state: &mut S,
        message: M,
        ctx: &mut Context,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send {
        std::future::ready((self.handle)(state, message, ctx))
    }
}

/// A handler with its types erased, as the runtime stores it.
pub(crate) trait ErasedHandler: Send + Sync {
    /// Decodes the body far enough to name the entity.
    fn entity_key(&self, codec: &dyn Codec, body: &[u8]) -> Result<String, CodecError>;

    /// Runs the handler on encoded state; returns the encoded new state.
    fn run<'a>(
        &'a self,
        state: Option<&'a [u8]>,
        body: &'a [u8],
        ctx: &'a mut Context,
    ) -> BoxFuture<'a, Result<Bytes, HandlerError>>;
}

pub(crate) struct Erased<M, H> {
    handler: H,
    _message: PhantomData<fn(M)>,
}

impl<M, H> Erased<M, H> {
    pub(crate) fn new(handler: H) -> Self {
        Self {
            handler,
            _message: PhantomData,
        }
    }
}

impl<M: Message, H: Handler<M>> ErasedHandler for Erased<M, H> {
    fn entity_key(&self, codec: &dyn Codec, body: &[u8]) -> Result<String, CodecError> {
        let message: M = codec.decode(body)?;
        Ok(self.handler.entity_key(&message))
    }

    fn run<'a>(
        &'a self,
        state: Option<&'a [u8]>,
        body: &'a [u8],
        ctx: &'a mut Context,
    ) -> BoxFuture<'a, Result<Bytes, HandlerError>> {
        async move {
            let codec = ctx.codec().clone();
            let message: M = codec.decode(body)?;
            let mut state: H::State = match state {
                Some(bytes) => codec.decode(bytes)?,
                None => H::State::default(),
            };
            // A panicking handler is a failed attempt, not a dead worker. The
            // handler's future is created inside the guarded block, so a
            // panic while creating it (a sync handler) is caught too.
            let run = std::panic::AssertUnwindSafe(async {
                self.handler.handle(&mut state, message, ctx).await
            });
            match run.catch_unwind().await {
                Ok(result) => result?,
                Err(panic) => return Err(HandlerError::Failed(panic_text(&panic))),
            }
            Ok(codec.encode(&state)?)
        }
        .boxed()
    }
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    let text = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-text panic payload".into());
    format!("handler panicked: {text}")
}
