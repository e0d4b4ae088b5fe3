//! Running one check: a temp dir, a runtime, a fresh backend, a unique
//! namespace. Called by the code [`store_conformance!`](crate::store_conformance)
//! and [`transport_conformance!`](crate::transport_conformance) expand to.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use exactly::{Store, Transport};

use crate::colocated::Shared;

/// A name no other check, run or process uses: `{check}-{time}-{pid}`.
/// Checks may therefore share one server and leave data behind.
pub fn unique_name(check: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{check}-{nanos:x}-{:x}", std::process::id())
}

/// Runs a store check on a backend from `factory`, which gets a fresh
/// empty directory (for file-based backends; deleted afterwards).
#[doc(hidden)]
pub fn run_store<F, Fut, S, C, CFut>(name: &str, factory: F, check: C)
where
    F: FnOnce(PathBuf) -> Fut,
    Fut: Future<Output = S>,
    S: Store,
    C: FnOnce(Arc<dyn Store>, String) -> CFut,
    CFut: Future<Output = ()>,
{
    let namespace = format!("conformance/{}/", unique_name(name));
    run(factory, |s| Arc::new(s) as Arc<dyn Store>, check, namespace);
}

/// Runs a transport check on a backend from `factory`, which gets a fresh
/// empty directory (for file-based backends; deleted afterwards).
#[doc(hidden)]
pub fn run_transport<F, Fut, T, C, CFut>(name: &str, factory: F, check: C)
where
    F: FnOnce(PathBuf) -> Fut,
    Fut: Future<Output = T>,
    T: Transport,
    C: FnOnce(Arc<dyn Transport>, String) -> CFut,
    CFut: Future<Output = ()>,
{
    let namespace = queue_namespace(name);
    run(
        factory,
        |t| Arc::new(t) as Arc<dyn Transport>,
        check,
        namespace,
    );
}

/// A prefix for the queues (and keys) of check `name`: valid as a queue
/// name on every transport.
fn queue_namespace(name: &str) -> String {
    format!("c_{}_", unique_name(name))
}

/// Runs a colocated check on a backend from `factory`, which gets a fresh
/// empty directory (for file-based backends; deleted afterwards).
#[doc(hidden)]
pub fn run_colocated<F, Fut, T, C, CFut>(name: &str, factory: F, check: C)
where
    F: FnOnce(PathBuf) -> Fut,
    Fut: Future<Output = T>,
    T: Shared,
    C: FnOnce(Arc<dyn Shared>, String) -> CFut,
    CFut: Future<Output = ()>,
{
    let namespace = queue_namespace(name);
    run(
        factory,
        |t| Arc::new(t) as Arc<dyn Shared>,
        check,
        namespace,
    );
}

fn run<B, D: ?Sized, F, Fut, C, CFut>(
    factory: F,
    share: fn(B) -> Arc<D>,
    check: C,
    namespace: String,
) where
    F: FnOnce(PathBuf) -> Fut,
    Fut: Future<Output = B>,
    C: FnOnce(Arc<D>, String) -> CFut,
    CFut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().expect("a temp dir for the backend");
    let path = dir.path().to_owned();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime for the check")
        .block_on(async move { check(share(factory(path).await), namespace).await });
}

/// The size limit a `too_large_is_typed` check exercises, or `None` (with
/// a note) when there is none or it is too large to write in a test.
pub(crate) fn testable_limit(limit: Option<usize>, what: &str) -> Option<usize> {
    const MAX_TESTED: usize = 64 * 1024 * 1024;
    match limit {
        None => eprintln!("too_large_is_typed: skipped, the {what} reports no size limit"),
        Some(l) if l > MAX_TESTED => {
            eprintln!("too_large_is_typed: skipped, the limit of {l} bytes is too large to test");
        }
        Some(l) => return Some(l),
    }
    None
}
