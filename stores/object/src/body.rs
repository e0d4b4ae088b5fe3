//! What an object holds, and how a [`Version`] names an object version.
//!
//! A live value is `V` + a 16-byte write id (a UUID v7) + the value bytes;
//! a deleted key is a *tombstone*: just a 16-byte write id. The write id
//! makes every write's content unique, so stores whose ETag is a hash of
//! the content (S3: the MD5) still give every write a new ETag — without
//! it, writing A, then B, then A again would bring back A's ETag, and a
//! writer holding that old version would win a compare-and-swap it must
//! lose (`versions_never_repeat`). A tombstone is told apart by its size
//! alone, so `list` skips tombstones without reading them.

use bytes::{BufMut, Bytes, BytesMut};
use exactly::Version;
use object_store::{ObjectMeta, PutPayload, UpdateVersion};

/// Size of a tombstone; a live value is always larger.
pub(crate) const TOMBSTONE_BYTES: u64 = 16;
const LIVE_TAG: u8 = b'V';
/// Bytes an object holds beyond the value.
pub(crate) const OVERHEAD: usize = 17;

fn write_id() -> [u8; 16] {
    uuid::Uuid::now_v7().into_bytes()
}

/// The object for a live `value`.
pub(crate) fn live(value: &[u8]) -> PutPayload {
    let mut body = BytesMut::with_capacity(OVERHEAD + value.len());
    body.put_u8(LIVE_TAG);
    body.put_slice(&write_id());
    body.put_slice(value);
    PutPayload::from(body.freeze())
}

/// A fresh tombstone.
pub(crate) fn tombstone() -> PutPayload {
    PutPayload::from(Bytes::copy_from_slice(&write_id()))
}

/// What an object's bytes say.
pub(crate) enum Content {
    Live(Bytes),
    Tombstone,
}

/// Parses an object's bytes; `None` if it is not one of ours.
pub(crate) fn parse(body: Bytes) -> Option<Content> {
    if body.len() as u64 == TOMBSTONE_BYTES {
        return Some(Content::Tombstone);
    }
    (body.len() >= OVERHEAD && body[0] == LIVE_TAG).then(|| Content::Live(body.slice(OVERHEAD..)))
}

/// Whether listed metadata is a tombstone's.
pub(crate) fn is_tombstone(meta: &ObjectMeta) -> bool {
    meta.size == TOMBSTONE_BYTES
}

/// The [`Version`] of an object: its ETag, then a space and the store's
/// object version when it reports one (GCS generations, S3 and Azure
/// version ids). ETags contain no spaces (RFC 9110 `etagc`).
pub(crate) fn version(e_tag: Option<String>, version: Option<String>) -> Version {
    let e_tag = e_tag.unwrap_or_default();
    Version::new(match version {
        Some(v) => format!("{e_tag} {v}"),
        None => e_tag,
    })
}

/// The precondition for replacing the object at `version`.
pub(crate) fn update_version(version: &Version) -> UpdateVersion {
    let (e_tag, v) = match version.as_str().split_once(' ') {
        Some((e, v)) => (e, Some(v.to_owned())),
        None => (version.as_str(), None),
    };
    UpdateVersion {
        e_tag: (!e_tag.is_empty()).then(|| e_tag.to_owned()),
        version: v,
    }
}
