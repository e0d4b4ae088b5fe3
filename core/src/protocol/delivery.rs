//! One delivery from receipt to ack: classify, attempt with retries, then
//! ack — or schedule a delayed retry, or move the message to the error queue
//! with the reason. Nothing is dropped without one of those outcomes.

use std::sync::Arc;
use std::time::Duration;

use tracing::{Instrument, info_span, warn};

use super::attempt::Along;
use super::stats::Counter;
use super::{AttemptError, Core, Outcome, Probe, Step, pause};
use crate::handler::ErasedHandler;
use crate::message::{Envelope, UNDECODABLE_TYPE, headers};
use crate::record::{entity_key, validate_token};
use crate::transport::{Delivery, Outgoing};

/// Why a delivery could not be completed.
enum Failure {
    /// It can never succeed: error-queue it now.
    Poison(String),
    /// Immediate retries are used up: retry later, or error-queue it.
    Exhausted(String),
}

impl Core {
    /// Handles one delivery completely (steps 1–6).
    pub(crate) async fn handle_delivery(
        &self,
        delivery: Delivery,
        probe: Option<&dyn Probe>,
    ) -> Outcome {
        let envelope = &delivery.envelope;
        let span = info_span!(
            "exactly.message",
            endpoint = %self.name,
            message_id = %envelope.id,
            message_type = %envelope.message_type,
            entity = tracing::field::Empty,
            attempts = tracing::field::Empty,
        );
        async {
            let along = self
                .colocated
                .as_ref()
                .map(|_| Along::new(&delivery.receipt));
            let outcome = match self.classify(envelope) {
                Ok(handler) => {
                    self.process(&delivery, handler.as_ref(), probe, along.as_ref())
                        .await
                }
                Err(reason) => Err(Failure::Poison(reason)),
            };
            match outcome {
                Ok(outcome) if along.as_ref().is_some_and(Along::was_acked) => {
                    // Acked by the commit itself.
                    self.count(&outcome);
                    outcome
                }
                Ok(outcome) => {
                    self.count(&outcome);
                    pause(probe, Step::Ack).await;
                    let ack = self.transport.ack(&delivery.receipt);
                    if let Err(e) = ack.instrument(tracing::debug_span!("exactly.ack")).await {
                        // The work is done; a redelivery will be dropped as a duplicate.
                        warn!(error = %e, "ack failed");
                    }
                    outcome
                }
                Err(Failure::Poison(reason)) => self.dead_letter(&delivery, reason, probe).await,
                Err(Failure::Exhausted(reason)) => self.retry_later(&delivery, reason, probe).await,
            }
        }
        .instrument(span)
        .await
    }

    /// Finds the handler and the entity key; any failure here is permanent.
    pub(super) fn classify(&self, envelope: &Envelope) -> Result<Arc<dyn ErasedHandler>, String> {
        if envelope.message_type == UNDECODABLE_TYPE {
            let reason = envelope.header(headers::UNDECODABLE_REASON);
            return Err(format!(
                "the transport could not read this message: {}",
                reason.unwrap_or("not an envelope")
            ));
        }
        let handler = self.handlers.get(&envelope.message_type).ok_or_else(|| {
            format!(
                "unknown message type {:?}: endpoint {:?} has no handler for it",
                envelope.message_type, self.name
            )
        })?;
        if envelope.content_type != self.codec.content_type() {
            return Err(format!(
                "content type {:?} is not this endpoint's codec ({:?})",
                envelope.content_type,
                self.codec.content_type()
            ));
        }
        if let Some(token) = &envelope.token {
            validate_token(token).map_err(|e| e.to_string())?;
        }
        Ok(handler.clone())
    }

    /// The store key of the entity the body names; failures are permanent.
    pub(crate) fn entity_of(
        &self,
        handler: &dyn ErasedHandler,
        envelope: &Envelope,
        body: &[u8],
    ) -> Result<String, AttemptError> {
        let key = handler.entity_key(self.codec.as_ref(), body).map_err(|e| {
            AttemptError::Poison(format!("undecodable {} body: {e}", envelope.message_type))
        })?;
        let key = entity_key(&self.name, &key).map_err(|e| AttemptError::Poison(e.to_string()))?;
        tracing::Span::current().record("entity", key.as_str());
        Ok(key)
    }

    /// Attempts until one commits or is found done, retrying conflicts with
    /// jittered back-off and other failures a bounded number of times.
    async fn process(
        &self,
        delivery: &Delivery,
        handler: &dyn ErasedHandler,
        probe: Option<&dyn Probe>,
        along: Option<&Along<'_>>,
    ) -> Result<Outcome, Failure> {
        let policy = &self.config.retry;
        let (mut failures, mut conflicts) = (0u32, 0u32);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            tracing::Span::current().record("attempts", attempt);
            match self
                .attempt(&delivery.envelope, handler, probe, along)
                .await
            {
                Err(AttemptError::Conflict) if conflicts < policy.conflict_limit => {
                    conflicts += 1;
                    let backoff = policy.conflict_backoff.saturating_mul(conflicts.min(16));
                    self.env.clock.sleep(self.env.jitter(backoff)).await;
                }
                Err(AttemptError::Conflict) => {
                    return Err(Failure::Exhausted(
                        "too many write conflicts on the entity".into(),
                    ));
                }
                Err(AttemptError::Retry(reason)) => {
                    failures += 1;
                    if failures > policy.immediate {
                        return Err(Failure::Exhausted(reason));
                    }
                    self.stats.add(Counter::Retries);
                    warn!(%reason, failures, "attempt failed; retrying");
                    self.env
                        .clock
                        .sleep(self.env.jitter(policy.immediate_backoff))
                        .await;
                }
                Err(AttemptError::Poison(reason)) => return Err(Failure::Poison(reason)),
                Ok(outcome) => return Ok(outcome),
            }
        }
    }

    pub(super) fn count(&self, outcome: &Outcome) {
        let counter = match outcome {
            Outcome::Processed => Counter::Processed,
            Outcome::Duplicate => Counter::Duplicates,
            Outcome::Recovered => Counter::Recovered,
            _ => return,
        };
        self.stats.add(counter);
    }

    /// Out of immediate retries: send a copy back to our own queue after a
    /// back-off (same id and token, so it stays deduplicated), or give up to
    /// the error queue when the delayed retries are used up too.
    async fn retry_later(
        &self,
        delivery: &Delivery,
        reason: String,
        probe: Option<&dyn Probe>,
    ) -> Outcome {
        let policy = &self.config.retry;
        let envelope = &delivery.envelope;
        let done: u32 = envelope
            .header(headers::RETRY_COUNT)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if done >= policy.delayed {
            return self.dead_letter(delivery, reason, probe).await;
        }
        let now = self.env.now_millis().to_string();
        let mut copy = envelope.clone();
        copy.headers
            .insert(headers::RETRY_COUNT.into(), (done + 1).to_string());
        copy.headers
            .entry(headers::FIRST_FAILURE.into())
            .or_insert(now);
        let delay = policy
            .delayed_backoff
            .saturating_mul(1 << done.min(16))
            .min(policy.max_delay);
        let retry = Outgoing {
            queue: delivery.receipt.queue.clone(),
            envelope: copy,
            delay: delay + self.env.jitter(delay / 4),
        };
        self.stats.add(Counter::Retries);
        warn!(%reason, retry = done + 1, ?delay, "scheduling a delayed retry");
        if self.replace(delivery, retry, probe).await {
            Outcome::RetryScheduled { reason }
        } else {
            Outcome::Released { reason }
        }
    }

    /// Moves the message to the error queue with the reason and timings.
    async fn dead_letter(
        &self,
        delivery: &Delivery,
        reason: String,
        probe: Option<&dyn Probe>,
    ) -> Outcome {
        let policy = &self.config.retry;
        let now = self.env.now_millis().to_string();
        let mut copy = delivery.envelope.clone();
        let delayed: u32 = copy
            .header(headers::RETRY_COUNT)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let first = copy
            .headers
            .remove(headers::FIRST_FAILURE)
            .unwrap_or_else(|| now.clone());
        let attempts = (delayed + 1) * (policy.immediate + 1);
        copy.headers.extend([
            (headers::ERROR_REASON.to_owned(), reason.clone()),
            (headers::ERROR_ATTEMPTS.to_owned(), attempts.to_string()),
            (headers::ERROR_FIRST_FAILURE.to_owned(), first),
            (headers::ERROR_LAST_FAILURE.to_owned(), now),
            (
                headers::ERROR_SOURCE_QUEUE.to_owned(),
                delivery.receipt.queue.clone(),
            ),
        ]);
        let out = Outgoing {
            queue: self.config.error_queue.clone(),
            envelope: copy,
            delay: Duration::ZERO,
        };
        warn!(%reason, error_queue = %self.config.error_queue, "moving message to the error queue");
        if self.replace(delivery, out, probe).await {
            self.stats.add(Counter::ErrorQueued);
            Outcome::ErrorQueued { reason }
        } else {
            Outcome::Released { reason }
        }
    }

    /// Sends `replacement`, then acks the delivery; if the send fails, the
    /// delivery is returned to its queue instead, so it is never lost.
    async fn replace(
        &self,
        delivery: &Delivery,
        replacement: Outgoing,
        probe: Option<&dyn Probe>,
    ) -> bool {
        pause(probe, Step::Fail).await;
        match self.transport.send(vec![replacement]).await {
            Ok(()) => {
                pause(probe, Step::Ack).await;
                if let Err(e) = self.transport.ack(&delivery.receipt).await {
                    warn!(error = %e, "ack after requeue failed; a duplicate copy may follow");
                }
                true
            }
            Err(e) => {
                warn!(error = %e, "could not requeue; releasing the delivery");
                let back_off = self.config.retry.delayed_backoff;
                if let Err(e) = self.transport.nack(&delivery.receipt, back_off).await {
                    warn!(error = %e, "nack failed; the lease will expire");
                }
                false
            }
        }
    }
}
