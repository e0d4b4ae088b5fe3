//! Queue names → SQS queue URLs: validated, created on first use, cached.

use std::collections::HashMap;
use std::sync::Mutex;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use exactly::TransportError;

use crate::error::{is_missing_queue, map_err};

/// SQS's longest queue name.
const MAX_NAME: usize = 80;

/// The URL of every queue this transport used.
#[derive(Debug)]
pub(crate) struct QueueUrls {
    client: Client,
    urls: Mutex<HashMap<String, String>>,
}

/// SQS takes 1–80 ASCII letters, digits, `-` and `_` (a `.fifo` suffix
/// would make a FIFO queue, which this transport does not use).
fn validate(queue: &str) -> Result<(), TransportError> {
    let refuse = |reason| {
        Err(TransportError::InvalidQueue {
            queue: queue.to_owned(),
            reason,
        })
    };
    if queue.is_empty() || queue.len() > MAX_NAME {
        return refuse("SQS queue names have 1 to 80 characters");
    }
    if !queue
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return refuse("SQS queue names take only ASCII letters, digits, '-' and '_'");
    }
    Ok(())
}

impl QueueUrls {
    pub(crate) fn new(client: Client) -> Self {
        Self {
            client,
            urls: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.urls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The URL of `queue`, creating the SQS queue if it does not exist.
    /// `CreateQueue` with the same (default) attributes is idempotent, so
    /// concurrent first uses in several processes agree.
    pub(crate) async fn resolve(&self, queue: &str) -> Result<String, TransportError> {
        if let Some(url) = self.lock().get(queue) {
            return Ok(url.clone());
        }
        validate(queue)?;
        let found = self.client.get_queue_url().queue_name(queue).send().await;
        let url = match found {
            Ok(out) => out.queue_url().map(str::to_owned),
            Err(e) if is_missing_queue(&e) => self
                .client
                .create_queue()
                .queue_name(queue)
                .send()
                .await
                .map_err(map_err)?
                .queue_url()
                .map(str::to_owned),
            Err(e) => return Err(map_err(e)),
        };
        let url = url.ok_or_else(|| TransportError::generic("SQS answered without a queue URL"))?;
        self.lock().insert(queue.to_owned(), url.clone());
        Ok(url)
    }

    /// Maps an error of a call on `url`. A queue deleted behind our back is
    /// forgotten and reported as transient: the retry creates it again.
    pub(crate) fn map_err<E>(&self, url: &str, error: SdkError<E>) -> TransportError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        if is_missing_queue(&error) {
            self.lock().retain(|_, u| u != url);
            return TransportError::unavailable(format!("SQS queue {url} vanished"));
        }
        map_err(error)
    }

    /// Deletes `queue`'s SQS queue; a missing queue is fine.
    pub(crate) async fn delete(&self, queue: &str) -> Result<(), TransportError> {
        validate(queue)?;
        self.lock().remove(queue);
        let url = match self.client.get_queue_url().queue_name(queue).send().await {
            Ok(out) => out.queue_url().unwrap_or_default().to_owned(),
            Err(e) if is_missing_queue(&e) => return Ok(()),
            Err(e) => return Err(map_err(e)),
        };
        match self.client.delete_queue().queue_url(url).send().await {
            Err(e) if !is_missing_queue(&e) => Err(map_err(e)),
            _ => Ok(()),
        }
    }
}
