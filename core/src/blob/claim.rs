//! The claim check: a captured message body over the threshold is written
//! as a blob of the attempt (so it follows the attempt rule: registered
//! before written, published by the commit, cleaned up if the attempt
//! loses) and the message carries its reference. The receiver reads it back,
//! checksum-verified, only after its dedup check.

use bytes::Bytes;

use super::session::BlobSession;
use super::{BlobError, BlobRef, BlobStore, collect, read};
use crate::error::HandlerError;
use crate::transport::Outgoing;

/// Header carrying the JSON [`BlobRef`] of a claim-checked body.
pub(crate) const CLAIM_HEADER: &str = "exactly-claim-check";

/// Moves every body over `threshold` into a blob of this attempt.
pub(crate) async fn offload_large(
    session: &mut BlobSession,
    messages: &mut [Outgoing],
    threshold: usize,
) -> Result<(), HandlerError> {
    for out in messages
        .iter_mut()
        .filter(|o| o.envelope.body.len() > threshold)
    {
        let name = format!("claim-{}", out.envelope.id);
        let body = std::mem::take(&mut out.envelope.body);
        let content_type = out.envelope.content_type.clone();
        let blob = session.write_bytes(&name, &content_type, body).await?;
        metrics::counter!("exactly_claim_check_bytes_total").increment(blob.size);
        let reference = serde_json::to_string(&blob).map_err(HandlerError::failed)?;
        out.envelope.headers.insert(CLAIM_HEADER.into(), reference);
    }
    Ok(())
}

/// The blob a claim-check header (`CLAIM_HEADER`) refers to.
pub(crate) fn parse_claim(reference: &str) -> Result<BlobRef, serde_json::Error> {
    serde_json::from_str(reference)
}

/// The body of a claim-checked message, read and verified.
pub(crate) async fn fetch_claim(
    blobs: &dyn BlobStore,
    reference: &str,
) -> Result<(BlobRef, Bytes), BlobError> {
    let blob = parse_claim(reference).map_err(|e| BlobError::Generic {
        source: format!("malformed claim-check reference: {e}").into(),
    })?;
    let body = collect(read(blobs, &blob).await?).await?;
    Ok((blob, body))
}
