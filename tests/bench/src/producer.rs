//! The producer: feeds `Bump`s in a closed loop (a fixed number in flight)
//! or all at once for a drain run; with `--batch`, up to that many per
//! send.

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
    /// Takes a window permit, and as many more as are free at once, up to
    /// the batch; stamps the time and sends that many messages together.
    async fn produce(&self) -> Result<(), String> {
        let batch = self.spec.batch.max(1) as u64;
        loop {
            self.window
                .acquire()
                .await
                .map_err(|e| e.to_string())?
                .forget();
            let mut taken = 1;
            while taken < batch
                && let Ok(permit) = self.window.try_acquire()
            {
                permit.forget();
                taken += 1;
            }
            let first = self.next.fetch_add(taken, Ordering::Relaxed);
            let last = (first + taken).min(self.spec.messages);
            if first >= last {
                return Ok(());
            }
            let bumps: Vec<Bump> = (first..last)
                .map(|i| Bump {
                    entity: format!("entity-{}", i % self.spec.entities.max(1)),
                    sent_at_us: now_us(),
                    hops_left: (self.spec.shape.hops() - 1) as u8,
                })
                .collect();
            self.send(&bumps).await?;
        }
    }

    /// Exactly-once: through a `Sender` (intent records with the tokens,
    /// then dispatch; one `put_all` and one send for several). At-least-once:
    /// the plain envelopes, no token, in one send.
    async fn send(&self, bumps: &[Bump]) -> Result<(), String> {
        match self.spec.mode {
            Guarantee::ExactlyOnce => {
                self.sender
                    .send_all(&self.queue, bumps)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Guarantee::AtLeastOnce => {
                let envelopes = bumps
                    .iter()
                    .map(|bump| {
                        let id = exactly::Env::system().new_id();
                        let mut envelope = self.sender.envelope(id, &self.queue, bump)?;
                        envelope.token = None;
                        Ok(Outgoing::new(envelope))
                    })
                    .collect::<Result<Vec<_>, exactly::SendError>>()
                    .map_err(|e| e.to_string())?;
                self.transport
                    .send(envelopes)
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }
}

/// The producer tasks (`Spec::producers`, one per worker by default).
pub fn spawn_producers(producers: &mut JoinSet<Result<(), String>>, feed: &Feed) {
    for _ in 0..feed.spec.producers.max(1) {
        let feed = feed.clone();
        producers.spawn(async move { feed.produce().await });
    }
}
