//! The producer: feeds `Bump`s in a closed loop (a fixed number in flight)
//! or all at once for a drain run.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use exactly::{Guarantee, Outgoing, Sender, Transport};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::measure::now_us;
use crate::workload::{Bump, Spec};

/// The closed-loop producer: takes a window permit (returned when the
/// message completes), stamps the time, sends.
#[derive(Clone)]
pub struct Feed {
    pub spec: Spec,
    /// The first hop's queue.
    pub queue: String,
    /// The next message number to send.
    pub next: Arc<AtomicU64>,
    pub window: Arc<Semaphore>,
    pub sender: Sender,
    pub transport: Arc<dyn Transport>,
}

impl Feed {
    async fn produce(&self) -> Result<(), String> {
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            if i >= self.spec.messages {
                return Ok(());
            }
            self.window
                .acquire()
                .await
                .map_err(|e| e.to_string())?
                .forget();
            let bump = Bump {
                entity: format!("entity-{}", i % self.spec.entities.max(1)),
                sent_at_us: now_us(),
                hops_left: (self.spec.shape.hops() - 1) as u8,
            };
            self.send(&bump).await?;
        }
    }

    /// Exactly-once: through a `Sender` (intent record with the token,
    /// then dispatch). At-least-once: the plain envelope, no token.
    async fn send(&self, bump: &Bump) -> Result<(), String> {
        match self.spec.mode {
            Guarantee::ExactlyOnce => {
                self.sender
                    .send(&self.queue, bump)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Guarantee::AtLeastOnce => {
                let id = exactly::Env::system().new_id();
                let mut envelope = self
                    .sender
                    .envelope(id, &self.queue, bump)
                    .map_err(|e| e.to_string())?;
                envelope.token = None;
                self.transport
                    .send(vec![Outgoing::new(envelope)])
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }
}

/// One producer task per worker.
pub fn spawn_producers(producers: &mut JoinSet<Result<(), String>>, feed: &Feed) {
    for _ in 0..feed.spec.concurrency.max(1) {
        let feed = feed.clone();
        producers.spawn(async move { feed.produce().await });
    }
}
