//! Acks and NAKs on a delivery's ack subject (the receipt handle), sent as
//! requests: JetStream answers once it has applied them, so `ack` returns
//! `Ok` only after the message is gone.

use std::time::Duration;

use async_nats::jetstream::AckKind;
use async_nats::{Client, Request};
use exactly::TransportError;

use crate::error::map_err;

/// How long an ack or NAK waits for JetStream's answer.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Debug)]
pub(crate) struct Acks {
    client: Client,
}

impl Acks {
    pub(crate) fn new(client: Client) -> Self {
        Self { client }
    }

    async fn send(&self, subject: &str, kind: AckKind) -> Result<(), TransportError> {
        if !subject.starts_with("$JS.ACK.") {
            return Err(TransportError::generic(format!(
                "malformed receipt {subject:?}: not a JetStream ack subject"
            )));
        }
        let request = Request::new()
            .payload(kind.into())
            .timeout(Some(ACK_TIMEOUT));
        self.client
            .send_request(subject.to_owned(), request)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    /// Acks the delivery: JetStream removes the message (work queue).
    pub(crate) async fn ack(&self, subject: &str) -> Result<(), TransportError> {
        self.send(subject, AckKind::Ack).await
    }

    /// NAKs the delivery: JetStream delivers it again after `delay`.
    pub(crate) async fn nak(&self, subject: &str, delay: Duration) -> Result<(), TransportError> {
        let delay = (!delay.is_zero()).then_some(delay);
        self.send(subject, AckKind::Nak(delay)).await
    }
}
