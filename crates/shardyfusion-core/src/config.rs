//! Write configuration: [`WriteConfig`] (what to build) and [`WriteOptions`] (how, per call),
//! each built with a builder that checks every rule of the specification and names the bad
//! value in its error.
//!
//! ```
//! use shardyfusion_core::{KeyEncoding, WriteConfig};
//! let config = WriteConfig::builder("s3://bucket/datasets/features")
//!     .num_dbs(8)
//!     .key_encoding(KeyEncoding::U64Be)
//!     .build()
//!     .unwrap();
//! assert_eq!(config.num_dbs(), Some(8));
//!
//! let err = WriteConfig::builder("s3://bucket/x").num_dbs(8).batch_size(0).build().unwrap_err();
//! assert!(err.message().contains("batch_size must be > 0, got 0"));
//! ```

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::credentials::{CredentialProvider, S3ConnectionOptions};
use crate::encoding::KeyEncoding;
use crate::error::{Error, Result};
use crate::layout::{DbPathTemplate, PrefixUrl, validate_path_segment, validate_run_id};
use crate::metrics::MetricsCollector;
use crate::model::{CustomFields, ManifestStore};
use crate::sharding::{ShardingSpec, ShardingStrategy};

/// Default rows per adapter write batch.
pub const DEFAULT_BATCH_SIZE: usize = 50_000;

/// Per-shard retry policy: attempts `0..=max_retries`, sleeping
/// `initial_backoff × backoff_multiplier^attempt` after each retryable failure.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RetryConfig {
    /// Retries after the first attempt (default 3).
    pub max_retries: u32,
    /// Sleep before the first retry (default 1 s).
    pub initial_backoff: Duration,
    /// Growth per retry (default 2.0, ≥ 1.0).
    pub backoff_multiplier: f64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_retries: 3,
            initial_backoff: Duration::from_secs(1),
            backoff_multiplier: 2.0,
        }
    }
}

impl RetryConfig {
    /// A validated policy.
    pub fn new(
        max_retries: u32,
        initial_backoff: Duration,
        backoff_multiplier: f64,
    ) -> Result<Self> {
        let c = RetryConfig {
            max_retries,
            initial_backoff,
            backoff_multiplier,
        };
        c.validate()?;
        Ok(c)
    }

    /// Check: multiplier finite and ≥ 1.0.
    pub fn validate(&self) -> Result<()> {
        if !self.backoff_multiplier.is_finite() || self.backoff_multiplier < 1.0 {
            return Err(Error::config(format!(
                "backoff_multiplier must be a finite number >= 1.0, got {}",
                self.backoff_multiplier
            )));
        }
        Ok(())
    }

    /// The sleep after failed attempt `attempt` (0-based), saturating at one day.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = self
            .backoff_multiplier
            .powi(i32::try_from(attempt).unwrap_or(i32::MAX));
        let secs = (self.initial_backoff.as_secs_f64() * factor).min(86_400.0);
        Duration::from_secs_f64(secs)
    }
}

/// Where shard attempts and run records go under the prefix.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct OutputOptions {
    /// Run id (default: a fresh UUIDv4 as 32 hex chars, chosen by the writer).
    pub run_id: Option<String>,
    /// Shard directory segment (default `shards`).
    pub shard_prefix: String,
    /// Shard path template (default `db={db_id:05d}`).
    pub db_path_template: DbPathTemplate,
    /// Run registry segment (default `runs`).
    pub run_registry_prefix: String,
    /// Local scratch directory (default `<temp>/shardyfusion`).
    pub local_root: PathBuf,
}

impl Default for OutputOptions {
    fn default() -> Self {
        OutputOptions {
            run_id: None,
            shard_prefix: "shards".to_owned(),
            db_path_template: DbPathTemplate::default(),
            run_registry_prefix: crate::DEFAULT_RUN_REGISTRY_PREFIX.to_owned(),
            local_root: std::env::temp_dir().join("shardyfusion"),
        }
    }
}

/// The validated configuration of a write. Build it with [`WriteConfig::builder`].
#[derive(Clone)]
pub struct WriteConfig {
    s3_prefix: String,
    num_dbs: Option<u32>,
    key_encoding: KeyEncoding,
    batch_size: usize,
    sharding: ShardingSpec,
    output: OutputOptions,
    manifest_store: Option<Arc<dyn ManifestStore>>,
    custom_manifest_fields: CustomFields,
    manifest_credential_provider: Option<Arc<dyn CredentialProvider>>,
    manifest_s3_connection_options: Option<S3ConnectionOptions>,
    metrics_collector: Option<Arc<dyn MetricsCollector>>,
    shard_retry: Option<RetryConfig>,
    credential_provider: Option<Arc<dyn CredentialProvider>>,
    s3_connection_options: Option<S3ConnectionOptions>,
}

impl fmt::Debug for WriteConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteConfig")
            .field("s3_prefix", &self.s3_prefix)
            .field("num_dbs", &self.num_dbs)
            .field("key_encoding", &self.key_encoding)
            .field("batch_size", &self.batch_size)
            .field("sharding", &self.sharding)
            .field("output", &self.output)
            .field("manifest_store", &self.manifest_store)
            .field("custom_manifest_fields", &self.custom_manifest_fields)
            .field(
                "metrics_collector",
                &self.metrics_collector.as_ref().map(|_| "…"),
            )
            .field("shard_retry", &self.shard_retry)
            .field("credential_provider", &self.credential_provider)
            .field("s3_connection_options", &self.s3_connection_options)
            .finish_non_exhaustive()
    }
}

impl WriteConfig {
    /// Start a configuration for a snapshot under `s3_prefix`.
    pub fn builder(s3_prefix: impl Into<String>) -> WriteConfigBuilder {
        WriteConfigBuilder {
            config: WriteConfig {
                s3_prefix: s3_prefix.into(),
                num_dbs: None,
                key_encoding: KeyEncoding::default(),
                batch_size: DEFAULT_BATCH_SIZE,
                sharding: ShardingSpec::hash(),
                output: OutputOptions::default(),
                manifest_store: None,
                custom_manifest_fields: CustomFields::new(),
                manifest_credential_provider: None,
                manifest_s3_connection_options: None,
                metrics_collector: None,
                shard_retry: None,
                credential_provider: None,
                s3_connection_options: None,
            },
            custom_error: None,
        }
    }

    /// Re-check every rule (writers call this again at write start).
    pub fn validate(&self) -> Result<()> {
        PrefixUrl::parse(&self.s3_prefix)?;
        validate_path_segment("shard_prefix", &self.output.shard_prefix)?;
        validate_path_segment("run_registry_prefix", &self.output.run_registry_prefix)?;
        if let Some(run_id) = &self.output.run_id {
            validate_run_id(run_id)?;
        }
        if self.batch_size == 0 {
            return Err(Error::config("batch_size must be > 0, got 0"));
        }
        self.sharding.validate()?;
        match self.sharding.strategy {
            ShardingStrategy::Hash => match (self.num_dbs, self.sharding.max_keys_per_shard) {
                (Some(0), _) => return Err(Error::config("num_dbs must be > 0, got 0")),
                (Some(n), Some(m)) => {
                    return Err(Error::config(format!(
                        "give exactly one of num_dbs ({n}) and max_keys_per_shard ({m}), not both"
                    )));
                }
                (None, None) => {
                    return Err(Error::config(
                        "HASH sharding needs num_dbs or max_keys_per_shard; neither was given",
                    ));
                }
                _ => {}
            },
            ShardingStrategy::Cel => {
                if let Some(n) = self.num_dbs {
                    return Err(Error::config(format!(
                        "num_dbs ({n}) cannot be given with CEL sharding: it is derived from routing_values or the data"
                    )));
                }
            }
        }
        if let Some(r) = &self.shard_retry {
            r.validate()?;
        }
        for o in [
            &self.s3_connection_options,
            &self.manifest_s3_connection_options,
        ]
        .into_iter()
        .flatten()
        {
            o.validate()?;
        }
        Ok(())
    }

    /// The prefix URL as given.
    pub fn s3_prefix(&self) -> &str {
        &self.s3_prefix
    }
    /// Explicit shard count (HASH).
    pub fn num_dbs(&self) -> Option<u32> {
        self.num_dbs
    }
    /// Key encoding.
    pub fn key_encoding(&self) -> KeyEncoding {
        self.key_encoding
    }
    /// Rows per write batch.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }
    /// Sharding spec.
    pub fn sharding(&self) -> &ShardingSpec {
        &self.sharding
    }
    /// Output layout options.
    pub fn output(&self) -> &OutputOptions {
        &self.output
    }
    /// Manifest store (default: the object store on the prefix, chosen by the writer).
    pub fn manifest_store(&self) -> Option<&Arc<dyn ManifestStore>> {
        self.manifest_store.as_ref()
    }
    /// Custom manifest fields.
    pub fn custom_manifest_fields(&self) -> &CustomFields {
        &self.custom_manifest_fields
    }
    /// Metrics collector.
    pub fn metrics_collector(&self) -> Option<&Arc<dyn MetricsCollector>> {
        self.metrics_collector.as_ref()
    }
    /// Per-shard retry policy (`None` = a single attempt).
    pub fn shard_retry(&self) -> Option<&RetryConfig> {
        self.shard_retry.as_ref()
    }
    /// Credentials for shard and registry objects.
    pub fn credential_provider(&self) -> Option<&Arc<dyn CredentialProvider>> {
        self.credential_provider.as_ref()
    }
    /// Connection options for shard and registry objects.
    pub fn s3_connection_options(&self) -> Option<&S3ConnectionOptions> {
        self.s3_connection_options.as_ref()
    }
    /// Credentials for manifest objects (manifest-level wins over writer-level).
    pub fn manifest_credential_provider(&self) -> Option<&Arc<dyn CredentialProvider>> {
        self.manifest_credential_provider
            .as_ref()
            .or(self.credential_provider.as_ref())
    }
    /// Connection options for manifest objects (manifest-level wins over writer-level).
    pub fn manifest_s3_connection_options(&self) -> Option<&S3ConnectionOptions> {
        self.manifest_s3_connection_options
            .as_ref()
            .or(self.s3_connection_options.as_ref())
    }
}

/// Builder of [`WriteConfig`]; [`build`](Self::build) validates.
#[must_use]
pub struct WriteConfigBuilder {
    config: WriteConfig,
    custom_error: Option<Error>,
}

impl WriteConfigBuilder {
    /// Explicit shard count (HASH only).
    pub fn num_dbs(mut self, n: u32) -> Self {
        self.config.num_dbs = Some(n);
        self
    }
    /// Key encoding (default `u64be`).
    pub fn key_encoding(mut self, e: KeyEncoding) -> Self {
        self.config.key_encoding = e;
        self
    }
    /// Rows per write batch (default 50 000).
    pub fn batch_size(mut self, n: usize) -> Self {
        self.config.batch_size = n;
        self
    }
    /// Sharding spec (default HASH).
    pub fn sharding(mut self, spec: ShardingSpec) -> Self {
        self.config.sharding = spec;
        self
    }
    /// Fixed run id.
    pub fn run_id(mut self, run_id: impl Into<String>) -> Self {
        self.config.output.run_id = Some(run_id.into());
        self
    }
    /// Shard directory segment.
    pub fn shard_prefix(mut self, s: impl Into<String>) -> Self {
        self.config.output.shard_prefix = s.into();
        self
    }
    /// Run registry segment.
    pub fn run_registry_prefix(mut self, s: impl Into<String>) -> Self {
        self.config.output.run_registry_prefix = s.into();
        self
    }
    /// Shard path template (parsed and checked by [`build`](Self::build)).
    pub fn db_path_template(mut self, template: &str) -> Self {
        match DbPathTemplate::parse(template) {
            Ok(t) => self.config.output.db_path_template = t,
            Err(e) => self.custom_error = self.custom_error.or(Some(e)),
        }
        self
    }
    /// Local scratch directory.
    pub fn local_root(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config.output.local_root = dir.into();
        self
    }
    /// Manifest store (default: the object store on the prefix).
    pub fn manifest_store(mut self, store: Arc<dyn ManifestStore>) -> Self {
        self.config.manifest_store = Some(store);
        self
    }
    /// Custom manifest fields; must be a JSON object.
    pub fn custom_manifest_fields(mut self, fields: serde_json::Value) -> Self {
        match fields {
            serde_json::Value::Object(map) => self.config.custom_manifest_fields = map,
            other => {
                let e = Error::config(format!(
                    "custom_manifest_fields must be a JSON object, got {other}"
                ));
                self.custom_error = self.custom_error.or(Some(e));
            }
        }
        self
    }
    /// Credentials for manifest objects only.
    pub fn manifest_credential_provider(mut self, p: Arc<dyn CredentialProvider>) -> Self {
        self.config.manifest_credential_provider = Some(p);
        self
    }
    /// Connection options for manifest objects only.
    pub fn manifest_s3_connection_options(mut self, o: S3ConnectionOptions) -> Self {
        self.config.manifest_s3_connection_options = Some(o);
        self
    }
    /// Metrics collector.
    pub fn metrics_collector(mut self, c: Arc<dyn MetricsCollector>) -> Self {
        self.config.metrics_collector = Some(c);
        self
    }
    /// Per-shard retries.
    pub fn shard_retry(mut self, r: RetryConfig) -> Self {
        self.config.shard_retry = Some(r);
        self
    }
    /// Credentials for every object the writer touches.
    pub fn credential_provider(mut self, p: Arc<dyn CredentialProvider>) -> Self {
        self.config.credential_provider = Some(p);
        self
    }
    /// Connection options for every object the writer touches.
    pub fn s3_connection_options(mut self, o: S3ConnectionOptions) -> Self {
        self.config.s3_connection_options = Some(o);
        self
    }

    /// Validate and return the configuration.
    pub fn build(self) -> Result<WriteConfig> {
        if let Some(e) = self.custom_error {
            return Err(e);
        }
        self.config.validate()?;
        Ok(self.config)
    }
}

/// Default [`WriteOptions::max_total_batched_bytes`]: 64 MiB buffered across all shards.
pub const DEFAULT_MAX_TOTAL_BATCHED_BYTES: usize = 64 << 20;

/// Per-call options of a write. Build with [`WriteOptions::builder`]; the defaults are the
/// specification's.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct WriteOptions {
    /// One worker per shard (default false: one pass, shards opened on first flush).
    pub parallel: bool,
    /// Bounded channel size per worker, in messages (default 100).
    pub max_queue_size: usize,
    /// Global cap on bytes queued to workers (default 256 MiB).
    pub max_parallel_bytes_in_flight: usize,
    /// Per-worker cap on queued bytes (default 32 MiB).
    pub max_parallel_bytes_per_worker: usize,
    /// Rows per second per shard attempt.
    pub max_writes_per_second: Option<f64>,
    /// Key+value bytes per second per shard attempt.
    pub max_write_bytes_per_second: Option<f64>,
    /// Cap on rows buffered across shards before they go to their shards (default none: each
    /// shard buffers up to `batch_size` rows). Each shard gets an equal share.
    pub max_total_batched_items: Option<usize>,
    /// Cap on bytes buffered across shards before they go to their shards (default
    /// [`DEFAULT_MAX_TOTAL_BATCHED_BYTES`]; each shard gets an equal share, at least 64 KiB).
    /// Every shard of a write fills its buffer at once, so without a cap that memory grows
    /// with the shard count (64 shards × 50,000 rows of 108 bytes is 345 MB).
    pub max_total_batched_bytes: Option<usize>,
    /// Sort each shard's rows by logical key before writing.
    pub sort_within_partitions: bool,
    /// Check caller-assigned shard ids (default true).
    pub verify_routing: bool,
    /// Name of the caller-assigned shard id column (default `_shard_id`).
    pub shard_id_col: String,
    /// How many rows the input holds, when known before the first row (a streaming write with
    /// `max_keys_per_shard` needs it to choose `num_dbs`; Parquet footers give it).
    pub expected_rows: Option<u64>,
    /// What a repeated key in the input does (default: the last one wins, and repeats found
    /// are counted in the result).
    pub on_duplicate: DuplicateKeys,
}

/// What a key that appears more than once in the input does. Repeats are found within each
/// batch a shard writes (keys are sorted there); a repeat split across two batches is not seen,
/// and the later row still wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DuplicateKeys {
    /// The row written last wins; repeats found are counted (`BuildStats::duplicate_keys`).
    #[default]
    KeepLast,
    /// A repeated key fails the write (`ConfigValidation` naming the key); nothing is published.
    Error,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            parallel: false,
            max_queue_size: 100,
            max_parallel_bytes_in_flight: 256 * 1024 * 1024,
            max_parallel_bytes_per_worker: 32 * 1024 * 1024,
            max_writes_per_second: None,
            max_write_bytes_per_second: None,
            max_total_batched_items: None,
            max_total_batched_bytes: Some(DEFAULT_MAX_TOTAL_BATCHED_BYTES),
            sort_within_partitions: false,
            verify_routing: true,
            shard_id_col: "_shard_id".to_owned(),
            expected_rows: None,
            on_duplicate: DuplicateKeys::KeepLast,
        }
    }
}

impl WriteOptions {
    /// Start from the defaults.
    pub fn builder() -> WriteOptionsBuilder {
        WriteOptionsBuilder {
            options: WriteOptions::default(),
        }
    }

    /// Check every option (values > 0 when set; `shard_id_col` non-empty).
    pub fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("max_queue_size", Some(self.max_queue_size)),
            (
                "max_parallel_bytes_in_flight",
                Some(self.max_parallel_bytes_in_flight),
            ),
            (
                "max_parallel_bytes_per_worker",
                Some(self.max_parallel_bytes_per_worker),
            ),
            ("max_total_batched_items", self.max_total_batched_items),
            ("max_total_batched_bytes", self.max_total_batched_bytes),
        ] {
            if v == Some(0) {
                return Err(Error::config(format!("{name} must be > 0, got 0")));
            }
        }
        for (name, v) in [
            ("max_writes_per_second", self.max_writes_per_second),
            (
                "max_write_bytes_per_second",
                self.max_write_bytes_per_second,
            ),
        ] {
            if let Some(rate) = v
                && !(rate.is_finite() && rate > 0.0)
            {
                return Err(Error::config(format!(
                    "{name} must be a finite number > 0, got {rate}"
                )));
            }
        }
        if self.shard_id_col.is_empty() {
            return Err(Error::config("shard_id_col must not be empty"));
        }
        Ok(())
    }

    /// Check `shard_id_col` against the input's column names.
    pub fn check_columns<'a>(&self, columns: impl IntoIterator<Item = &'a str>) -> Result<()> {
        if let Some(c) = columns.into_iter().find(|c| *c == self.shard_id_col) {
            return Err(Error::config(format!(
                "shard_id_col {c:?} collides with an input column of the same name; choose another shard_id_col"
            )));
        }
        Ok(())
    }
}

/// Builder of [`WriteOptions`].
#[must_use]
#[derive(Debug, Clone)]
pub struct WriteOptionsBuilder {
    options: WriteOptions,
}

impl WriteOptionsBuilder {
    /// What a repeated key does.
    pub fn on_duplicate(mut self, policy: DuplicateKeys) -> Self {
        self.options.on_duplicate = policy;
        self
    }
    /// The input's row count, when known up front.
    pub fn expected_rows(mut self, n: u64) -> Self {
        self.options.expected_rows = Some(n);
        self
    }
    /// One worker per shard.
    pub fn parallel(mut self, on: bool) -> Self {
        self.options.parallel = on;
        self
    }
    /// Channel size per worker.
    pub fn max_queue_size(mut self, n: usize) -> Self {
        self.options.max_queue_size = n;
        self
    }
    /// Global cap on queued bytes.
    pub fn max_parallel_bytes_in_flight(mut self, n: usize) -> Self {
        self.options.max_parallel_bytes_in_flight = n;
        self
    }
    /// Per-worker cap on queued bytes.
    pub fn max_parallel_bytes_per_worker(mut self, n: usize) -> Self {
        self.options.max_parallel_bytes_per_worker = n;
        self
    }
    /// Rows per second per shard attempt.
    pub fn max_writes_per_second(mut self, rate: f64) -> Self {
        self.options.max_writes_per_second = Some(rate);
        self
    }
    /// Bytes per second per shard attempt.
    pub fn max_write_bytes_per_second(mut self, rate: f64) -> Self {
        self.options.max_write_bytes_per_second = Some(rate);
        self
    }
    /// Cap on buffered rows across shards.
    pub fn max_total_batched_items(mut self, n: usize) -> Self {
        self.options.max_total_batched_items = Some(n);
        self
    }
    /// Cap on buffered bytes across shards.
    pub fn max_total_batched_bytes(mut self, n: usize) -> Self {
        self.options.max_total_batched_bytes = Some(n);
        self
    }
    /// Sort each shard's rows by key.
    pub fn sort_within_partitions(mut self, on: bool) -> Self {
        self.options.sort_within_partitions = on;
        self
    }
    /// Check caller-assigned shard ids.
    pub fn verify_routing(mut self, on: bool) -> Self {
        self.options.verify_routing = on;
        self
    }
    /// Name of the caller-assigned shard id column.
    pub fn shard_id_col(mut self, name: impl Into<String>) -> Self {
        self.options.shard_id_col = name.into();
        self
    }
    /// Validate and return the options.
    pub fn build(self) -> Result<WriteOptions> {
        self.options.validate()?;
        Ok(self.options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_backoff() {
        let r = RetryConfig::default();
        let b: Vec<_> = (0..3).map(|a| r.backoff(a).as_secs_f64()).collect();
        assert_eq!(b, [1.0, 2.0, 4.0]);
        assert_eq!(r.max_retries, 3);
        assert_eq!(r.backoff(10_000), Duration::from_secs(86_400));
    }

    #[test]
    fn manifest_level_options_win() {
        let c = WriteConfig::builder("memory://t/p")
            .num_dbs(1)
            .s3_connection_options(S3ConnectionOptions::new().with_region("a"))
            .manifest_s3_connection_options(S3ConnectionOptions::new().with_region("b"))
            .build()
            .unwrap();
        assert_eq!(
            c.manifest_s3_connection_options()
                .and_then(|o| o.region_name.as_deref()),
            Some("b")
        );
        assert_eq!(
            c.s3_connection_options()
                .and_then(|o| o.region_name.as_deref()),
            Some("a")
        );
        assert!(format!("{c:?}").contains("memory://t/p"));
    }
}
