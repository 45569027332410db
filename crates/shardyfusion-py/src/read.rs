//! The reader: the thread-safe Rust reader behind `ShardedReader`, `ConcurrentShardedReader`
//! (blocking calls with the GIL released) and `AsyncShardedReader` (futures completed by a
//! callback from the runtime).

use std::sync::Arc;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};
use shardyfusion::reader::{AsyncShardedReader, ConcurrentShardedReader};
use shardyfusion::{Key, KeyRef, Result};

use crate::config::{self, parse};
use crate::error::{IntoPy as _, to_py};
use crate::keys;
use crate::runtime::{fork_generation, runtime};

/// Values of a `multi_get`: a dict of key → bytes or None, in first-occurrence order.
fn values_to_py<'py>(
    py: Python<'py>,
    found: &[(Key, Option<bytes::Bytes>)],
) -> PyResult<Bound<'py, PyDict>> {
    let out = PyDict::new(py);
    for (k, v) in found {
        let value = v.as_deref().map(|b| PyBytes::new(py, b));
        out.set_item(keys::key_to_py(py, k)?, value)?;
    }
    Ok(out)
}

fn refs(keys: &[Key]) -> Vec<KeyRef<'_>> {
    keys.iter().map(Key::as_key_ref).collect()
}

/// A reader of the current snapshot of a manifest store.
#[pyclass(module = "shardyfusion_rs._native", frozen)]
pub(crate) struct Reader {
    inner: Arc<ConcurrentShardedReader>,
    /// The fork generation that opened it: its runtime's threads do not exist in a child.
    generation: u64,
}

impl Reader {
    /// The Rust reader, unless this is a forked child of the process that opened it (whose
    /// copy would wait forever for threads that were not forked).
    fn reader(&self) -> PyResult<&ConcurrentShardedReader> {
        if fork_generation() != self.generation {
            return Err(to_py(shardyfusion::Error::new(
                shardyfusion::ErrorKind::ReaderState,
                "this reader was opened before this process was forked and cannot be used after \
                 fork: open a new reader in the child (e.g. in a post-fork hook)",
            )));
        }
        Ok(&self.inner)
    }

    fn asynchronous(&self) -> PyResult<Arc<AsyncShardedReader>> {
        Ok(self.reader()?.as_async().clone())
    }
}

/// Complete a Python future through `callback(ok, value)` with the GIL held.
fn complete<T>(
    callback: Py<PyAny>,
    result: Result<T>,
    to_py_value: impl FnOnce(Python<'_>, T) -> PyResult<Py<PyAny>>,
) {
    Python::attach(|py| {
        let outcome = result.map_err(to_py).and_then(|v| to_py_value(py, v));
        let args = match outcome {
            Ok(v) => (true, v),
            Err(e) => (false, e.into_value(py).into_any()),
        };
        if let Err(e) = callback.call1(py, args) {
            e.write_unraisable(py, None);
        }
    });
}

#[pymethods]
impl Reader {
    /// Open the current snapshot (or the pinned `manifest_ref`) described by `options` (JSON).
    #[new]
    fn open(py: Python<'_>, options: &str) -> PyResult<Self> {
        let setup = parse::<config::Reader>("reader options", options)
            .and_then(|o| o.to_rust())
            .py()?;
        let inner = py
            .detach(move || match setup.manifest_ref {
                Some(r) => ConcurrentShardedReader::open_pinned(
                    setup.store,
                    &r,
                    setup.options,
                    setup.concurrent,
                ),
                None => ConcurrentShardedReader::open(setup.store, setup.options, setup.concurrent),
            })
            .py()?;
        Ok(Reader {
            inner: Arc::new(inner),
            generation: fork_generation(),
        })
    }

    /// The value of `key`, or `None`.
    #[pyo3(signature = (key, routing_context=None))]
    fn get<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        routing_context: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let key = keys::key(key)?;
        let ctx = keys::routing_context(routing_context)?;
        let reader = self.reader()?;
        let value = py
            .detach(|| reader.get_with_context(key.as_key_ref(), ctx.as_ref()))
            .py()?;
        Ok(value.map(|v| PyBytes::new(py, &v)))
    }

    /// Values of several keys in one call (the GIL released throughout).
    #[pyo3(signature = (keys, routing_context=None))]
    fn multi_get<'py>(
        &self,
        py: Python<'py>,
        keys: &Bound<'py, PyAny>,
        routing_context: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let keys = keys::keys(keys)?;
        let ctx = keys::routing_context(routing_context)?;
        let reader = self.reader()?;
        let found = py
            .detach(|| reader.multi_get_with_context(&refs(&keys), ctx.as_ref()))
            .py()?;
        values_to_py(py, &found)
    }

    /// Swap to the newest snapshot; `True` when it changed.
    fn refresh(&self, py: Python<'_>) -> PyResult<bool> {
        let reader = self.reader()?;
        py.detach(|| reader.refresh()).py()
    }

    /// The shard `key` routes to.
    #[pyo3(signature = (key, routing_context=None))]
    fn route_key<'py>(
        &self,
        key: &Bound<'py, PyAny>,
        routing_context: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<u32> {
        let key = keys::key(key)?;
        let ctx = keys::routing_context(routing_context)?;
        self.reader()?
            .route_key(key.as_key_ref(), ctx.as_ref())
            .py()
    }

    /// The loaded snapshot as a dict.
    fn snapshot_info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.reader()?.snapshot_info().py()?;
        let d = PyDict::new(py);
        d.set_item("run_id", s.run_id)?;
        d.set_item("num_dbs", s.num_dbs)?;
        d.set_item("sharding", s.sharding.as_str())?;
        d.set_item("created_at", s.created_at.to_iso())?;
        d.set_item("manifest_ref", s.manifest_ref)?;
        d.set_item("row_count", s.row_count)?;
        d.set_item("key_encoding", s.key_encoding.as_str())?;
        d.set_item("hash_algorithm", s.hash_algorithm)?;
        Ok(d)
    }

    /// Every shard of the loaded snapshot, as dicts.
    fn shard_details<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let out = PyList::empty(py);
        for s in self.reader()?.shard_details().py()? {
            let d = PyDict::new(py);
            d.set_item("db_id", s.db_id)?;
            d.set_item("row_count", s.row_count)?;
            let key = |k: &Option<Key>| k.as_ref().map(|k| keys::key_to_py(py, k)).transpose();
            d.set_item("min_key", key(&s.min_key)?)?;
            d.set_item("max_key", key(&s.max_key)?)?;
            d.set_item("db_url", s.db_url)?;
            out.append(d)?;
        }
        Ok(out)
    }

    /// Health as a dict; `degraded` when the manifest is older than the threshold (seconds).
    #[pyo3(signature = (staleness_threshold=None))]
    fn health<'py>(
        &self,
        py: Python<'py>,
        staleness_threshold: Option<f64>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let threshold = staleness_threshold
            .map(|s| {
                Duration::try_from_secs_f64(s).map_err(|_| {
                    to_py(shardyfusion::Error::config(format!(
                        "staleness_threshold must be a non-negative number of seconds, got {s}"
                    )))
                })
            })
            .transpose()?;
        let h = self.reader()?.health(threshold);
        let d = PyDict::new(py);
        d.set_item("status", h.status.as_str())?;
        d.set_item("manifest_ref", h.manifest_ref)?;
        d.set_item("manifest_age", h.manifest_age.as_secs_f64())?;
        d.set_item("num_shards", h.num_shards)?;
        d.set_item("is_closed", h.is_closed)?;
        Ok(d)
    }

    /// The snapshot's key encoding (`u64be`, `u32be`, `utf8`, `raw`).
    fn key_encoding(&self) -> PyResult<&'static str> {
        Ok(self.reader()?.key_encoding().py()?.as_str())
    }

    /// Close the reader (later calls raise `ReaderStateError`); idempotent. In a forked
    /// child it does nothing: the reader belongs to the parent.
    fn close(&self, py: Python<'_>) {
        if let Ok(reader) = self.reader() {
            py.detach(|| reader.close());
        }
    }

    /// `get` on the runtime; `callback(ok, value_or_exception)` is called when it completes.
    #[pyo3(signature = (callback, key, routing_context=None))]
    fn get_async<'py>(
        &self,
        callback: Py<PyAny>,
        key: &Bound<'py, PyAny>,
        routing_context: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<()> {
        let key = keys::key(key)?;
        let ctx = keys::routing_context(routing_context)?;
        let reader = self.asynchronous()?;
        runtime().py()?.spawn(async move {
            let r = reader
                .get_with_context(key.as_key_ref(), ctx.as_ref())
                .await;
            complete(callback, r, |py, v| {
                Ok(v.map(|b| PyBytes::new(py, &b).into_any().unbind())
                    .unwrap_or_else(|| py.None()))
            });
        });
        Ok(())
    }

    /// `multi_get` on the runtime, completed through `callback`.
    #[pyo3(signature = (callback, keys, routing_context=None))]
    fn multi_get_async<'py>(
        &self,
        callback: Py<PyAny>,
        keys: &Bound<'py, PyAny>,
        routing_context: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<()> {
        let keys = keys::keys(keys)?;
        let ctx = keys::routing_context(routing_context)?;
        let reader = self.asynchronous()?;
        runtime().py()?.spawn(async move {
            let r = reader
                .multi_get_with_context(&refs(&keys), ctx.as_ref())
                .await;
            complete(callback, r, |py, found| {
                Ok(values_to_py(py, &found)?.into_any().unbind())
            });
        });
        Ok(())
    }

    /// `refresh` on the runtime, completed through `callback`.
    fn refresh_async(&self, callback: Py<PyAny>) -> PyResult<()> {
        let reader = self.asynchronous()?;
        runtime().py()?.spawn(async move {
            let r = reader.refresh().await;
            complete(callback, r, |py, changed| {
                Ok(pyo3::types::PyBool::new(py, changed)
                    .to_owned()
                    .into_any()
                    .unbind())
            });
        });
        Ok(())
    }
}
