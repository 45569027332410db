//! The Python configuration objects (sent as JSON by `shardyfusion_rs`) as the Rust writer's
//! and readers' configuration.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use shardyfusion::reader::{ConcurrentOptions, ReaderOptions, ThreadSafety};
use shardyfusion::storage::StorageResolver;
use shardyfusion::writer::ValueSpec;
use shardyfusion::{
    AddressingStyle, CelColumnType, DuplicateKeys, Error, KeyEncoding, ManifestStoreSpec, Result,
    RetryConfig, RoutingValue, S3ConnectionOptions, ShardingSpec, StaticCredentialProvider,
    VerifySsl, WriteConfig, WriteOptions,
};

/// Parse one JSON document sent by the Python layer.
pub(crate) fn parse<T: for<'de> Deserialize<'de>>(what: &str, json: &str) -> Result<T> {
    serde_json::from_str(json).map_err(|e| Error::config(format!("invalid {what}: {e}")))
}

/// Static credentials.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Credentials {
    access_key_id: String,
    secret_access_key: String,
    #[serde(default)]
    session_token: Option<String>,
}

/// `S3ConnectionOptions` with the Python library's names; `verify_ssl` is a bool or a CA
/// bundle path; timeouts are seconds.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct S3Options {
    #[serde(default)]
    endpoint_url: Option<String>,
    #[serde(default)]
    region_name: Option<String>,
    #[serde(default)]
    addressing_style: Option<String>,
    #[serde(default)]
    signature_version: Option<String>,
    #[serde(default)]
    verify_ssl: Option<serde_json::Value>,
    #[serde(default)]
    connect_timeout: Option<f64>,
    #[serde(default)]
    read_timeout: Option<f64>,
    #[serde(default)]
    max_attempts: Option<u32>,
    #[serde(default)]
    anonymous: bool,
}

fn seconds(what: &str, s: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(s).map_err(|_| {
        Error::config(format!(
            "{what} must be a non-negative number of seconds, got {s}"
        ))
    })
}

impl S3Options {
    fn to_rust(&self) -> Result<S3ConnectionOptions> {
        let mut o = S3ConnectionOptions::new();
        if let Some(e) = &self.endpoint_url {
            o = o.with_endpoint_url(e);
        }
        if let Some(r) = &self.region_name {
            o = o.with_region(r);
        }
        if let Some(a) = &self.addressing_style {
            o = o.with_addressing_style(a.parse::<AddressingStyle>()?);
        }
        o.signature_version = self.signature_version.clone();
        match &self.verify_ssl {
            None | Some(serde_json::Value::Null) | Some(serde_json::Value::Bool(true)) => {}
            Some(serde_json::Value::Bool(false)) => o = o.with_verify_ssl(VerifySsl::Skip),
            Some(serde_json::Value::String(p)) => {
                o = o.with_verify_ssl(VerifySsl::CaBundle(p.into()))
            }
            Some(other) => {
                return Err(Error::config(format!(
                    "verify_ssl must be true, false or a CA bundle path, got {other}"
                )));
            }
        }
        if let Some(s) = self.connect_timeout {
            o = o.with_connect_timeout(seconds("connect_timeout", s)?);
        }
        if let Some(s) = self.read_timeout {
            o = o.with_read_timeout(seconds("read_timeout", s)?);
        }
        if let Some(n) = self.max_attempts {
            o = o.with_max_attempts(n);
        }
        o = o.with_anonymous(self.anonymous);
        o.validate()?;
        Ok(o)
    }
}

/// How shard and manifest URLs reach storage.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Storage {
    #[serde(default)]
    credentials: Option<Credentials>,
    #[serde(default)]
    s3_connection_options: Option<S3Options>,
}

impl Storage {
    fn provider(&self) -> Option<Arc<StaticCredentialProvider>> {
        self.credentials.as_ref().map(|c| {
            Arc::new(StaticCredentialProvider::new(
                c.access_key_id.clone(),
                c.secret_access_key.clone(),
                c.session_token.clone().map(Into::into),
            ))
        })
    }

    fn options(&self) -> Result<Option<S3ConnectionOptions>> {
        self.s3_connection_options
            .as_ref()
            .map(S3Options::to_rust)
            .transpose()
    }

    pub(crate) fn resolver(&self) -> Result<StorageResolver> {
        let mut b = StorageResolver::builder();
        if let Some(p) = self.provider() {
            b = b.credential_provider(p);
        }
        if let Some(o) = self.options()? {
            b = b.s3_options(o);
        }
        Ok(b.build())
    }
}

/// The manifest store: the object store under the prefix unless another is named.
fn store_spec(prefix: &str, spec: Option<ManifestStoreSpec>) -> ManifestStoreSpec {
    spec.unwrap_or_else(|| ManifestStoreSpec::object_store(prefix))
}

/// HASH or CEL sharding.
#[derive(Debug, Deserialize)]
#[serde(tag = "strategy", rename_all = "snake_case", deny_unknown_fields)]
enum Sharding {
    Hash {
        #[serde(default)]
        max_keys_per_shard: Option<u64>,
    },
    Cel {
        cel_expr: String,
        cel_columns: BTreeMap<String, String>,
        #[serde(default)]
        routing_values: Option<Vec<RoutingJson>>,
        #[serde(default)]
        infer_routing_values: bool,
    },
}

/// A routing value as JSON: an integer or a string.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RoutingJson {
    Int(i64),
    Str(String),
}

impl Sharding {
    fn to_rust(&self) -> Result<ShardingSpec> {
        Ok(match self {
            Sharding::Hash {
                max_keys_per_shard: None,
            } => ShardingSpec::hash(),
            Sharding::Hash {
                max_keys_per_shard: Some(n),
            } => ShardingSpec::hash_with_max_keys_per_shard(*n),
            Sharding::Cel {
                cel_expr,
                cel_columns,
                routing_values,
                infer_routing_values,
            } => {
                let columns = cel_columns
                    .iter()
                    .map(|(k, t)| Ok((k.clone(), t.parse::<CelColumnType>()?)))
                    .collect::<Result<Vec<_>>>()?;
                let mut spec = ShardingSpec::cel(cel_expr.clone(), columns);
                if let Some(values) = routing_values {
                    spec = spec.with_routing_values(values.iter().map(|v| match v {
                        RoutingJson::Int(i) => RoutingValue::Int(*i),
                        RoutingJson::Str(s) => RoutingValue::Str(s.clone()),
                    }));
                }
                if *infer_routing_values {
                    spec = spec.infer_routing_values();
                }
                spec
            }
        })
    }
}

/// Shard retries.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Retry {
    max_retries: u32,
    initial_backoff_s: f64,
    backoff_multiplier: f64,
}

/// `WriteConfig` of the Python layer.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Write {
    s3_prefix: String,
    #[serde(default)]
    num_dbs: Option<u32>,
    key_encoding: String,
    #[serde(default)]
    batch_size: Option<usize>,
    sharding: Sharding,
    #[serde(default)]
    run_id: Option<String>,
    #[serde(default)]
    shard_prefix: Option<String>,
    #[serde(default)]
    local_root: Option<String>,
    #[serde(default)]
    custom_manifest_fields: Option<serde_json::Value>,
    #[serde(default)]
    manifest_store: Option<ManifestStoreSpec>,
    #[serde(default)]
    shard_retry: Option<Retry>,
    #[serde(flatten)]
    storage: Storage,
}

impl Write {
    /// The Rust configuration, its manifest store opened.
    pub(crate) fn to_rust(&self) -> Result<WriteConfig> {
        let resolver = self.storage.resolver()?;
        let store = store_spec(&self.s3_prefix, self.manifest_store.clone()).open(resolver, &[])?;
        let mut b = WriteConfig::builder(self.s3_prefix.clone())
            .key_encoding(self.key_encoding.parse::<KeyEncoding>()?)
            .sharding(self.sharding.to_rust()?)
            .manifest_store(store);
        if let Some(n) = self.num_dbs {
            b = b.num_dbs(n);
        }
        if let Some(n) = self.batch_size {
            b = b.batch_size(n);
        }
        if let Some(r) = &self.run_id {
            b = b.run_id(r.clone());
        }
        if let Some(p) = &self.shard_prefix {
            b = b.shard_prefix(p.clone());
        }
        if let Some(d) = &self.local_root {
            b = b.local_root(d);
        }
        if let Some(f) = &self.custom_manifest_fields {
            b = b.custom_manifest_fields(f.clone());
        }
        if let Some(r) = &self.shard_retry {
            b = b.shard_retry(RetryConfig::new(
                r.max_retries,
                seconds("initial_backoff_s", r.initial_backoff_s)?,
                r.backoff_multiplier,
            )?);
        }
        if let Some(p) = self.storage.provider() {
            b = b.credential_provider(p);
        }
        if let Some(o) = self.storage.options()? {
            b = b.s3_connection_options(o);
        }
        b.build()
    }
}

/// Per-write options of the Python layer (the Python library's names).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Options {
    #[serde(default)]
    parallel: Option<bool>,
    #[serde(default)]
    max_writes_per_second: Option<f64>,
    #[serde(default)]
    max_write_bytes_per_second: Option<f64>,
    #[serde(default)]
    max_total_batched_bytes: Option<usize>,
    #[serde(default)]
    sort_within_partitions: bool,
    #[serde(default)]
    expected_rows: Option<u64>,
    #[serde(default)]
    on_duplicate: Option<String>,
}

impl Options {
    pub(crate) fn to_rust(&self) -> Result<WriteOptions> {
        let mut b = WriteOptions::builder().sort_within_partitions(self.sort_within_partitions);
        if let Some(p) = self.parallel {
            b = b.parallel(p);
        }
        if let Some(r) = self.max_writes_per_second {
            b = b.max_writes_per_second(r);
        }
        if let Some(r) = self.max_write_bytes_per_second {
            b = b.max_write_bytes_per_second(r);
        }
        if let Some(n) = self.max_total_batched_bytes {
            b = b.max_total_batched_bytes(n);
        }
        if let Some(n) = self.expected_rows {
            b = b.expected_rows(n);
        }
        match self.on_duplicate.as_deref() {
            None | Some("keep_last") => {}
            Some("error") => b = b.on_duplicate(DuplicateKeys::Error),
            Some(other) => {
                return Err(Error::config(format!(
                    "on_duplicate must be \"keep_last\" or \"error\", got {other:?}"
                )));
            }
        }
        b.build()
    }
}

/// `ValueSpec` of the Python layer.
#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum Value {
    BinaryCol { column: String },
    JsonCols { columns: Option<Vec<String>> },
}

impl Value {
    pub(crate) fn to_rust(&self) -> ValueSpec {
        match self {
            Value::BinaryCol { column } => ValueSpec::BinaryColumn(column.clone()),
            Value::JsonCols { columns } => ValueSpec::JsonColumns(columns.clone()),
        }
    }
}

/// Reader options of the Python layer.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Reader {
    #[serde(default)]
    s3_prefix: Option<String>,
    #[serde(default)]
    manifest_store: Option<ManifestStoreSpec>,
    #[serde(default)]
    manifest_ref: Option<String>,
    #[serde(default)]
    allowed_url_prefixes: Vec<String>,
    #[serde(default)]
    max_workers: Option<usize>,
    #[serde(default)]
    max_concurrency: Option<usize>,
    #[serde(default)]
    max_fallback_attempts: Option<usize>,
    #[serde(default)]
    thread_safety: Option<String>,
    #[serde(default)]
    pool_checkout_timeout: Option<f64>,
    #[serde(default)]
    cache_bytes: Option<u64>,
    #[serde(flatten)]
    storage: Storage,
}

/// What opening a reader needs.
pub(crate) struct ReaderSetup {
    pub(crate) store: Arc<dyn shardyfusion::ManifestStore>,
    pub(crate) manifest_ref: Option<String>,
    pub(crate) options: ReaderOptions,
    pub(crate) concurrent: ConcurrentOptions,
}

impl Reader {
    pub(crate) fn to_rust(&self) -> Result<ReaderSetup> {
        let resolver = self.storage.resolver()?;
        let spec = match (&self.manifest_store, &self.s3_prefix) {
            (Some(s), _) => s.clone(),
            (None, Some(p)) => ManifestStoreSpec::object_store(p.clone()),
            (None, None) => {
                return Err(Error::config(
                    "a reader needs s3_prefix or manifest_store: where was the snapshot published?",
                ));
            }
        };
        let store = spec.open(resolver.clone(), &self.allowed_url_prefixes)?;
        let mut options = ReaderOptions::default().with_storage(resolver);
        if let Some(n) = self.max_concurrency {
            options = options.with_max_concurrency(n);
        }
        if let Some(n) = self.max_fallback_attempts {
            options = options.with_max_fallback_attempts(n);
        }
        if let Some(n) = self.cache_bytes {
            options = options.with_cache_bytes(n);
        }
        let mut concurrent = ConcurrentOptions::default();
        if let Some(t) = &self.thread_safety {
            concurrent = concurrent.with_thread_safety(t.parse::<ThreadSafety>()?);
        }
        if let Some(n) = self.max_workers {
            if n == 0 {
                return Err(Error::config("max_workers must be at least 1, got 0"));
            }
            concurrent = concurrent.with_max_in_flight(n);
        }
        if let Some(s) = self.pool_checkout_timeout {
            concurrent = concurrent.with_checkout_timeout(seconds("pool_checkout_timeout", s)?);
        }
        Ok(ReaderSetup {
            store,
            manifest_ref: self.manifest_ref.clone(),
            options,
            concurrent,
        })
    }
}
