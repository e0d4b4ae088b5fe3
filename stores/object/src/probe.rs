//! The start-up probe: refuse a backend that does not honour conditional
//! writes, before it can silently lose an update.

use exactly::StoreError;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutPayload, UpdateVersion};

use crate::error::is_transient;

/// Writes one object `{root}/probe/{uuid}` and checks, in order: a second
/// create-if-absent fails; an update at a wrong ETag fails; an update at
/// the right one succeeds. Then deletes it. A backend failing a check —
/// or answering "not implemented" — is refused with
/// [`StoreError::NotSupported`] naming it; a backend that cannot be
/// reached gives [`StoreError::Unavailable`].
pub(crate) async fn probe(store: &dyn ObjectStore, root: &Path) -> Result<(), StoreError> {
    let backend = store.to_string();
    let refuse = |what: String| {
        StoreError::NotSupported(format!(
            "{backend} does not honour conditional writes ({what}); exactly needs atomic \
             create-if-absent and compare-and-swap on ETags (see docs/stores.md)"
        ))
    };
    let fail = |e: object_store::Error| match e {
        object_store::Error::NotImplemented { .. } | object_store::Error::NotSupported { .. } => {
            refuse(e.to_string())
        }
        e if is_transient(&e) => StoreError::unavailable(e),
        e => StoreError::generic(e),
    };
    let path = crate::key::join(root, &format!("probe/{}", uuid::Uuid::now_v7().simple()));
    let payload = || PutPayload::from_static(b"exactly conditional-write probe");

    let first = store
        .put_opts(&path, payload(), PutMode::Create.into())
        .await
        .map_err(fail)?;
    match store
        .put_opts(&path, payload(), PutMode::Create.into())
        .await
    {
        Ok(_) => {
            return Err(refuse(
                "a second create-if-absent of one object succeeded".into(),
            ));
        }
        Err(
            object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. },
        ) => {}
        Err(e) => return Err(fail(e)),
    }
    let wrong = UpdateVersion {
        e_tag: Some("\"exactly-probe-not-the-etag\"".into()),
        version: first.version.as_ref().map(|_| "1".to_owned()),
    };
    match store
        .put_opts(&path, payload(), PutMode::Update(wrong).into())
        .await
    {
        Ok(_) => return Err(refuse("an update at a wrong ETag succeeded".into())),
        Err(object_store::Error::Precondition { .. } | object_store::Error::NotFound { .. }) => {}
        Err(e) => return Err(fail(e)),
    }
    let right = UpdateVersion::from(first);
    match store
        .put_opts(&path, payload(), PutMode::Update(right).into())
        .await
    {
        Ok(_) => {}
        Err(object_store::Error::Precondition { .. }) => {
            return Err(refuse("an update at the current ETag was refused".into()));
        }
        Err(e) => return Err(fail(e)),
    }
    store.delete(&path).await.map_err(fail)
}
