//! Steps 4–5 of a batch's commits: their messages in one send, their
//! tokens consumed where the commits left them, then remembered.

use tracing::debug;

use super::{Committed, Member};
use crate::endpoint::Guarantee;
use crate::protocol::{Core, Probe, Step, pause};
use crate::transport::Outgoing;

impl Core {
    /// Steps 4–5 of every committed member: the messages of all entries
    /// the endpoint leaves for the receivers' consumes (and, at least once,
    /// all captured messages) in one send, then those entries remembered
    /// as sent; any other entry through the finisher. Returns the finished
    /// members and the ones left to the one-at-a-time path (which finds
    /// their entries and finishes them: `Recovered`).
    pub(super) async fn finish_all(
        &self,
        committed: Vec<Committed>,
        probe: Option<&dyn Probe>,
    ) -> (Vec<Member>, Vec<Member>) {
        let finisher = self.finisher(probe);
        let at_least_once = self.config.guarantee == Guarantee::AtLeastOnce;
        let (mut finished, mut unfinished) = (Vec::new(), Vec::new());
        let mut sending = Vec::new();
        for c in committed {
            let entry = &c.prepared.entry;
            if at_least_once || self.leaves(entry) {
                sending.push(c);
            } else if !c.prepared.pending {
                finished.push(c.member);
            } else {
                match finisher
                    .finish_entry(&c.member.key, c.current(), entry)
                    .await
                {
                    Ok(_) => finished.push(c.member),
                    Err(_) => unfinished.push(c.member),
                }
            }
        }
        let messages: Vec<Outgoing> = sending
            .iter()
            .flat_map(|c| c.prepared.entry.messages.iter().cloned())
            .collect();
        if !messages.is_empty() {
            pause(probe, Step::Dispatch).await;
            if let Err(e) = self.transport.send(messages).await {
                debug!(error = %e, "batch dispatch failed; one at a time");
                unfinished.extend(sending.into_iter().map(|c| c.member));
                return (finished, unfinished);
            }
        }
        if at_least_once {
            finished.extend(sending.into_iter().map(|c| c.member));
            return (finished, unfinished);
        }
        // Tokens the commits left to consume (stores without `put_all`),
        // each from its holder as the batch read it; then remembered.
        let consumes = sending.into_iter().map(|mut c| {
            let finisher = &finisher;
            async move {
                let entry = &c.prepared.entry;
                let holder = c.prepared.holder.take();
                let consumed = finisher
                    .consume_token_from(entry.incoming_token.as_ref(), holder)
                    .await;
                (c, consumed)
            }
        });
        for (c, consumed) in futures::future::join_all(consumes).await {
            if consumed.is_err() {
                unfinished.push(c.member);
                continue;
            }
            let incoming = c.prepared.entry.incoming;
            self.dispatched.remember(&c.member.key, incoming);
            finished.push(c.member);
        }
        (finished, unfinished)
    }
}
