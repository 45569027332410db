//! [`AsyncShardedReader`]: the read engine.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use shardyfusion_core::{
    Error, ErrorKind, Key, KeyEncoding, KeyRef, ManifestRef, ManifestStore, MetricEvent,
    MetricValue, MetricsCollector, RequiredShardMeta, Result, Timestamp,
};
use shardyfusion_storage::StorageResolver;

use crate::RoutingContext;
use crate::shard::{DEFAULT_CACHE_BYTES, ShardReaderFactory, SlateDbReaderFactory};
use crate::snapshot::{OpenLimits, ShardDetail, Snapshot, SnapshotInfo};

/// A hook that rate-limits reads: 1 token per `get`, `len(keys)` per `multi_get`.
#[async_trait]
pub trait ReadRateLimiter: Send + Sync {
    /// Wait until `n` tokens are granted.
    async fn acquire(&self, n: u64);
}

/// Health of a reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthStatus {
    /// Open and fresh enough.
    Healthy,
    /// Open, but the manifest is older than the threshold.
    Degraded,
    /// Closed or not opened.
    Unhealthy,
}

impl HealthStatus {
    /// `healthy`, `degraded` or `unhealthy`.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Healthy => "healthy",
            HealthStatus::Degraded => "degraded",
            HealthStatus::Unhealthy => "unhealthy",
        }
    }
}

/// The answer of [`AsyncShardedReader::health`].
#[derive(Debug, Clone, PartialEq)]
pub struct ReaderHealth {
    /// Status.
    pub status: HealthStatus,
    /// Current manifest ref (`""` when closed).
    pub manifest_ref: String,
    /// `now − created_at` of the loaded manifest (resets when a refresh loads a newer one).
    pub manifest_age: Duration,
    /// `num_dbs` of the current snapshot.
    pub num_shards: u32,
    /// Whether `close` was called.
    pub is_closed: bool,
}

/// Options of a reader. Build with [`ReaderOptions::default`] and the `with_*` methods.
#[derive(Clone)]
#[non_exhaustive]
pub struct ReaderOptions {
    /// Older manifests tried at open when the current one does not parse (default 3).
    pub max_fallback_attempts: usize,
    /// Bytes of the block cache shared by all shards (default 256 MiB).
    pub cache_bytes: u64,
    /// Bound on concurrent per-key reads.
    pub max_concurrency: Option<usize>,
    /// Metrics collector.
    pub metrics: Option<Arc<dyn MetricsCollector>>,
    /// Rate limiter.
    pub rate_limiter: Option<Arc<dyn ReadRateLimiter>>,
    /// How shard URLs reach storage.
    pub storage: StorageResolver,
    /// Custom shard reader factory (default: SlateDB).
    pub factory: Option<Arc<dyn ShardReaderFactory>>,
    /// Load every shard's SST indexes and filters into the cache when it opens (default
    /// `true`), so a cold lookup costs one object-store request.
    pub warm_metadata: bool,
    /// Largest `num_dbs` a manifest may declare (default [`DEFAULT_MAX_NUM_DBS`]); above it the
    /// manifest is `ManifestParse` (SPEC 15.4: a corrupt or hostile manifest cannot exhaust
    /// memory).
    pub max_num_dbs: u32,
    /// Shard opens in flight at once during open and refresh (default
    /// [`DEFAULT_SHARD_OPEN_CONCURRENCY`]).
    pub shard_open_concurrency: usize,
}

/// Default ceiling on a manifest's `num_dbs` (2^20 shards).
pub const DEFAULT_MAX_NUM_DBS: u32 = 1 << 20;
/// Default number of shard opens in flight at once.
pub const DEFAULT_SHARD_OPEN_CONCURRENCY: usize = 64;

impl Default for ReaderOptions {
    fn default() -> Self {
        ReaderOptions {
            max_fallback_attempts: 3,
            cache_bytes: DEFAULT_CACHE_BYTES,
            max_concurrency: None,
            metrics: None,
            rate_limiter: None,
            storage: StorageResolver::default(),
            factory: None,
            warm_metadata: true,
            max_num_dbs: DEFAULT_MAX_NUM_DBS,
            shard_open_concurrency: DEFAULT_SHARD_OPEN_CONCURRENCY,
        }
    }
}

impl std::fmt::Debug for ReaderOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReaderOptions")
            .field("max_fallback_attempts", &self.max_fallback_attempts)
            .field("cache_bytes", &self.cache_bytes)
            .field("max_concurrency", &self.max_concurrency)
            .field("warm_metadata", &self.warm_metadata)
            .field("max_num_dbs", &self.max_num_dbs)
            .field("shard_open_concurrency", &self.shard_open_concurrency)
            .finish_non_exhaustive()
    }
}

impl ReaderOptions {
    /// Set the storage resolver.
    #[must_use]
    pub fn with_storage(mut self, r: StorageResolver) -> Self {
        self.storage = r;
        self
    }
    /// Set the metrics collector.
    #[must_use]
    pub fn with_metrics(mut self, m: Arc<dyn MetricsCollector>) -> Self {
        self.metrics = Some(m);
        self
    }
    /// Set the rate limiter.
    #[must_use]
    pub fn with_rate_limiter(mut self, l: Arc<dyn ReadRateLimiter>) -> Self {
        self.rate_limiter = Some(l);
        self
    }
    /// Bound concurrent per-key reads (≥ 1).
    #[must_use]
    pub fn with_max_concurrency(mut self, n: usize) -> Self {
        self.max_concurrency = Some(n);
        self
    }
    /// Set the fallback depth.
    #[must_use]
    pub fn with_max_fallback_attempts(mut self, n: usize) -> Self {
        self.max_fallback_attempts = n;
        self
    }
    /// Set the block cache size.
    #[must_use]
    pub fn with_cache_bytes(mut self, n: u64) -> Self {
        self.cache_bytes = n;
        self
    }
    /// Whether opening a shard warms its SST indexes and filters (default `true`).
    #[must_use]
    pub fn with_warm_metadata(mut self, on: bool) -> Self {
        self.warm_metadata = on;
        self
    }
    /// Set the ceiling on a manifest's `num_dbs`.
    #[must_use]
    pub fn with_max_num_dbs(mut self, n: u32) -> Self {
        self.max_num_dbs = n;
        self
    }
    /// Set how many shard opens run at once (≥ 1).
    #[must_use]
    pub fn with_shard_open_concurrency(mut self, n: usize) -> Self {
        self.shard_open_concurrency = n.max(1);
        self
    }
    /// Use a custom shard reader factory.
    #[must_use]
    pub fn with_factory(mut self, f: Arc<dyn ShardReaderFactory>) -> Self {
        self.factory = Some(f);
        self
    }
}

/// Serves point lookups from the current snapshot of a manifest store, and swaps to newer
/// snapshots atomically on [`refresh`](Self::refresh).
pub struct AsyncShardedReader {
    store: Arc<dyn ManifestStore>,
    factory: Arc<dyn ShardReaderFactory>,
    metrics: Option<Arc<dyn MetricsCollector>>,
    limiter: Option<Arc<dyn ReadRateLimiter>>,
    concurrency: Option<Arc<tokio::sync::Semaphore>>,
    max_fallback_attempts: usize,
    limits: OpenLimits,
    state: RwLock<Option<Arc<Snapshot>>>,
    refresh_lock: tokio::sync::Mutex<()>,
    closed: AtomicBool,
    pinned: bool,
}

impl std::fmt::Debug for AsyncShardedReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncShardedReader")
            .field("store", &self.store)
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

/// A borrowed handle on one shard of the snapshot that was current when it was taken; it keeps
/// that snapshot alive until dropped (or [`close`](Self::close)d).
pub struct ShardHandle {
    snapshot: Arc<Snapshot>,
    db_id: u32,
}

impl std::fmt::Debug for ShardHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ShardHandle(db_id={}, {})",
            self.db_id, self.snapshot.manifest_ref.manifest_ref
        )
    }
}

impl ShardHandle {
    /// The shard id.
    pub fn db_id(&self) -> u32 {
        self.db_id
    }
    /// Look a key up in this shard (routing is not re-checked).
    pub async fn get(&self, key: KeyRef<'_>) -> Result<Option<Bytes>> {
        let enc = self.snapshot.key_encoding();
        let encoded = enc.encode(enc.normalize_lookup_key(key)?)?;
        self.snapshot.read(self.db_id, &encoded).await
    }
    /// Look several keys up in this shard (one batched shard read), in the order given.
    pub async fn multi_get(&self, keys: &[KeyRef<'_>]) -> Result<Vec<Option<Bytes>>> {
        let enc = self.snapshot.key_encoding();
        let encoded = keys
            .iter()
            .map(|k| enc.encode(enc.normalize_lookup_key(*k)?))
            .collect::<Result<Vec<_>>>()?;
        let refs: Vec<&[u8]> = encoded.iter().map(Vec::as_slice).collect();
        self.snapshot.read_many(self.db_id, &refs).await
    }
    /// Release the borrow (the shard stays open for others).
    pub fn close(self) {}
}

/// Keys of one shard that one `multi_get` task reads at most.
const MULTI_GET_CHUNK: usize = 32;

fn ms(since: Instant) -> i64 {
    i64::try_from(since.elapsed().as_millis()).unwrap_or(i64::MAX)
}

impl AsyncShardedReader {
    /// Open the current snapshot of `store` (with cold-start fallback to older manifests).
    pub async fn open(store: Arc<dyn ManifestStore>, options: ReaderOptions) -> Result<Self> {
        let reader = Self::new(store, options, false)?;
        let snapshot = reader.load_initial().await?;
        reader.install(snapshot);
        reader.emit(MetricEvent::ReaderInitialized, &[]);
        Ok(reader)
    }

    /// Open one specific manifest without looking at (or ever moving) the pointer; `refresh`
    /// keeps it pinned.
    pub async fn open_pinned(
        store: Arc<dyn ManifestStore>,
        manifest_ref: &str,
        options: ReaderOptions,
    ) -> Result<Self> {
        let reader = Self::new(store, options, true)?;
        let manifest = reader.store.load_manifest(manifest_ref).await?;
        let r = ManifestRef {
            manifest_ref: manifest_ref.to_owned(),
            run_id: manifest.build.run_id.clone(),
            published_at: manifest.build.created_at,
        };
        let snapshot = Snapshot::open(r, manifest, &reader.factory, reader.limits).await?;
        reader.install(snapshot);
        reader.emit(MetricEvent::ReaderInitialized, &[]);
        Ok(reader)
    }

    fn new(store: Arc<dyn ManifestStore>, options: ReaderOptions, pinned: bool) -> Result<Self> {
        if options.max_concurrency == Some(0) {
            return Err(Error::config("max_concurrency must be >= 1, got 0"));
        }
        let factory = options.factory.clone().unwrap_or_else(|| {
            Arc::new(
                SlateDbReaderFactory::new(options.storage.clone(), options.cache_bytes)
                    .with_warm_metadata(options.warm_metadata),
            )
        });
        Ok(AsyncShardedReader {
            store,
            factory,
            metrics: options.metrics.clone(),
            limiter: options.rate_limiter.clone(),
            concurrency: options
                .max_concurrency
                .map(|n| Arc::new(tokio::sync::Semaphore::new(n))),
            max_fallback_attempts: options.max_fallback_attempts,
            limits: OpenLimits {
                max_num_dbs: options.max_num_dbs,
                open_concurrency: options.shard_open_concurrency,
            },
            state: RwLock::new(None),
            refresh_lock: tokio::sync::Mutex::new(()),
            closed: AtomicBool::new(false),
            pinned,
        })
    }

    fn emit(&self, event: MetricEvent, fields: &[(&'static str, MetricValue<'_>)]) {
        if let Some(m) = &self.metrics {
            m.emit(event, fields);
        }
    }

    fn install(&self, snapshot: Snapshot) {
        *self.state.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(snapshot));
    }

    /// The current snapshot, borrowed (cheap: one `Arc` clone).
    fn current(&self) -> Result<Arc<Snapshot>> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::new(ErrorKind::ReaderState, "reader is closed"));
        }
        self.state
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| Error::new(ErrorKind::ReaderState, "Reader not yet initialized"))
    }

    async fn load_initial(&self) -> Result<Snapshot> {
        let current = self.store.load_current().await?.ok_or_else(|| {
            Error::new(
                ErrorKind::ReaderState,
                "CURRENT pointer not found: nothing has been published yet",
            )
        })?;
        let max_fallback = self.max_fallback_attempts;
        match self.store.load_manifest(&current.manifest_ref).await {
            Ok(m) => Snapshot::open(current, m, &self.factory, self.limits).await,
            Err(e) if e.kind() == ErrorKind::ManifestParse && max_fallback > 0 => {
                tracing::warn!(manifest_ref = %current.manifest_ref, error = %e, "current manifest does not parse; trying older ones");
                let history = self.store.list_manifests(100).await?;
                let start = history
                    .iter()
                    .position(|m| m.manifest_ref == current.manifest_ref)
                    .map(|i| i + 1)
                    .unwrap_or_else(|| {
                        history
                            .iter()
                            .position(|m| m.published_at < current.published_at)
                            .unwrap_or(history.len())
                    });
                for candidate in history.iter().skip(start).take(max_fallback) {
                    match self.store.load_manifest(&candidate.manifest_ref).await {
                        Ok(m) => {
                            return Snapshot::open(
                                candidate.clone(),
                                m,
                                &self.factory,
                                self.limits,
                            )
                            .await;
                        }
                        Err(e) if e.kind() == ErrorKind::ManifestParse => continue,
                        Err(e) => return Err(e),
                    }
                }
                Err(Error::new(
                    ErrorKind::ReaderState,
                    format!(
                        "No valid manifest found after fallback (current {} does not parse: {})",
                        current.manifest_ref,
                        e.message()
                    ),
                ))
            }
            Err(e) => Err(e),
        }
    }

    /// Load the current pointer; if it names a new manifest, open it completely and swap it in
    /// atomically. Returns whether the snapshot changed. A manifest that does not parse leaves
    /// the reader on its snapshot (`false`).
    pub async fn refresh(&self) -> Result<bool> {
        let _guard = self.refresh_lock.lock().await;
        let old = self.current()?;
        if self.pinned {
            self.emit(
                MetricEvent::ReaderRefreshed,
                &[("changed", MetricValue::Bool(false))],
            );
            return Ok(false);
        }
        let current = self
            .store
            .load_current()
            .await?
            .ok_or_else(|| Error::new(ErrorKind::ReaderState, "CURRENT pointer not found"))?;
        if current.manifest_ref == old.manifest_ref.manifest_ref {
            self.emit(
                MetricEvent::ReaderRefreshed,
                &[("changed", MetricValue::Bool(false))],
            );
            return Ok(false);
        }
        let manifest = match self.store.load_manifest(&current.manifest_ref).await {
            Ok(m) => m,
            Err(e) if e.kind() == ErrorKind::ManifestParse => {
                tracing::warn!(manifest_ref = %current.manifest_ref, error = %e, "new manifest does not parse; keeping the current snapshot");
                self.emit(
                    MetricEvent::ReaderRefreshed,
                    &[("changed", MetricValue::Bool(false))],
                );
                return Ok(false);
            }
            Err(e) => return Err(e),
        };
        let snapshot = Snapshot::open(current, manifest, &self.factory, self.limits).await?;
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::new(ErrorKind::ReaderState, "reader is closed"));
        }
        self.install(snapshot);
        self.emit(
            MetricEvent::ReaderRefreshed,
            &[("changed", MetricValue::Bool(true))],
        );
        Ok(true)
    }

    async fn acquire(&self, n: u64) {
        if let Some(l) = &self.limiter {
            l.acquire(n).await;
        }
    }

    async fn read_one(&self, snap: &Snapshot, db_id: u32, encoded: &[u8]) -> Result<Option<Bytes>> {
        let _permit = match &self.concurrency {
            Some(s) => Some(
                s.acquire()
                    .await
                    .map_err(|_| Error::new(ErrorKind::ReaderState, "reader is closed"))?,
            ),
            None => None,
        };
        snap.read(db_id, encoded).await
    }

    /// The value of `key` (routed with `ctx` for multi-column CEL), or `None`. An unknown
    /// categorical token is a miss.
    pub async fn get_with_context(
        &self,
        key: KeyRef<'_>,
        ctx: Option<&RoutingContext>,
    ) -> Result<Option<Bytes>> {
        let start = Instant::now();
        let snap = self.current()?;
        self.acquire(1).await;
        let value = match snap.locate(key, ctx)? {
            None => None,
            Some((db_id, encoded)) => self.read_one(&snap, db_id, &encoded).await?,
        };
        self.emit(
            MetricEvent::ReaderGet,
            &[
                ("duration_ms", MetricValue::Int(ms(start))),
                ("found", MetricValue::Bool(value.is_some())),
            ],
        );
        Ok(value)
    }

    /// The value of `key`, or `None`.
    pub async fn get(&self, key: KeyRef<'_>) -> Result<Option<Bytes>> {
        self.get_with_context(key, None).await
    }

    /// Look several keys up: grouped by shard, shards read concurrently, one entry per distinct
    /// key in first-occurrence order.
    pub async fn multi_get_with_context(
        &self,
        keys: &[KeyRef<'_>],
        ctx: Option<&RoutingContext>,
    ) -> Result<Vec<(Key, Option<Bytes>)>> {
        let start = Instant::now();
        let snap = self.current()?;
        self.acquire(keys.len() as u64).await;
        let mut order: Vec<Key> = Vec::new();
        let mut seen: HashMap<KeyRef<'_>, usize> = HashMap::with_capacity(keys.len());
        let mut groups: BTreeMap<u32, Vec<(usize, Vec<u8>)>> = BTreeMap::new();
        for k in keys {
            if seen.contains_key(k) {
                continue;
            }
            let slot = order.len();
            seen.insert(*k, slot);
            order.push(k.to_key());
            if let Some((db_id, encoded)) = snap.locate(*k, ctx)? {
                groups.entry(db_id).or_default().push((slot, encoded));
            }
        }
        let mut values: Vec<Option<Bytes>> = vec![None; order.len()];
        // Shard groups run as tasks on every worker thread, large groups split into chunks so
        // the work spreads evenly; each chunk is one `ShardReader::multi_get` call.
        let mut tasks = tokio::task::JoinSet::new();
        let chunks = groups.into_iter().flat_map(|(db_id, mut items)| {
            std::iter::from_fn(move || {
                if items.is_empty() {
                    return None;
                }
                let rest = items.split_off(items.len().min(MULTI_GET_CHUNK));
                Some((db_id, std::mem::replace(&mut items, rest)))
            })
        });
        for (db_id, items) in chunks {
            let (snap, sem) = (snap.clone(), self.concurrency.clone());
            tasks.spawn(async move {
                let _permit = match &sem {
                    Some(s) => Some(
                        s.acquire()
                            .await
                            .map_err(|_| Error::new(ErrorKind::ReaderState, "reader is closed"))?,
                    ),
                    None => None,
                };
                let encoded: Vec<&[u8]> = items.iter().map(|(_, e)| e.as_slice()).collect();
                let found = snap.read_many(db_id, &encoded).await?;
                Ok::<_, Error>(
                    items
                        .iter()
                        .map(|(slot, _)| *slot)
                        .zip(found)
                        .collect::<Vec<_>>(),
                )
            });
        }
        while let Some(group) = tasks.join_next().await {
            let group = group.map_err(|e| {
                Error::new(ErrorKind::DbAdapter, format!("multi_get task failed: {e}"))
            })?;
            for (slot, v) in group? {
                values[slot] = v;
            }
        }
        self.emit(
            MetricEvent::ReaderMultiGet,
            &[
                ("duration_ms", MetricValue::Int(ms(start))),
                ("num_keys", MetricValue::Int(keys.len() as i64)),
            ],
        );
        Ok(order.into_iter().zip(values).collect())
    }

    /// `multi_get` without a routing context.
    pub async fn multi_get(&self, keys: &[KeyRef<'_>]) -> Result<Vec<(Key, Option<Bytes>)>> {
        self.multi_get_with_context(keys, None).await
    }

    /// The shard of a key (an unknown categorical token is a `ShardAssignment` error).
    pub fn route_key(&self, key: KeyRef<'_>, ctx: Option<&RoutingContext>) -> Result<u32> {
        self.current()?.route_key(key, ctx)
    }

    /// The manifest row of a key's shard.
    pub fn shard_for_key(
        &self,
        key: KeyRef<'_>,
        ctx: Option<&RoutingContext>,
    ) -> Result<RequiredShardMeta> {
        let snap = self.current()?;
        let id = snap.route_key(key, ctx)?;
        Ok(snap.manifest.shard(id))
    }

    /// The manifest row of each key's shard.
    pub fn shards_for_keys(
        &self,
        keys: &[KeyRef<'_>],
        ctx: Option<&RoutingContext>,
    ) -> Result<Vec<(Key, RequiredShardMeta)>> {
        let snap = self.current()?;
        keys.iter()
            .map(|k| Ok((k.to_key(), snap.manifest.shard(snap.route_key(*k, ctx)?))))
            .collect()
    }

    /// A handle on a key's shard, keeping the current snapshot alive while held.
    pub fn reader_for_key(
        &self,
        key: KeyRef<'_>,
        ctx: Option<&RoutingContext>,
    ) -> Result<ShardHandle> {
        let snap = self.current()?;
        let db_id = snap.route_key(key, ctx)?;
        Ok(ShardHandle {
            snapshot: snap,
            db_id,
        })
    }

    /// Handles on the shards of several keys, one per distinct shard.
    pub fn readers_for_keys(
        &self,
        keys: &[KeyRef<'_>],
        ctx: Option<&RoutingContext>,
    ) -> Result<BTreeMap<u32, ShardHandle>> {
        let snap = self.current()?;
        let mut out = BTreeMap::new();
        for k in keys {
            let db_id = snap.route_key(*k, ctx)?;
            out.entry(db_id).or_insert_with(|| ShardHandle {
                snapshot: snap.clone(),
                db_id,
            });
        }
        Ok(out)
    }

    /// Facts about the current snapshot.
    pub fn snapshot_info(&self) -> Result<SnapshotInfo> {
        Ok(self.current()?.info())
    }

    /// Every shard of the current snapshot, empty ones included.
    pub fn shard_details(&self) -> Result<Vec<ShardDetail>> {
        Ok(self.current()?.details())
    }

    /// The current snapshot's key encoding.
    pub fn key_encoding(&self) -> Result<KeyEncoding> {
        Ok(self.current()?.key_encoding())
    }

    /// Health: `degraded` when the manifest is older than `staleness_threshold`.
    pub fn health(&self, staleness_threshold: Option<Duration>) -> ReaderHealth {
        let closed = self.closed.load(Ordering::Acquire);
        let snap = if closed {
            None
        } else {
            self.state.read().unwrap_or_else(|p| p.into_inner()).clone()
        };
        match snap {
            None => ReaderHealth {
                status: HealthStatus::Unhealthy,
                manifest_ref: String::new(),
                manifest_age: Duration::ZERO,
                num_shards: 0,
                is_closed: closed,
            },
            Some(s) => {
                let age = s
                    .manifest
                    .build
                    .created_at
                    .seconds_until(Timestamp::now())
                    .max(0.0);
                let age = Duration::from_secs_f64(age);
                let status = match staleness_threshold {
                    Some(t) if age > t => HealthStatus::Degraded,
                    _ => HealthStatus::Healthy,
                };
                ReaderHealth {
                    status,
                    manifest_ref: s.manifest_ref.manifest_ref.clone(),
                    manifest_age: age,
                    num_shards: s.num_dbs(),
                    is_closed: false,
                }
            }
        }
    }

    /// Close the reader: later calls fail with `ReaderState`; the snapshot's shards close when
    /// the last borrower lets go. Idempotent.
    pub fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let old = self.state.write().unwrap_or_else(|p| p.into_inner()).take();
        let handles = old.as_ref().map_or(0, |s| s.open_handles());
        if let Some(s) = &self.concurrency {
            s.close();
        }
        drop(old);
        self.emit(
            MetricEvent::ReaderClosed,
            &[("num_handles", MetricValue::Int(handles as i64))],
        );
    }

    /// Whether `close` was called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}
