//! The exactly-once protocol (see `docs/protocol.md` and `tla/ExactlyOnce.tla`).
//!
//! | step | spec action | function |
//! |---|---|---|
//! | 1 load | `Load` | [`attempt::load_entity`] |
//! | 2 dedup | `CheckToken`, `Reread` | `Core::owed`, `Core::attempt` |
//! | 3 run + commit | `Handle`, `Commit` | `Core::attempt`, [`attempt::commit_attempt`] |
//! | 4 dispatch | `Dispatch` | [`finish::Finisher::dispatch`] |
//! | 5 consume, clean | `ConsumeToken`, `RemoveEntry` | [`finish::Finisher::consume_token`], [`finish::Finisher::remove_entry`] |
//! | 6 ack | `Ack` | `Core::handle_delivery` |

pub(crate) mod attempt;
pub(crate) mod batch;
mod consume_group;
mod core;
pub(crate) mod delivery;
pub(crate) mod dispatched;
mod error_queue;
pub(crate) mod finish;
mod mutant;
pub(crate) mod put_groups;
mod stats;
pub(crate) mod sweeper;

use std::fmt;

use futures::future::BoxFuture;

use crate::error::{StoreError, TransportError};

pub(crate) use self::core::Core;
pub use error_queue::{ErrorQueue, ErrorQueueError};
pub use mutant::Mutant;
pub use stats::{Stats, StatsSnapshot};
pub use sweeper::Sweeper;

/// The protocol's steps. A [`Probe`] is called before each one; every store
/// or transport access is preceded by its own step, so a worker paused at a
/// step acts on whatever it read before.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Step {
    /// Read the entity record (step 1).
    Load,
    /// Read the sender's record to see if the message's token is there (step 2).
    CheckToken,
    /// Re-read the own entity after finding the token gone (step 2).
    Reread,
    /// Run the handler (step 3).
    Handle,
    /// The conditional write of state + OutboxEntry + tokens (step 3).
    Commit,
    /// A `Sender` queues its intent write to be committed with the other
    /// sends running at the same time (group commit); `Commit` follows.
    Group,
    /// Send an entry's outgoing messages (step 4).
    Dispatch,
    /// Make a captured third-party call (step 4).
    Call,
    /// Read or write the sender's record to consume the token (step 5).
    ConsumeToken,
    /// Write the entity record without the finished entry (step 5).
    RemoveEntry,
    /// Acknowledge the delivery (step 6).
    Ack,
    /// Send to the error queue or schedule a delayed retry.
    Fail,
    /// The sweeper reads a record.
    Sweep,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Observes (and may hold up) a worker between protocol steps. The fault
/// harness uses it to pause workers, interleave them and crash them at any
/// step; production code runs without one.
pub trait Probe: Send + Sync {
    /// Called before `step`; the step runs when the returned future completes.
    fn at(&self, step: Step) -> BoxFuture<'_, ()>;
}

pub(crate) async fn pause(probe: Option<&dyn Probe>, step: Step) {
    if let Some(probe) = probe {
        probe.at(step).await;
    }
}

/// Why an attempt stopped short.
#[derive(Debug)]
pub(crate) enum AttemptError {
    /// A conditional write lost a race; start again from step 1.
    Conflict,
    /// Might work on retry (store or broker unavailable, handler failed).
    Retry(String),
    /// Will never work: error-queue the message now.
    Poison(String),
}

impl From<StoreError> for AttemptError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { .. } => Self::Conflict,
            StoreError::TooLarge { .. } | StoreError::InvalidKey { .. } => {
                Self::Poison(e.to_string())
            }
            other => Self::Retry(other.to_string()),
        }
    }
}

impl From<TransportError> for AttemptError {
    fn from(e: TransportError) -> Self {
        Self::Retry(e.to_string())
    }
}

/// How a delivery ended.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// The handler ran and its attempt committed.
    Processed,
    /// The message was already processed; dropped and acked.
    Duplicate,
    /// An earlier attempt had committed; this one finished its work.
    Recovered,
    /// Failed; a delayed retry was scheduled.
    RetryScheduled {
        /// Why the attempt failed.
        reason: String,
    },
    /// Moved to the error queue.
    ErrorQueued {
        /// Why.
        reason: String,
    },
    /// Could not be completed nor moved; returned to the queue.
    Released {
        /// Why.
        reason: String,
    },
}
