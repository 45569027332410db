//! [`ShardedWriter`]: route records to shards, write every shard, publish the snapshot.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use shardyfusion_core::{
    DEFAULT_KEY_COL, Error, ErrorKind, FORMAT_VERSION, HashRouter, Key, KeyEncoding,
    ManifestSharding, ManifestStore, MetricEvent, MetricValue, PublishObserver, RequiredBuildMeta,
    RequiredShardMeta, Result, RoutingValue, ShardingSpec, ShardingStrategy, Timestamp,
    WriteConfig, WriteOptions, WriterInfo,
};
use shardyfusion_storage::StorageResolver;

use crate::RoutingContext;
use crate::adapter::{AdapterFactory, SlateDbFactory, SlateDbOptions};
use crate::registry::RunRegistry;
use crate::result::{BuildDurations, BuildResult, BuildStats};
use crate::shard::{Batch, ShardCtx, ShardResult, ShardSink, SpoolWriter};

/// One routed-and-extracted input row; the value is anything that views as bytes (an owned
/// `Vec<u8>`, or a slice borrowed from the record, which saves a copy per row).
pub(crate) struct Row<V = Vec<u8>> {
    pub(crate) key: Key,
    pub(crate) value: V,
    pub(crate) ctx: Option<RoutingContext>,
}

/// How rows reach shards.
enum Router {
    Hash(HashRouter),
    #[cfg(feature = "cel")]
    Cel(shardyfusion_cel::CelRouter),
}

impl Router {
    fn route<V>(&self, row: &Row<V>) -> Result<u32> {
        match self {
            Router::Hash(h) => Ok(h.db_id(row.key.as_key_ref())),
            #[cfg(feature = "cel")]
            Router::Cel(c) => c
                .route(row.key.as_key_ref(), row.ctx.as_ref())?
                .into_shard(),
        }
    }
}

/// Builds sharded snapshots. Construct with the validated [`WriteConfig`]; the manifest store
/// comes from the config (writers never name a concrete store type).
///
/// ```no_run
/// # async fn demo(store: std::sync::Arc<dyn shardyfusion_core::ManifestStore>) -> shardyfusion_core::Result<()> {
/// use shardyfusion_core::{Key, WriteConfig, WriteOptions};
/// use shardyfusion_writer::ShardedWriter;
/// let config = WriteConfig::builder("/tmp/snap").num_dbs(8).manifest_store(store).build()?;
/// let rows: Vec<(i64, String)> = (0..1000).map(|i| (i, format!("v{i}"))).collect();
/// let result = ShardedWriter::new(config)?
///     .write(&rows, |r| Key::Int(r.0), |r| r.1.clone().into_bytes(), &WriteOptions::default())
///     .await?;
/// assert_eq!(result.stats.rows_written, 1000);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ShardedWriter {
    config: WriteConfig,
    resolver: StorageResolver,
    slatedb_options: SlateDbOptions,
    /// A caller's adapter factory; `None` = SlateDB through `resolver` with `slatedb_options`
    /// (built when a write starts, so the `with_*` calls may come in any order).
    custom_factory: Option<Arc<dyn AdapterFactory>>,
    store: Arc<dyn ManifestStore>,
    registry: bool,
}

impl std::fmt::Debug for ShardedWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardedWriter")
            .field("config", &self.config)
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

/// The storage resolver implied by a config's credentials, connection options and metrics.
pub fn resolver_for(config: &WriteConfig) -> StorageResolver {
    let mut b = StorageResolver::builder();
    if let Some(p) = config.credential_provider() {
        b = b.credential_provider(p.clone());
    }
    if let Some(o) = config.s3_connection_options() {
        b = b.s3_options(o.clone());
    }
    if let Some(m) = config.metrics_collector() {
        b = b.metrics(m.clone());
    }
    b.build()
}

impl ShardedWriter {
    /// A writer for `config`, with the SlateDB adapter and storage built from the config.
    pub fn new(config: WriteConfig) -> Result<Self> {
        config.validate()?;
        let store = config.manifest_store().cloned().ok_or_else(|| {
            Error::config(
                "no manifest store configured: pass WriteConfig::builder(..).manifest_store(..), e.g. an \
                 object-store manifest store on the same prefix (shardyfusion::manifest_store_for_prefix)",
            )
        })?;
        let resolver = resolver_for(&config);
        Ok(ShardedWriter {
            config,
            resolver,
            slatedb_options: SlateDbOptions::default(),
            custom_factory: None,
            store,
            registry: true,
        })
    }

    /// Reach storage through `resolver`: the one storage configuration (credentials, S3
    /// options, retries) to share with the manifest store and the readers. It replaces the
    /// resolver implied by the config's credential provider and S3 options.
    #[must_use]
    pub fn with_storage(mut self, resolver: StorageResolver) -> Self {
        self.resolver = resolver;
        self
    }

    /// Tune the SlateDB adapter (e.g. `legacy_readers`).
    #[must_use]
    pub fn with_slatedb_options(mut self, options: SlateDbOptions) -> Self {
        self.slatedb_options = options;
        self
    }

    /// Use another adapter factory (then the SlateDB options do not apply).
    #[must_use]
    pub fn with_adapter_factory(mut self, factory: Arc<dyn AdapterFactory>) -> Self {
        self.custom_factory = Some(factory);
        self
    }

    /// The adapter factory of a write.
    fn factory(&self) -> Arc<dyn AdapterFactory> {
        match &self.custom_factory {
            Some(f) => f.clone(),
            None => Arc::new(SlateDbFactory::new(
                self.resolver.clone(),
                self.slatedb_options.clone(),
            )),
        }
    }

    /// Write (default) or skip the run record under `runs/`.
    #[must_use]
    pub fn with_run_registry(mut self, on: bool) -> Self {
        self.registry = on;
        self
    }

    /// The configuration.
    pub fn config(&self) -> &WriteConfig {
        &self.config
    }

    /// Write records with key and value extractors (HASH, or key-only CEL).
    ///
    /// The value extractor returns anything that views as bytes: an owned `Vec<u8>`, or a
    /// slice borrowed from the record (`|r| r.payload.as_slice()` when iterating `&records`),
    /// which saves one allocation and copy per row.
    pub async fn write<I, T, FK, FV, V>(
        &self,
        records: I,
        key: FK,
        value: FV,
        options: &WriteOptions,
    ) -> Result<BuildResult>
    where
        I: IntoIterator<Item = T> + Clone,
        FK: Fn(&T) -> Key,
        FV: Fn(&T) -> V,
        V: AsRef<[u8]>,
    {
        self.run(
            records,
            |r| {
                Ok(Row {
                    key: key(r),
                    value: value(r),
                    ctx: None,
                })
            },
            DEFAULT_KEY_COL,
            options,
            None,
        )
        .await
    }

    /// Write records with a columns extractor for multi-column CEL routing.
    pub async fn write_with_columns<I, T, FK, FV, FC, V>(
        &self,
        records: I,
        key: FK,
        value: FV,
        columns: FC,
        options: &WriteOptions,
    ) -> Result<BuildResult>
    where
        I: IntoIterator<Item = T> + Clone,
        FK: Fn(&T) -> Key,
        FV: Fn(&T) -> V,
        V: AsRef<[u8]>,
        FC: Fn(&T) -> RoutingContext,
    {
        self.run(
            records,
            |r| {
                Ok(Row {
                    key: key(r),
                    value: value(r),
                    ctx: Some(columns(r)),
                })
            },
            DEFAULT_KEY_COL,
            options,
            None,
        )
        .await
    }

    fn build_router<I, T, F, V>(
        &self,
        rows: &I,
        extract: &F,
        num_dbs_override: Option<u32>,
    ) -> Result<(Router, u32, Option<Vec<RoutingValue>>, u64)>
    where
        I: IntoIterator<Item = T> + Clone,
        F: Fn(&T) -> Result<Row<V>>,
        V: AsRef<[u8]>,
    {
        let spec: &ShardingSpec = self.config.sharding();
        let started = Instant::now();
        let elapsed = |s: Instant| s.elapsed().as_millis() as u64;
        match spec.strategy {
            ShardingStrategy::Hash => {
                let n = match (
                    num_dbs_override.or(self.config.num_dbs()),
                    spec.max_keys_per_shard,
                ) {
                    (Some(n), _) => n,
                    (None, Some(m)) => {
                        let count = rows.clone().into_iter().count() as u64;
                        u32::try_from(count.div_ceil(m).max(1))
                            .map_err(|_| Error::config("too many shards"))?
                    }
                    (None, None) => {
                        return Err(Error::config(
                            "HASH sharding needs num_dbs or max_keys_per_shard",
                        ));
                    }
                };
                Ok((Router::Hash(HashRouter::new(n)?), n, None, elapsed(started)))
            }
            #[cfg(feature = "cel")]
            ShardingStrategy::Cel => {
                use shardyfusion_cel::{
                    CelExpression, CelRouter, direct_id, discover_direct_num_dbs,
                    infer_routing_values,
                };
                let expr = CelExpression::compile(
                    spec.cel_expr.as_deref().unwrap_or_default(),
                    &spec.cel_columns,
                )?;
                let eval = |row: &Row<V>| match &row.ctx {
                    Some(ctx) => expr.evaluate(ctx),
                    None => expr.evaluate_key(row.key.as_key_ref()),
                };
                if let Some(values) = &spec.routing_values {
                    let r = CelRouter::categorical(expr.clone(), values)?;
                    let n = r.num_dbs().unwrap_or(1);
                    return Ok((Router::Cel(r), n, Some(values.clone()), 0));
                }
                if spec.infer_routing_values_from_data {
                    let mut tokens = Vec::new();
                    for t in rows.clone() {
                        tokens.push(eval(&extract(&t)?)?);
                    }
                    let values = infer_routing_values(tokens)?;
                    let r = CelRouter::categorical(expr.clone(), &values)?;
                    let n = r.num_dbs().unwrap_or(1);
                    return Ok((Router::Cel(r), n, Some(values), elapsed(started)));
                }
                let mut ids = std::collections::BTreeSet::new();
                for t in rows.clone() {
                    ids.insert(direct_id(&eval(&extract(&t)?)?)?);
                }
                let n = discover_direct_num_dbs(ids)?;
                Ok((
                    Router::Cel(CelRouter::direct(expr, Some(n))),
                    n,
                    None,
                    elapsed(started),
                ))
            }
            #[cfg(not(feature = "cel"))]
            ShardingStrategy::Cel => Err(Error::config(
                "CEL sharding needs the `cel` feature of shardyfusion-writer",
            )),
        }
    }

    /// The shared write path: validate, route, write shards, publish.
    pub(crate) async fn run<I, T, F, V>(
        &self,
        rows: I,
        extract: F,
        key_col: &str,
        options: &WriteOptions,
        num_dbs_override: Option<u32>,
    ) -> Result<BuildResult>
    where
        I: IntoIterator<Item = T> + Clone,
        F: Fn(&T) -> Result<Row<V>>,
        V: AsRef<[u8]>,
    {
        let started = Instant::now();
        self.config.validate()?;
        options.validate()?;
        let cfg = &self.config;
        let out = cfg.output();
        let run_id = out
            .run_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
        let metrics = cfg.metrics_collector().cloned();
        let emit = |event: MetricEvent, fields: &[(&'static str, MetricValue<'_>)]| {
            if let Some(m) = &metrics {
                m.emit(event, fields);
            }
        };
        let registry = if self.registry {
            RunRegistry::start(
                &self.resolver,
                cfg.s3_prefix(),
                &out.run_registry_prefix,
                &run_id,
                &out.shard_prefix,
                out.db_path_template.as_str(),
            )
            .await
        } else {
            None
        };
        emit(
            MetricEvent::WriteStarted,
            &[("elapsed_ms", MetricValue::Int(0))],
        );
        let result = self
            .run_inner(
                rows,
                extract,
                key_col,
                options,
                num_dbs_override,
                &run_id,
                started,
                registry.as_ref().map(|r| r.url().to_owned()),
            )
            .await;
        if let Some(reg) = registry {
            match &result {
                Ok(r) => reg.finish(Some(&r.manifest_ref.manifest_ref), None).await,
                Err(e) => reg.finish(None, Some(e)).await,
            }
        }
        // Scratch space of this run (spools, attempt dirs) is not needed any more.
        let _ = tokio::fs::remove_dir_all(out.local_root.join(format!("run_id={run_id}"))).await;
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_inner<I, T, F, V>(
        &self,
        rows: I,
        extract: F,
        key_col: &str,
        options: &WriteOptions,
        num_dbs_override: Option<u32>,
        run_id: &str,
        started: Instant,
        run_record_ref: Option<String>,
    ) -> Result<BuildResult>
    where
        I: IntoIterator<Item = T> + Clone,
        F: Fn(&T) -> Result<Row<V>>,
        V: AsRef<[u8]>,
    {
        let cfg = &self.config;
        let out = cfg.output();
        let metrics = cfg.metrics_collector().cloned();
        let elapsed_ms = || started.elapsed().as_millis() as i64;
        let emit = |event: MetricEvent, fields: &[(&'static str, MetricValue<'_>)]| {
            if let Some(m) = &metrics {
                m.emit(event, fields);
            }
        };

        let (router, num_dbs, routing_values, sharding_ms) =
            self.build_router(&rows, &extract, num_dbs_override)?;
        if sharding_ms > 0 {
            emit(
                MetricEvent::WriteShardingCompleted,
                &[
                    ("elapsed_ms", MetricValue::Int(elapsed_ms())),
                    ("duration_ms", MetricValue::Int(sharding_ms as i64)),
                ],
            );
        }

        // Shard URLs use the canonical form of the prefix (a plain path becomes its absolute
        // file:// URL); the manifest's s3_prefix keeps the string as given.
        let url_prefix = self.resolver.resolve(cfg.s3_prefix())?.url;
        let ctx = ShardCtx {
            factory: self.factory(),
            s3_prefix: url_prefix,
            shard_prefix: out.shard_prefix.clone(),
            run_id: run_id.to_owned(),
            template: out.db_path_template.clone(),
            local_root: out.local_root.clone(),
            batch_size: cfg.batch_size(),
            num_dbs,
            retry: cfg.shard_retry().cloned(),
            max_writes_per_second: options.max_writes_per_second,
            max_write_bytes_per_second: options.max_write_bytes_per_second,
            metrics: metrics.clone(),
            started,
            given_up: Arc::default(),
        };
        let write_start = Instant::now();
        let results = write_shards(
            &ctx,
            rows,
            &extract,
            &router,
            num_dbs,
            cfg.key_encoding(),
            options,
        )
        .await?;
        let write_ms = write_start.elapsed().as_millis() as u64;
        let rows_total: u64 = results.iter().map(|r| r.row_count).sum();
        emit(
            MetricEvent::WriteShardsCompleted,
            &[
                ("elapsed_ms", MetricValue::Int(elapsed_ms())),
                ("duration_ms", MetricValue::Int(write_ms as i64)),
                ("rows_written", MetricValue::Int(rows_total as i64)),
            ],
        );

        // Winners and coverage.
        let (winners, losers) = select_winners(results.clone(), num_dbs)?;

        // Publish: manifest, then pointer.
        let manifest_start = Instant::now();
        let build = RequiredBuildMeta {
            run_id: run_id.to_owned(),
            created_at: Timestamp::now(),
            num_dbs,
            s3_prefix: cfg.s3_prefix().to_owned(),
            key_col: key_col.to_owned(),
            sharding: ManifestSharding::from_spec(cfg.sharding(), routing_values),
            db_path_template: out.db_path_template.as_str().to_owned(),
            shard_prefix: out.shard_prefix.clone(),
            format_version: FORMAT_VERSION,
            key_encoding: cfg.key_encoding(),
            custom: cfg.custom_manifest_fields().clone(),
        };
        let shard_rows: Vec<RequiredShardMeta> = winners
            .iter()
            .map(|w| RequiredShardMeta {
                db_id: w.db_id,
                db_url: w.db_url.clone(),
                attempt: w.attempt,
                row_count: w.row_count,
                db_bytes: w.db_bytes,
                min_key: w.min_key.clone(),
                max_key: w.max_key.clone(),
                checkpoint_id: w.checkpoint_id.clone(),
                writer_info: WriterInfo {
                    attempt: i64::from(w.attempt),
                    duration_ms: w.duration_ms,
                    stage_id: None,
                    task_attempt_id: None,
                },
            })
            .collect();
        let observer = Observer {
            metrics: metrics.clone(),
            started,
        };
        let manifest_ref = self.store.publish(&build, &shard_rows, &observer).await?;
        let manifest_ms = manifest_start.elapsed().as_millis() as u64;

        // Best-effort cleanup of failed attempts (never returned).
        for url in &losers {
            delete_prefix(&self.resolver, url).await;
        }

        let result = BuildResult {
            run_id: run_id.to_owned(),
            num_dbs,
            stats: BuildStats {
                durations: BuildDurations {
                    sharding_ms,
                    write_ms,
                    manifest_ms,
                    total_ms: started.elapsed().as_millis() as u64,
                },
                num_attempt_results: results.len(),
                num_winners: winners.len(),
                rows_written: winners.iter().map(|w| w.row_count).sum(),
            },
            winners,
            manifest_ref,
            run_record_ref,
        };
        emit(
            MetricEvent::WriteCompleted,
            &[
                ("elapsed_ms", MetricValue::Int(elapsed_ms())),
                (
                    "rows_written",
                    MetricValue::Int(result.stats.rows_written as i64),
                ),
            ],
        );
        Ok(result)
    }
}

/// Emits the publish events at the moment each phase is durable.
struct Observer {
    metrics: Option<Arc<dyn shardyfusion_core::MetricsCollector>>,
    started: Instant,
}

impl PublishObserver for Observer {
    fn manifest_published(&self, _manifest_ref: &str) {
        if let Some(m) = &self.metrics {
            m.emit(
                MetricEvent::WriteManifestPublished,
                &[(
                    "elapsed_ms",
                    MetricValue::Int(self.started.elapsed().as_millis() as i64),
                )],
            );
        }
    }
    fn current_published(&self, manifest_ref: &str) {
        if let Some(m) = &self.metrics {
            m.emit(
                MetricEvent::WriteCurrentPublished,
                &[
                    (
                        "elapsed_ms",
                        MetricValue::Int(self.started.elapsed().as_millis() as i64),
                    ),
                    ("manifest_ref", MetricValue::Str(manifest_ref)),
                ],
            );
        }
    }
}

/// Winner per shard by the minimum of `(attempt, task_attempt_id, db_url)`; every `db_id` in
/// `[0, num_dbs)` needs a result. Returns the non-empty winners (ascending) and the URLs of every
/// other attempt.
pub(crate) fn select_winners(
    results: Vec<ShardResult>,
    num_dbs: u32,
) -> Result<(Vec<ShardResult>, Vec<String>)> {
    let mut by_id: HashMap<u32, Vec<ShardResult>> = HashMap::new();
    for r in results {
        if r.db_id >= num_dbs {
            return Err(Error::new(
                ErrorKind::ShardCoverage,
                format!("shard result for db_id {} outside [0, {num_dbs})", r.db_id),
            ));
        }
        by_id.entry(r.db_id).or_default().push(r);
    }
    let mut winners = Vec::new();
    let mut losers = Vec::new();
    for db_id in 0..num_dbs {
        let mut candidates = by_id.remove(&db_id).ok_or_else(|| {
            Error::new(
                ErrorKind::ShardCoverage,
                format!("no result for shard {db_id} of {num_dbs}: results must cover every db_id"),
            )
        })?;
        candidates.sort_by(|a, b| {
            (a.attempt, i64::MAX, a.db_url.as_deref().unwrap_or("")).cmp(&(
                b.attempt,
                i64::MAX,
                b.db_url.as_deref().unwrap_or(""),
            ))
        });
        let winner = candidates.remove(0);
        for c in candidates.iter().chain(std::iter::once(&winner)) {
            losers.extend(
                c.attempt_urls
                    .iter()
                    .filter(|u| Some(u.as_str()) != winner.db_url.as_deref())
                    .cloned(),
            );
        }
        if winner.db_url.is_some() {
            winners.push(winner);
        }
    }
    losers.sort();
    losers.dedup();
    Ok((winners, losers))
}

/// Delete every object under `url + "/"`, logging failures.
async fn delete_prefix(resolver: &StorageResolver, url: &str) {
    let Ok(loc) = resolver.resolve(url) else {
        return;
    };
    let listing = loc
        .store
        .list(Some(&loc.path))
        .map(|m| m.map(|m| m.location))
        .boxed();
    let mut deleted = loc.store.delete_stream(listing);
    let mut n = 0u64;
    while let Some(r) = deleted.next().await {
        match r {
            Ok(_) => n += 1,
            Err(e) => {
                tracing::warn!(url, error = %e, "cleanup of a failed attempt stopped");
                return;
            }
        }
    }
    tracing::info!(url, objects = n, "deleted a failed shard attempt");
}

/// Per-shard row buffers with global totals.
struct Buffers {
    batch_size: usize,
    bufs: Vec<Batch>,
    /// Bytes of each shard's previous batch: the next one reserves that much up front.
    last_bytes: Vec<usize>,
    total_items: usize,
    total_bytes: usize,
}

impl Buffers {
    fn new(n: usize, batch_size: usize) -> Self {
        Buffers {
            batch_size,
            bufs: (0..n).map(|_| Batch::default()).collect(),
            last_bytes: vec![0; n],
            total_items: 0,
            total_bytes: 0,
        }
    }

    /// Append a row to shard `i`'s buffer, encoding its key in place.
    fn push(&mut self, i: usize, encoding: KeyEncoding, key: &Key, value: &[u8]) -> Result<()> {
        let buf = &mut self.bufs[i];
        if buf.row_capacity() == 0 {
            // One allocation per batch instead of repeated doubling.
            *buf = Batch::with_capacity(self.batch_size.min(65_536), self.last_bytes[i]);
        }
        let before = buf.bytes();
        buf.push_encoded(|out| encoding.encode_into(key.as_key_ref(), out), value)?;
        self.total_items += 1;
        self.total_bytes += buf.bytes() - before;
        Ok(())
    }

    fn take(&mut self, i: usize) -> Batch {
        self.total_items -= self.bufs[i].len();
        self.total_bytes -= self.bufs[i].bytes();
        if !self.bufs[i].is_empty() {
            self.last_bytes[i] = self.bufs[i].bytes();
        }
        std::mem::take(&mut self.bufs[i])
    }

    /// The shard to flush when a global cap is exceeded: the largest buffer (bytes, then items).
    fn over_cap(&self, options: &WriteOptions) -> Option<usize> {
        let over = options
            .max_total_batched_items
            .is_some_and(|c| self.total_items > c)
            || options
                .max_total_batched_bytes
                .is_some_and(|c| self.total_bytes > c);
        let largest =
            (0..self.bufs.len()).max_by_key(|&i| (self.bufs[i].bytes(), self.bufs[i].len()))?;
        (over && !self.bufs[largest].is_empty()).then_some(largest)
    }
}

/// Where full batches go: the spool (when retries may replay them), then the shard's sink
/// (sequential mode) or worker (parallel mode).
struct Dispatcher<'a> {
    ctx: &'a ShardCtx,
    parallel: bool,
    spools: Vec<Option<SpoolWriter>>,
    sinks: Vec<Option<ShardSink>>,
    workers: Workers,
}

impl Dispatcher<'_> {
    /// After a failure: close every shard database this write opened (without the final
    /// flush), in sequential sinks and in the parallel workers alike.
    async fn abandon(self) {
        let mut sinks: Vec<ShardSink> = self.sinks.into_iter().flatten().collect();
        sinks.extend(self.workers.stop().await);
        for sink in sinks {
            sink.abandon().await;
        }
    }

    async fn dispatch(&mut self, i: usize, batch: Batch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let batch = if self.ctx.retry.as_ref().is_some_and(|r| r.max_retries > 0) {
            // Local file I/O runs on a blocking thread, never on an async worker.
            let spool = self.spools[i].take();
            let path = self.ctx.spool_path(i as u32);
            let (spool, batch) = blocking(move || {
                let mut spool = match spool {
                    Some(s) => s,
                    None => SpoolWriter::create(path)?,
                };
                spool.append(&batch)?;
                Ok((spool, batch))
            })
            .await?;
            self.spools[i] = Some(spool);
            batch
        } else {
            batch
        };
        if self.parallel {
            self.workers.send(i, batch, &mut self.sinks).await
        } else if let Some(sink) = self.sinks[i].as_mut() {
            sink.write(batch).await
        } else {
            Ok(())
        }
    }
}

/// Route every row, buffer per shard, and write batches (inline in sequential mode, through
/// one worker task per shard in parallel mode).
async fn write_shards<I, T, F, V>(
    ctx: &ShardCtx,
    rows: I,
    extract: &F,
    router: &Router,
    num_dbs: u32,
    encoding: KeyEncoding,
    options: &WriteOptions,
) -> Result<Vec<ShardResult>>
where
    I: IntoIterator<Item = T>,
    F: Fn(&T) -> Result<Row<V>>,
    V: AsRef<[u8]>,
{
    let n = num_dbs as usize;
    let mut buffers = Buffers::new(n, ctx.batch_size);
    let mut stats: Vec<crate::shard::ShardStats> = vec![Default::default(); n];
    let mut out = Dispatcher {
        ctx,
        parallel: options.parallel,
        spools: (0..n).map(|_| None).collect(),
        sinks: (0..n)
            .map(|i| Some(ShardSink::new(ctx.clone(), i as u32)))
            .collect(),
        workers: Workers::new(options),
    };
    let fed = feed(
        &mut out,
        &mut buffers,
        &mut stats,
        rows,
        extract,
        router,
        encoding,
        options,
    )
    .await;
    if let Err(e) = fed {
        out.abandon().await;
        return Err(e);
    }
    out.workers.finish(out.sinks, stats).await
}

/// Route every row into the per-shard buffers and hand full batches to `out`.
#[allow(clippy::too_many_arguments)]
async fn feed<I, T, F, V>(
    out: &mut Dispatcher<'_>,
    buffers: &mut Buffers,
    stats: &mut [crate::shard::ShardStats],
    rows: I,
    extract: &F,
    router: &Router,
    encoding: KeyEncoding,
    options: &WriteOptions,
) -> Result<()>
where
    I: IntoIterator<Item = T>,
    F: Fn(&T) -> Result<Row<V>>,
    V: AsRef<[u8]>,
{
    let n = buffers.bufs.len();
    let batch_size = out.ctx.batch_size;
    let sort = options.sort_within_partitions;
    let mut integer_keys: Option<bool> = None;

    for item in rows {
        let row = extract(&item)?;
        let db_id = router.route(&row)? as usize;
        if db_id >= n {
            return Err(Error::new(
                ErrorKind::ShardAssignment,
                format!("routing produced db_id {db_id} outside [0, {n})"),
            ));
        }
        let is_int = matches!(row.key, Key::Int(_));
        if *integer_keys.get_or_insert(is_int) != is_int {
            return Err(Error::config(format!(
                "key {} mixes integer and string/bytes keys in one write; use one key type",
                row.key
            )));
        }
        buffers.push(db_id, encoding, &row.key, row.value.as_ref())?;
        stats[db_id].observe(&row.key);
        if sort {
            continue; // whole shards are sorted and written at the end
        }
        if buffers.bufs[db_id].len() >= batch_size {
            out.dispatch(db_id, buffers.take(db_id)).await?;
        }
        while let Some(largest) = buffers.over_cap(options) {
            out.dispatch(largest, buffers.take(largest)).await?;
        }
    }
    for i in 0..n {
        let mut rest = buffers.take(i);
        if sort {
            rest.sort();
        }
        for batch in rest.chunks(batch_size) {
            out.dispatch(i, batch).await?;
        }
    }
    for s in out.spools.iter_mut() {
        if let Some(s) = s.take() {
            blocking(move || s.finish()).await?;
        }
    }
    Ok(())
}

/// Run blocking work (local files) on tokio's blocking pool.
pub(crate) async fn blocking<R: Send + 'static>(
    f: impl FnOnce() -> Result<R> + Send + 'static,
) -> Result<R> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        Error::new(
            ErrorKind::ShardWrite,
            format!("a blocking file task failed: {e}"),
        )
    })?
}

/// Parallel mode: one task per non-empty shard fed by a bounded channel; bytes in flight are
/// bounded globally and per worker.
struct Workers {
    queue: usize,
    global: Arc<tokio::sync::Semaphore>,
    per_worker_cap: usize,
    global_cap: usize,
    senders: HashMap<usize, WorkerInput>,
    handles: HashMap<usize, tokio::task::JoinHandle<Result<ShardSink>>>,
}

/// A worker's channel and its bytes-in-flight semaphore.
type WorkerInput = (
    tokio::sync::mpsc::Sender<(Batch, Permits)>,
    Arc<tokio::sync::Semaphore>,
);

struct Permits {
    _global: tokio::sync::OwnedSemaphorePermit,
    _worker: tokio::sync::OwnedSemaphorePermit,
}

fn permits_for(bytes: usize, cap: usize) -> u32 {
    u32::try_from(bytes.clamp(1, cap)).unwrap_or(u32::MAX)
}

impl Workers {
    fn new(options: &WriteOptions) -> Self {
        let global_cap = options.max_parallel_bytes_in_flight.min(u32::MAX as usize);
        Workers {
            queue: options.max_queue_size,
            global: Arc::new(tokio::sync::Semaphore::new(global_cap)),
            per_worker_cap: options.max_parallel_bytes_per_worker.min(global_cap),
            global_cap,
            senders: HashMap::new(),
            handles: HashMap::new(),
        }
    }

    async fn send(
        &mut self,
        i: usize,
        batch: Batch,
        sinks: &mut [Option<ShardSink>],
    ) -> Result<()> {
        if !self.senders.contains_key(&i) {
            let (tx, mut rx) = tokio::sync::mpsc::channel::<(Batch, Permits)>(self.queue);
            let mut sink = sinks[i]
                .take()
                .ok_or_else(|| Error::new(ErrorKind::ShardWrite, "shard worker started twice"))?;
            let handle = tokio::spawn(async move {
                while let Some((batch, _permits)) = rx.recv().await {
                    sink.write(batch).await?;
                }
                Ok(sink)
            });
            self.senders.insert(
                i,
                (
                    tx,
                    Arc::new(tokio::sync::Semaphore::new(self.per_worker_cap)),
                ),
            );
            self.handles.insert(i, handle);
        }
        let bytes = batch.bytes();
        let (tx, worker_sem) = self
            .senders
            .get(&i)
            .ok_or_else(|| Error::new(ErrorKind::ShardWrite, "worker missing"))?;
        let closed = || Error::new(ErrorKind::ShardWrite, "shard worker stopped");
        let g = self
            .global
            .clone()
            .acquire_many_owned(permits_for(bytes, self.global_cap))
            .await
            .map_err(|_| closed())?;
        let w = worker_sem
            .clone()
            .acquire_many_owned(permits_for(bytes, self.per_worker_cap))
            .await
            .map_err(|_| closed())?;
        if tx
            .send((
                batch,
                Permits {
                    _global: g,
                    _worker: w,
                },
            ))
            .await
            .is_err()
        {
            // The worker ended early: its error explains why.
            let handle = self.handles.remove(&i).ok_or_else(closed)?;
            return Err(join(handle).await.err().unwrap_or_else(closed));
        }
        Ok(())
    }

    async fn finish(
        mut self,
        mut sinks: Vec<Option<ShardSink>>,
        stats: Vec<crate::shard::ShardStats>,
    ) -> Result<Vec<ShardResult>> {
        for (i, sink) in sinks.iter_mut().enumerate() {
            if let Some(s) = sink.as_mut() {
                s.stats = stats[i].clone();
            }
        }
        self.senders.clear(); // close the channels: workers drain and return their sinks
        let mut failure = None;
        for (i, handle) in std::mem::take(&mut self.handles) {
            match join(handle).await {
                Ok(mut sink) => {
                    sink.stats = stats[i].clone();
                    sinks[i] = Some(sink);
                }
                Err(e) => failure = failure.or(Some(e)),
            }
        }
        if let Some(e) = failure {
            for sink in sinks.into_iter().flatten() {
                sink.abandon().await;
            }
            return Err(e);
        }
        // Seal every shard (concurrently), retrying from spools where needed. After a failure
        // the others stop retrying but still close, so every database is closed before
        // returning.
        let mut tasks = tokio::task::JoinSet::new();
        let mut given_up = None;
        for sink in sinks.into_iter().flatten() {
            given_up.get_or_insert_with(|| sink.given_up());
            tasks.spawn(sink.finish());
        }
        let given_up = given_up.unwrap_or_default();
        let mut results = Vec::new();
        let mut failure = None;
        while let Some(r) = tasks.join_next().await {
            let e = match r {
                Ok(Ok(res)) => {
                    results.push(res);
                    continue;
                }
                Ok(Err(e)) => e,
                Err(e) => Error::new(ErrorKind::ShardWrite, format!("shard task failed: {e}")),
            };
            // The write has failed: the other shards stop retrying (and close their attempts).
            given_up.store(true, std::sync::atomic::Ordering::Relaxed);
            failure = failure.or(Some(e));
        }
        if let Some(e) = failure {
            return Err(e);
        }
        results.sort_by_key(|r| r.db_id);
        Ok(results)
    }

    /// Stop every worker (after a failure elsewhere) and return the sinks they held.
    async fn stop(mut self) -> Vec<ShardSink> {
        self.senders.clear();
        let mut sinks = Vec::new();
        for (_, handle) in std::mem::take(&mut self.handles) {
            if let Ok(sink) = join(handle).await {
                sinks.push(sink);
            }
        }
        sinks
    }

    fn abort_all(&mut self) {
        for h in self.handles.values() {
            h.abort();
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.abort_all();
    }
}

async fn join(handle: tokio::task::JoinHandle<Result<ShardSink>>) -> Result<ShardSink> {
    handle
        .await
        .map_err(|e| Error::new(ErrorKind::ShardWrite, format!("shard worker failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardyfusion_core::ManifestStore;

    #[derive(Debug)]
    struct NoStore;

    #[async_trait::async_trait]
    impl ManifestStore for NoStore {
        async fn publish(
            &self,
            _: &shardyfusion_core::RequiredBuildMeta,
            _: &[shardyfusion_core::RequiredShardMeta],
            _: &dyn shardyfusion_core::PublishObserver,
        ) -> Result<shardyfusion_core::ManifestRef> {
            Err(Error::config("unused"))
        }
        async fn load_current(&self) -> Result<Option<shardyfusion_core::ManifestRef>> {
            Ok(None)
        }
        async fn load_manifest(&self, _: &str) -> Result<shardyfusion_core::ParsedManifest> {
            Err(Error::config("unused"))
        }
        async fn list_manifests(&self, _: usize) -> Result<Vec<shardyfusion_core::ManifestRef>> {
            Ok(Vec::new())
        }
        async fn set_current(&self, _: &str) -> Result<()> {
            Ok(())
        }
    }

    #[test]
    fn builder_result_does_not_depend_on_call_order() {
        let config = WriteConfig::builder("memory://order/p")
            .num_dbs(2)
            .manifest_store(Arc::new(NoStore))
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let options = SlateDbOptions::default()
            .with_legacy_readers(true)
            .with_object_store_max_retries(3);
        let resolver = StorageResolver::builder()
            .retry(shardyfusion_storage::StorageRetry::fast(2))
            .build();
        let new = || ShardedWriter::new(config.clone()).unwrap_or_else(|e| panic!("{e}"));
        let a = new()
            .with_slatedb_options(options.clone())
            .with_storage(resolver.clone());
        let b = new()
            .with_storage(resolver.clone())
            .with_slatedb_options(options.clone());
        for w in [&a, &b] {
            assert_eq!(w.slatedb_options, options);
            assert_eq!(w.resolver.retry(), resolver.retry());
        }
    }
}
