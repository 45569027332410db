//! [`ShardedWriter`]: the configuration of a write and its orchestration: plan the routing,
//! run the run registry, feed the shard session from an input, commit the snapshot.

use std::sync::Arc;
use std::time::Instant;

use shardyfusion_core::{
    Error, ManifestStore, MetricEvent, MetricValue, Result, WriteConfig, WriteOptions,
};
use shardyfusion_storage::StorageResolver;

use crate::adapter::{AdapterFactory, SlateDbFactory, SlateDbOptions};
use crate::engine::{Build, BuildPlan, WRITER_VERSION};
use crate::publish::Commit;
use crate::registry::RunRegistry;
use crate::result::BuildResult;
use crate::route::{Plan, Router};
use crate::session::Session;
use crate::shard::{ShardCtx, ShardResult};

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

    /// The shared write path: run record, shard session fed by `feed`, commit.
    pub(crate) async fn run<F>(
        &self,
        plan: Plan,
        key_col: &str,
        options: &WriteOptions,
        feed: F,
    ) -> Result<BuildResult>
    where
        F: AsyncFnOnce(&mut Session<'_>, &Router) -> Result<()>,
    {
        let build = self.begin_planned(&plan, key_col, options).await?;
        let write_start = Instant::now();
        let shards = Shards {
            run_id: &build.plan.run_id,
            owned: None,
            started: build.started,
            scratch: &self.config.output().local_root,
        };
        match self.write_shards(&plan, &shards, options, feed).await {
            Ok(results) => {
                let write_ms = write_start.elapsed().as_millis() as u64;
                self.commit_results(build, results, write_ms).await
            }
            Err(e) => {
                self.end(build, Err(&e)).await;
                Err(e)
            }
        }
    }

    /// Start a build: validate, choose the run id, start the run record.
    pub(crate) async fn begin_planned(
        &self,
        plan: &Plan,
        key_col: &str,
        options: &WriteOptions,
    ) -> Result<Build> {
        let started = Instant::now();
        self.config.validate()?;
        options.validate()?;
        let cfg = &self.config;
        let out = cfg.output();
        let run_id = out
            .run_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
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
        self.emit(
            MetricEvent::WriteStarted,
            &[("elapsed_ms", MetricValue::Int(0))],
        );
        if plan.sharding_ms > 0 {
            self.emit(
                MetricEvent::WriteShardingCompleted,
                &[
                    (
                        "elapsed_ms",
                        MetricValue::Int(started.elapsed().as_millis() as i64),
                    ),
                    ("duration_ms", MetricValue::Int(plan.sharding_ms as i64)),
                ],
            );
        }
        Ok(Build {
            plan: BuildPlan {
                run_id,
                num_dbs: plan.num_dbs,
                key_col: key_col.to_owned(),
                routing_values: plan.routing_values.clone(),
                writer_version: WRITER_VERSION.to_owned(),
            },
            registry,
            started,
            sharding_ms: plan.sharding_ms,
        })
    }

    fn emit(&self, event: MetricEvent, fields: &[(&'static str, MetricValue<'_>)]) {
        if let Some(m) = self.config.metrics_collector() {
            m.emit(event, fields);
        }
    }

    /// Write the shards of one build (or, with `shards.owned`, of one engine partition) from
    /// `feed`; on failure every opened shard database is closed first.
    pub(crate) async fn write_shards<F>(
        &self,
        plan: &Plan,
        shards: &Shards<'_>,
        options: &WriteOptions,
        feed: F,
    ) -> Result<Vec<ShardResult>>
    where
        F: AsyncFnOnce(&mut Session<'_>, &Router) -> Result<()>,
    {
        let cfg = &self.config;
        let out = cfg.output();
        // Shard URLs use the canonical form of the prefix (a plain path becomes its absolute
        // file:// URL); the manifest's s3_prefix keeps the string as given.
        let url_prefix = self.resolver.resolve(cfg.s3_prefix())?.url;
        let ctx = ShardCtx {
            factory: self.factory(),
            resolver: self.resolver.clone(),
            s3_prefix: url_prefix,
            shard_prefix: out.shard_prefix.clone(),
            run_id: shards.run_id.to_owned(),
            template: out.db_path_template.clone(),
            local_root: shards.scratch.to_path_buf(),
            batch_size: cfg.batch_size(),
            num_dbs: plan.num_dbs,
            retry: cfg.shard_retry().cloned(),
            max_writes_per_second: options.max_writes_per_second,
            max_write_bytes_per_second: options.max_write_bytes_per_second,
            metrics: cfg.metrics_collector().cloned(),
            started: shards.started,
            given_up: Arc::default(),
            on_duplicate: options.on_duplicate,
        };
        let write_start = Instant::now();
        let mut session = Session::new(&ctx, cfg.key_encoding(), options, shards.owned);
        if let Err(e) = feed(&mut session, &plan.router).await {
            session.abandon().await;
            return Err(e);
        }
        let results = session.finish().await?;
        let rows_total: u64 = results.iter().map(|r| r.row_count).sum();
        self.emit(
            MetricEvent::WriteShardsCompleted,
            &[
                (
                    "elapsed_ms",
                    MetricValue::Int(shards.started.elapsed().as_millis() as i64),
                ),
                (
                    "duration_ms",
                    MetricValue::Int(write_start.elapsed().as_millis() as i64),
                ),
                ("rows_written", MetricValue::Int(rows_total as i64)),
            ],
        );
        Ok(results)
    }

    /// Commit a build's shard results (winners, publish, loser cleanup), then end its run
    /// record.
    pub(crate) async fn commit_results(
        &self,
        build: Build,
        results: Vec<ShardResult>,
        write_ms: u64,
    ) -> Result<BuildResult> {
        let cfg = &self.config;
        let commit = Commit {
            config: cfg,
            store: &self.store,
            resolver: &self.resolver,
            run_id: &build.plan.run_id,
            key_col: &build.plan.key_col,
            num_dbs: build.plan.num_dbs,
            routing_values: build.plan.routing_values.clone(),
            started: build.started,
            sharding_ms: build.sharding_ms,
            write_ms,
            run_record_ref: build.registry.as_ref().map(|r| r.url().to_owned()),
        };
        let result = commit.publish(results).await;
        match &result {
            Ok(r) => self.end(build, Ok(&r.manifest_ref.manifest_ref)).await,
            Err(e) => self.end(build, Err(e)).await,
        }
        result
    }

    /// End a build: its run record (`succeeded` with the manifest ref, or `failed`), its scratch
    /// space, and its attempt claims.
    pub(crate) async fn end(&self, build: Build, outcome: std::result::Result<&str, &Error>) {
        if let Some(reg) = build.registry {
            match outcome {
                Ok(m) => reg.finish(Some(m), None).await,
                Err(e) => reg.finish(None, Some(e)).await,
            }
        }
        self.remove_scratch(&build.plan.run_id).await;
        crate::shard::release_claims(&self.resolver, self.config.s3_prefix(), &build.plan.run_id)
            .await;
    }

    /// Delete this process's local scratch space of a run (spools, attempt dirs).
    pub(crate) async fn remove_scratch(&self, run_id: &str) {
        let dir = self
            .config
            .output()
            .local_root
            .join(format!("run_id={run_id}"));
        let _ = tokio::fs::remove_dir_all(dir).await;
    }
}

/// Which shards a session writes and under which run.
pub(crate) struct Shards<'a> {
    pub(crate) run_id: &'a str,
    /// The shards of an engine partition (`None`: every shard of the build).
    pub(crate) owned: Option<&'a [u32]>,
    pub(crate) started: Instant,
    /// Local scratch root of this session (spools, attempt dirs): the configured `local_root`
    /// for a whole write, a directory of its own for each engine partition (tasks of one
    /// host run side by side and must not share or delete each other's spools).
    pub(crate) scratch: &'a std::path::Path,
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
