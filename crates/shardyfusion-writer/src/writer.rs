//! [`ShardedWriter`]: the configuration of a write and its orchestration: plan the routing,
//! run the run registry, feed the shard session from an input, commit the snapshot.

use std::sync::Arc;
use std::time::Instant;

use shardyfusion_core::{
    Error, ManifestStore, MetricEvent, MetricValue, Result, WriteConfig, WriteOptions,
};
use shardyfusion_storage::StorageResolver;

use crate::adapter::{AdapterFactory, SlateDbFactory, SlateDbOptions};
use crate::publish::Commit;
use crate::registry::RunRegistry;
use crate::result::BuildResult;
use crate::route::{Plan, Router};
use crate::session::Session;
use crate::shard::ShardCtx;

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
                plan,
                key_col,
                options,
                &run_id,
                started,
                registry.as_ref().map(|r| r.url().to_owned()),
                feed,
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
    async fn run_inner<F>(
        &self,
        plan: Plan,
        key_col: &str,
        options: &WriteOptions,
        run_id: &str,
        started: Instant,
        run_record_ref: Option<String>,
        feed: F,
    ) -> Result<BuildResult>
    where
        F: AsyncFnOnce(&mut Session<'_>, &Router) -> Result<()>,
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
        if plan.sharding_ms > 0 {
            emit(
                MetricEvent::WriteShardingCompleted,
                &[
                    ("elapsed_ms", MetricValue::Int(elapsed_ms())),
                    ("duration_ms", MetricValue::Int(plan.sharding_ms as i64)),
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
            num_dbs: plan.num_dbs,
            retry: cfg.shard_retry().cloned(),
            max_writes_per_second: options.max_writes_per_second,
            max_write_bytes_per_second: options.max_write_bytes_per_second,
            metrics: metrics.clone(),
            started,
            given_up: Arc::default(),
            on_duplicate: options.on_duplicate,
        };
        let write_start = Instant::now();
        let mut session = Session::new(&ctx, cfg.key_encoding(), options);
        if let Err(e) = feed(&mut session, &plan.router).await {
            session.abandon().await;
            return Err(e);
        }
        let results = session.finish().await?;
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
        let commit = Commit {
            config: cfg,
            store: &self.store,
            resolver: &self.resolver,
            run_id,
            key_col,
            num_dbs: plan.num_dbs,
            routing_values: plan.routing_values,
            started,
            sharding_ms: plan.sharding_ms,
            write_ms,
            run_record_ref,
        };
        commit.publish(results).await
    }
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
