//! # shardyfusion-reader
//!
//! Blocking readers for services that are not async: [`ConcurrentShardedReader`] (`Send + Sync`,
//! share it across threads) and [`ShardedReader`] (the same engine for one thread). Both own a
//! private tokio runtime and drive [`AsyncShardedReader`] with `block_on`, the way `postgres`
//! wraps `tokio-postgres`.
//!
//! Admission control: at most `max_in_flight` reads run at once; a read that waits longer than
//! `checkout_timeout` fails with `PoolExhausted` (retryable).
//!
//! Calling from inside an async context is allowed but wasteful: the call is moved to a helper
//! thread so it never panics or deadlocks the caller's runtime. Async code should use
//! [`AsyncShardedReader`] directly.
//!
//! Layering: core and reader-async only.
//!
//! ```
//! use std::sync::Arc;
//! use shardyfusion_core::{Key, KeyRef, ManifestStore, WriteConfig, WriteOptions};
//! use shardyfusion_reader::{ConcurrentOptions, ConcurrentShardedReader};
//! use shardyfusion_reader_async::ReaderOptions;
//! use shardyfusion_storage::StorageResolver;
//! use shardyfusion_store_s3::ObjectStoreManifestStore;
//!
//! let prefix = "memory://sync-doc/snap";
//! let store: Arc<dyn ManifestStore> = Arc::new(ObjectStoreManifestStore::new(prefix, StorageResolver::default())?);
//! # let rt = tokio::runtime::Runtime::new().unwrap();
//! # rt.block_on(async {
//! #     let config = WriteConfig::builder(prefix).num_dbs(2).manifest_store(store.clone()).build()?;
//! #     let keys: Vec<i64> = (0..10).collect();
//! #     shardyfusion_writer::ShardedWriter::new(config)?.write(&keys, |k| Key::Int(**k), |k| format!("v{k}").into_bytes(), &WriteOptions::default()).await?;
//! #     Ok::<(), shardyfusion_core::Error>(())
//! # })?;
//! # drop(rt);
//! let reader = ConcurrentShardedReader::open(store, ReaderOptions::default(), ConcurrentOptions::default())?;
//! assert_eq!(reader.get(KeyRef::Int(3))?.as_deref(), Some(&b"v3"[..]));
//! reader.close();
//! # Ok::<(), shardyfusion_core::Error>(())
//! ```

#![deny(missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use shardyfusion_core::{
    Error, ErrorKind, Key, KeyEncoding, KeyRef, ManifestStore, RequiredShardMeta, Result,
};
pub use shardyfusion_reader_async::{
    AsyncShardedReader, HealthStatus, ReaderHealth, ReaderOptions, RoutingContext, ShardDetail,
    SnapshotInfo,
};

/// How shard handles are shared between threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ThreadSafety {
    /// One handle per shard shared by all threads (SlateDB readers are safe for concurrent use).
    #[default]
    Lock,
    /// Bounded checkouts: at most `max_in_flight` concurrent reads, waiting up to the checkout
    /// timeout.
    Pool,
}

impl std::str::FromStr for ThreadSafety {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "lock" => Ok(ThreadSafety::Lock),
            "pool" => Ok(ThreadSafety::Pool),
            other => Err(Error::config(format!(
                "thread_safety must be \"lock\" or \"pool\", got {other:?}"
            ))),
        }
    }
}

/// Options of the blocking readers.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ConcurrentOptions {
    /// Sharing mode (default `lock`).
    pub thread_safety: ThreadSafety,
    /// Concurrent reads admitted (default 4 × workers; `pool` mode and admission control).
    pub max_in_flight: Option<usize>,
    /// How long a read may wait for admission (default 30 s).
    pub checkout_timeout: Duration,
    /// Runtime worker threads (default 2).
    pub worker_threads: usize,
}

impl Default for ConcurrentOptions {
    fn default() -> Self {
        ConcurrentOptions {
            thread_safety: ThreadSafety::Lock,
            max_in_flight: None,
            checkout_timeout: Duration::from_secs(30),
            worker_threads: 2,
        }
    }
}

impl ConcurrentOptions {
    /// Admit at most `n` concurrent reads.
    #[must_use]
    pub fn with_max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = Some(n);
        self
    }
    /// Fail reads that wait longer than `d` with `PoolExhausted`.
    #[must_use]
    pub fn with_checkout_timeout(mut self, d: Duration) -> Self {
        self.checkout_timeout = d;
        self
    }
    /// Set the sharing mode.
    #[must_use]
    pub fn with_thread_safety(mut self, t: ThreadSafety) -> Self {
        self.thread_safety = t;
        self
    }

    fn validate(&self) -> Result<()> {
        if self.max_in_flight == Some(0) {
            return Err(Error::config("max_in_flight must be >= 1, got 0"));
        }
        if self.checkout_timeout.is_zero() {
            return Err(Error::config("pool_checkout_timeout must be > 0, got 0"));
        }
        if self.worker_threads == 0 {
            return Err(Error::config("worker_threads must be >= 1, got 0"));
        }
        Ok(())
    }
}

/// Owns the runtime; shuts it down without blocking when dropped inside an async context.
struct Runtime(Option<tokio::runtime::Runtime>);

impl Runtime {
    fn block_on<F>(&self, fut: F) -> F::Output
    where
        F: std::future::Future + Send,
        F::Output: Send,
    {
        let rt = self
            .0
            .as_ref()
            .expect("runtime lives as long as the reader");
        if tokio::runtime::Handle::try_current().is_ok() {
            // Never block an async worker of the caller's runtime: drive it from a helper thread.
            std::thread::scope(|s| {
                s.spawn(|| rt.block_on(fut))
                    .join()
                    .expect("reader helper thread")
            })
        } else {
            rt.block_on(fut)
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// A thread-safe blocking reader over [`AsyncShardedReader`].
pub struct ConcurrentShardedReader {
    inner: Arc<AsyncShardedReader>,
    admission: Option<(Arc<tokio::sync::Semaphore>, Duration)>,
    rt: Runtime,
}

impl std::fmt::Debug for ConcurrentShardedReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConcurrentShardedReader")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl ConcurrentShardedReader {
    /// Open the current snapshot of `store`.
    pub fn open(
        store: Arc<dyn ManifestStore>,
        options: ReaderOptions,
        concurrent: ConcurrentOptions,
    ) -> Result<Self> {
        Self::build(concurrent, move |rt| {
            rt.block_on(AsyncShardedReader::open(store, options))
        })
    }

    /// Open one specific manifest (the pointer is never read or moved).
    pub fn open_pinned(
        store: Arc<dyn ManifestStore>,
        manifest_ref: &str,
        options: ReaderOptions,
        concurrent: ConcurrentOptions,
    ) -> Result<Self> {
        let r = manifest_ref.to_owned();
        Self::build(concurrent, move |rt| {
            rt.block_on(async move { AsyncShardedReader::open_pinned(store, &r, options).await })
        })
    }

    fn build(
        concurrent: ConcurrentOptions,
        open: impl FnOnce(&Runtime) -> Result<AsyncShardedReader>,
    ) -> Result<Self> {
        concurrent.validate()?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(concurrent.worker_threads)
            .thread_name("shardyfusion-reader")
            .enable_all()
            .build()
            .map_err(|e| {
                Error::new(
                    ErrorKind::ReaderState,
                    format!("cannot start the reader runtime: {e}"),
                )
            })?;
        let rt = Runtime(Some(rt));
        let inner = Arc::new(open(&rt)?);
        let admitted = match (concurrent.thread_safety, concurrent.max_in_flight) {
            (_, Some(n)) => Some(n),
            (ThreadSafety::Pool, None) => Some(4 * concurrent.worker_threads),
            (ThreadSafety::Lock, None) => None,
        };
        let admission = admitted.map(|n| {
            (
                Arc::new(tokio::sync::Semaphore::new(n)),
                concurrent.checkout_timeout,
            )
        });
        Ok(ConcurrentShardedReader {
            inner,
            admission,
            rt,
        })
    }

    /// Run one read under admission control.
    fn admitted<T: Send>(
        &self,
        fut: impl std::future::Future<Output = Result<T>> + Send,
    ) -> Result<T> {
        let admission = self.admission.clone();
        self.rt.block_on(async move {
            let _permit = match admission {
                None => None,
                Some((sem, timeout)) => match tokio::time::timeout(timeout, sem.acquire_owned()).await {
                    Ok(Ok(p)) => Some(p),
                    Ok(Err(_)) => return Err(Error::new(ErrorKind::ReaderState, "reader is closed")),
                    Err(_) => {
                        return Err(Error::new(
                            ErrorKind::PoolExhausted,
                            format!("no read slot became free within {timeout:?}; raise max_in_flight or the checkout timeout"),
                        ));
                    }
                },
            };
            fut.await
        })
    }

    /// The value of `key`, or `None`.
    pub fn get(&self, key: KeyRef<'_>) -> Result<Option<Bytes>> {
        self.admitted(self.inner.get(key))
    }

    /// The value of `key` routed with a routing context (multi-column CEL).
    pub fn get_with_context(
        &self,
        key: KeyRef<'_>,
        ctx: Option<&RoutingContext>,
    ) -> Result<Option<Bytes>> {
        self.admitted(self.inner.get_with_context(key, ctx))
    }

    /// Several keys at once (distinct keys, first-occurrence order).
    pub fn multi_get(&self, keys: &[KeyRef<'_>]) -> Result<Vec<(Key, Option<Bytes>)>> {
        self.admitted(self.inner.multi_get(keys))
    }

    /// `multi_get` with a routing context.
    pub fn multi_get_with_context(
        &self,
        keys: &[KeyRef<'_>],
        ctx: Option<&RoutingContext>,
    ) -> Result<Vec<(Key, Option<Bytes>)>> {
        self.admitted(self.inner.multi_get_with_context(keys, ctx))
    }

    /// Swap to the newest snapshot; `true` when it changed.
    pub fn refresh(&self) -> Result<bool> {
        self.rt.block_on(self.inner.refresh())
    }

    /// The shard of a key.
    pub fn route_key(&self, key: KeyRef<'_>, ctx: Option<&RoutingContext>) -> Result<u32> {
        self.inner.route_key(key, ctx)
    }

    /// The manifest row of a key's shard.
    pub fn shard_for_key(
        &self,
        key: KeyRef<'_>,
        ctx: Option<&RoutingContext>,
    ) -> Result<RequiredShardMeta> {
        self.inner.shard_for_key(key, ctx)
    }

    /// Facts about the current snapshot.
    pub fn snapshot_info(&self) -> Result<SnapshotInfo> {
        self.inner.snapshot_info()
    }

    /// Every shard of the current snapshot.
    pub fn shard_details(&self) -> Result<Vec<ShardDetail>> {
        self.inner.shard_details()
    }

    /// The snapshot's key encoding.
    pub fn key_encoding(&self) -> Result<KeyEncoding> {
        self.inner.key_encoding()
    }

    /// Health, `degraded` past the staleness threshold.
    pub fn health(&self, staleness_threshold: Option<Duration>) -> ReaderHealth {
        self.inner.health(staleness_threshold)
    }

    /// Close (idempotent); later calls are `ReaderState` errors.
    pub fn close(&self) {
        if let Some((sem, _)) = &self.admission {
            sem.close();
        }
        self.inner.close();
    }

    /// The async engine, for code that has an async context after all.
    pub fn as_async(&self) -> &Arc<AsyncShardedReader> {
        &self.inner
    }
}

/// A blocking reader for single-threaded use: the same engine as [`ConcurrentShardedReader`]
/// without admission control.
#[derive(Debug)]
pub struct ShardedReader(ConcurrentShardedReader);

impl ShardedReader {
    /// Open the current snapshot of `store`.
    pub fn open(store: Arc<dyn ManifestStore>, options: ReaderOptions) -> Result<Self> {
        ConcurrentShardedReader::open(store, options, ConcurrentOptions::default())
            .map(ShardedReader)
    }
}

impl std::ops::Deref for ShardedReader {
    type Target = ConcurrentShardedReader;
    fn deref(&self) -> &ConcurrentShardedReader {
        &self.0
    }
}
