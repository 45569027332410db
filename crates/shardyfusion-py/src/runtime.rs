//! The module's tokio runtime: created on first use, re-created in a forked child (whose copy
//! has no threads), and entered with the GIL released.

use std::future::Future;
use std::sync::{Arc, Mutex};

use pyo3::prelude::*;
use shardyfusion::{Error, ErrorKind, Result};
use tokio::runtime::Runtime;

/// The runtime and the process that built it.
static RUNTIME: Mutex<Option<(u32, Arc<Runtime>)>> = Mutex::new(None);

/// This process's runtime. After `fork` the parent's runtime is forgotten, never dropped:
/// its worker threads do not exist in the child, so shutting it down would wait forever.
pub(crate) fn runtime() -> Result<Arc<Runtime>> {
    let pid = std::process::id();
    let mut slot = RUNTIME.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((owner, rt)) = slot.as_ref()
        && *owner == pid
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
    *slot = Some((pid, rt.clone()));
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

/// Run `f` with the GIL released (blocking work that drives its own runtime).
pub(crate) fn detached<T: Send>(py: Python<'_>, f: impl FnOnce() -> T + Send) -> T {
    py.detach(f)
}
