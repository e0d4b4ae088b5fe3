//! Local files with compare-and-swap: object_store's `LocalFileSystem`
//! creates atomically but has no `PutMode::Update`, so [`LocalFiles`]
//! adds it with a lock. Object names map to file names as
//! the `local_names` module says, so that `a/b` and `a/b/c` can
//! both exist and a long name segment fits the file system.
//!
//! Every put takes the directory's lock — an in-process mutex, then an
//! exclusive `flock` on `{dir}/.exactly-cas.lock`, so several processes on
//! one host may share the directory — and, for an update, compares the
//! current ETag with the expected one before writing.
//!
//! `LocalFileSystem` names a file's version by inode, modification time
//! (µs) and size, and every put writes a new file and renames it into
//! place. A freed inode is reused, and within one clock tick a later file
//! could then repeat an older ETag: a writer holding that stale ETag would
//! overwrite a newer value. So each put, still under the lock, moves the
//! new file's modification time past both its own and the replaced
//! file's: a path's ETags only grow, and a stale one never matches again.
//! A reader that saw the file between the rename and that step holds an
//! ETag no file will have again; its update is refused and it reads anew.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;

use crate::local_names as names;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

/// The lock file, beside the objects (no object name starts with a dot).
const LOCK_FILE: &str = ".exactly-cas.lock";

/// One microsecond: the ETag's time resolution.
const TICK: Duration = Duration::from_micros(1);

/// `LocalFileSystem` under `dir`, with conditional updates.
#[derive(Debug)]
pub struct LocalFiles {
    files: LocalFileSystem,
    lock: PathBuf,
    turn: tokio::sync::Mutex<()>,
}

impl LocalFiles {
    /// Files under `dir`, created if missing. A put returns once its file
    /// and directory entry are synced to disk.
    pub fn new(dir: impl AsRef<std::path::Path>) -> Result<Self> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| generic(e, dir))?;
        Ok(Self {
            files: LocalFileSystem::new_with_prefix(dir)?.with_fsync(true),
            lock: dir.join(LOCK_FILE),
            turn: tokio::sync::Mutex::new(()),
        })
    }

    /// The file of `location`'s modification time, if it exists.
    fn modified(&self, location: &Path) -> Result<Option<SystemTime>> {
        let path = self.files.path_to_filesystem(location)?;
        match std::fs::metadata(&path) {
            Ok(meta) => Ok(Some(meta.modified().map_err(|e| generic(e, &path))?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(generic(e, &path)),
        }
    }

    /// Sets the modification time of `location`'s file past `floor`.
    fn advance(&self, location: &Path, floor: Option<SystemTime>) -> Result<()> {
        let path = self.files.path_to_filesystem(location)?;
        let file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| generic(e, &path))?;
        let own = file
            .metadata()
            .and_then(|m| m.modified())
            .map_err(|e| generic(e, &path))?;
        let at = [
            Some(SystemTime::now()),
            Some(own + TICK),
            floor.map(|f| f + TICK),
        ]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(own + TICK);
        file.set_modified(at).map_err(|e| generic(e, &path))
    }

    /// The put itself, under the lock.
    async fn put_locked(
        &self,
        object: &Path,
        payload: PutPayload,
        mut opts: PutOptions,
    ) -> Result<PutResult> {
        let location = &names::file(object);
        let replaced = self.modified(location)?;
        if let PutMode::Update(expected) = &opts.mode {
            let current = match self.files.head(location).await {
                Ok(meta) => meta.e_tag,
                Err(object_store::Error::NotFound { source, .. }) => {
                    let path = object.to_string();
                    return Err(object_store::Error::Precondition { path, source });
                }
                Err(e) => return Err(e),
            };
            if expected.e_tag.is_none() || current != expected.e_tag {
                return Err(object_store::Error::Precondition {
                    path: object.to_string(),
                    source: format!(
                        "the object is at ETag {current:?}, not at {:?}",
                        expected.e_tag
                    )
                    .into(),
                });
            }
            opts.mode = PutMode::Overwrite;
        }
        let mut result = self
            .files
            .put_opts(location, payload, opts)
            .await
            .map_err(|e| renamed(e, object))?;
        self.advance(location, replaced)?;
        result.e_tag = self.files.head(location).await?.e_tag;
        Ok(result)
    }
}

/// Takes the directory's `flock`, waiting on a blocking thread.
async fn flock(path: PathBuf) -> Result<File> {
    tokio::task::spawn_blocking(move || {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| generic(e, &path))?;
        file.lock().map_err(|e| generic(e, &path))?;
        Ok(file)
    })
    .await
    .map_err(|e| object_store::Error::Generic {
        store: "LocalFiles",
        source: Box::new(e),
    })?
}

fn generic(e: std::io::Error, path: &std::path::Path) -> object_store::Error {
    object_store::Error::Generic {
        store: "LocalFiles",
        source: format!("{}: {e}", path.display()).into(),
    }
}

impl fmt::Display for LocalFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LocalFiles({})", self.files)
    }
}

/// `error` about a file, told about `object` instead.
fn renamed(error: object_store::Error, object: &Path) -> object_store::Error {
    use object_store::Error as E;
    let path = object.to_string();
    match error {
        E::NotFound { source, .. } => E::NotFound { path, source },
        E::AlreadyExists { source, .. } => E::AlreadyExists { path, source },
        E::Precondition { source, .. } => E::Precondition { path, source },
        E::NotModified { source, .. } => E::NotModified { path, source },
        e => e,
    }
}

/// `meta` of a file, told about its object; `None` for files that are not
/// objects (the lock file).
fn object_meta(mut meta: ObjectMeta) -> Option<ObjectMeta> {
    meta.location = names::object(&meta.location)?;
    Some(meta)
}

#[async_trait]
impl ObjectStore for LocalFiles {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let _turn = self.turn.lock().await;
        let _lock = flock(self.lock.clone()).await?;
        self.put_locked(location, payload, opts).await
    }

    /// Not under the lock, and no update mode: the store does not use it.
    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.files
            .put_multipart_opts(&names::file(location), opts)
            .await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let mut result = self
            .files
            .get_opts(&names::file(location), options)
            .await
            .map_err(|e| renamed(e, location))?;
        result.meta.location = location.clone();
        Ok(result)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let files = locations.map_ok(|object| names::file(&object)).boxed();
        self.files
            .delete_stream(files)
            .map_ok(|file| names::object(&file).unwrap_or(file))
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let dir = prefix.map(names::dir);
        self.files
            .list(dir.as_ref())
            .try_filter_map(|meta| futures::future::ready(Ok(object_meta(meta))))
            .boxed()
    }

    /// By a full [`list`](Self::list) of `prefix`: the store does not use it.
    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let depth = prefix.map_or(0, |p| p.parts().count());
        let mut objects = Vec::new();
        let mut common_prefixes = std::collections::BTreeSet::new();
        let mut all = self.list(prefix);
        while let Some(meta) = all.try_next().await? {
            let parts: Vec<_> = meta.location.parts().collect();
            if parts.len() == depth + 1 {
                objects.push(meta);
            } else {
                common_prefixes.insert(Path::from_iter(parts.into_iter().take(depth + 1)));
            }
        }
        Ok(ListResult {
            common_prefixes: common_prefixes.into_iter().collect(),
            objects,
            extensions: Default::default(),
        })
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.files
            .copy_opts(&names::file(from), &names::file(to), options)
            .await
            .map_err(|e| renamed(e, from))
    }
}
