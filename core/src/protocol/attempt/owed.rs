//! The reads of steps 1 and 2: the entity's record, and whether the
//! message is still owed processing — its `DedupToken` still in its holder,
//! or (fallback mode) its id absent from the identity inbox — and the body
//! the handler gets (a claim-checked one read from the blob store).

use bytes::Bytes;
use tracing::{Instrument, debug_span};

use super::load_entity;
use crate::blob::{BlobError, CLAIM_HEADER, fetch_claim};
use crate::message::Envelope;
use crate::protocol::{AttemptError, Core, Probe, Step};
use crate::record::{Loaded, read_record};

impl Core {
    /// Step 1's read, and step 2's with it where it can: the entity's
    /// record and, when another record holds the message's token, that
    /// record too, in one `Store::get_all` (which reads the holder no
    /// earlier than the entity, so the check still comes after the load;
    /// one statement on SQL stores). Mutants read one by one, as they were
    /// written to.
    pub(super) async fn load(
        &self,
        envelope: &Envelope,
        key: &str,
        probe: Option<&dyn Probe>,
    ) -> Result<(Loaded, Option<Loaded>), AttemptError> {
        let holder = envelope
            .token
            .as_ref()
            .map(|t| t.record.as_str())
            .filter(|holder| *holder != key && self.current_paths());
        let Some(holder) = holder else {
            return Ok((load_entity(self.store.as_ref(), key).await?, None));
        };
        let span = debug_span!("exactly.load", entity = key, token_holder = holder);
        let mut read = self
            .store
            .get_all(&[key, holder])
            .instrument(span)
            .await?
            .into_iter();
        let entity = Loaded::parse(key, read.next().flatten())?;
        let holder = Loaded::parse(holder, read.next().flatten())?;
        // Where the separate token read would have paused.
        crate::protocol::pause(probe, Step::CheckToken).await;
        Ok((entity, Some(holder)))
    }

    /// Step 2: is the message still owed processing? With a token: is the
    /// token still in the sender's record. Without one: is the id absent
    /// from the entity's identity inbox (fallback mode). `None` if not
    /// owed; otherwise the token's holder record as read, when it is
    /// another record than the entity's. `prefetched` is the holder as
    /// read together with the entity by [`Core::load`].
    pub(crate) async fn owed(
        &self,
        envelope: &Envelope,
        key: &str,
        loaded: Option<&Loaded>,
        prefetched: Option<Loaded>,
        probe: Option<&dyn Probe>,
    ) -> Result<Option<Option<Loaded>>, AttemptError> {
        let owed = |yes: bool, holder: Option<Loaded>| yes.then_some(holder);
        if let (Some(token), Some(holder)) = (&envelope.token, prefetched) {
            return Ok(owed(holder.record.tokens.contains(&token.id), Some(holder)));
        }
        match (&envelope.token, loaded) {
            // Our own record is the token's holder: the load already read it.
            (Some(token), Some(loaded)) if token.record == key => {
                Ok(owed(loaded.record.tokens.contains(&token.id), None))
            }
            (Some(token), _) => {
                crate::protocol::pause(probe, Step::CheckToken).await;
                let holder = read_record(self.store.as_ref(), &token.record)
                    .instrument(debug_span!("exactly.check_token", record = %token.record))
                    .await?;
                Ok(owed(holder.record.tokens.contains(&token.id), Some(holder)))
            }
            (None, Some(loaded)) if self.config.inbox_retention.is_some() => {
                Ok(owed(!loaded.record.inbox.contains_key(&envelope.id), None))
            }
            (None, None) => Ok(Some(None)),
            (None, Some(_)) => Err(AttemptError::Poison(
                "the message carries no DedupToken and this endpoint has no identity inbox \
                 (EndpointBuilder::inbox_retention) for tokenless producers"
                    .into(),
            )),
        }
    }

    /// The body to hand the handler: the envelope's, or its claim-checked
    /// blob, read and verified. `None` when the blob is gone and the token
    /// consumed: a duplicate of a message processed completely. A blob gone
    /// while the message is still owed is lost for real: error queue.
    pub(super) async fn incoming_body(
        &self,
        envelope: &Envelope,
        probe: Option<&dyn Probe>,
    ) -> Result<Option<(Bytes, Option<String>)>, AttemptError> {
        let Some(reference) = envelope.header(CLAIM_HEADER) else {
            return Ok(Some((envelope.body.clone(), None)));
        };
        let Some(blobs) = &self.blobs else {
            return Err(AttemptError::Poison(
                "the message is claim-checked but this endpoint has no blob store \
                 (EndpointBuilder::blobs)"
                    .into(),
            ));
        };
        match fetch_claim(blobs.as_ref(), reference).await {
            Ok((blob, body)) => Ok(Some((body, Some(blob.key)))),
            Err(BlobError::NotFound { key: blob }) => {
                if self.owed(envelope, "", None, None, probe).await?.is_some() {
                    Err(AttemptError::Poison(format!(
                        "claim-checked body {blob:?} is missing"
                    )))
                } else {
                    Ok(None)
                }
            }
            Err(e) if e.is_transient() => Err(AttemptError::Retry(e.to_string())),
            Err(e) => Err(AttemptError::Poison(format!(
                "claim-checked body unusable: {e}"
            ))),
        }
    }
}
