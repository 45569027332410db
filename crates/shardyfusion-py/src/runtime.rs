//! The module's tokio runtime: created on first use, re-created in a forked child (whose copy
//! has no threads), and entered with the GIL released. Forks are counted by a hook the Python
//! package registers with `os.register_at_fork`, so the per-call check is one atomic load.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use pyo3::prelude::*;
use shardyfusion::{Error, ErrorKind, Result};
use tokio::runtime::Runtime;

/// Forks of this process so far (incremented in each child).
static FORKS: AtomicU64 = AtomicU64::new(0);

/// The runtime and the fork generation that built it.
static RUNTIME: Mutex<Option<(u64, Arc<Runtime>)>> = Mutex::new(None);

/// Called in a freshly forked child (`os.register_at_fork(after_in_child=...)`).
#[pyfunction]
pub(crate) fn _after_fork_in_child() {
    FORKS.fetch_add(1, Ordering::Relaxed);
}

/// How many forks separate this process from the first one: state made under another
/// generation belongs to a parent whose threads this process does not have.
pub(crate) fn fork_generation() -> u64 {
    FORKS.load(Ordering::Relaxed)
}

/// This process's runtime. After `fork` the parent's runtime is forgotten, never dropped:
/// its worker threads do not exist in the child, so shutting it down would wait forever.
pub(crate) fn runtime() -> Result<Arc<Runtime>> {
    let generation = fork_generation();
    let mut slot = RUNTIME.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((owner, rt)) = slot.as_ref()
        && *owner == generation
    {
        return Ok(rt.clone());
    }
    if let Some((_, stale)) = slot.take() {
        std::mem::forget(stale);
    }
    let rt = Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .thread_name("shardyfusion-py")
            .enable_all()
            .build()
            .map_err(|e| {
                Error::new(
                    ErrorKind::ReaderState,
                    format!("cannot start the tokio runtime: {e}"),
                )
            })?,
    );
    *slot = Some((generation, rt.clone()));
    Ok(rt)
}

/// Run `fut` to completion on the runtime with the GIL released.
pub(crate) fn block_on<T, F>(py: Python<'_>, fut: F) -> Result<T>
where
    F: Future<Output = Result<T>> + Send,
    T: Send,
{
    let rt = runtime()?;
    py.detach(move || rt.block_on(fut))
}
