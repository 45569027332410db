//! # shardyfusion-core
//!
//! The sans-I/O heart of shardyfusion: everything both the write path and the read path agree
//! on, with no runtime, no network and no files.
//!
//! * **Keys and routing** — [`Key`]/[`KeyRef`] (int, string, bytes), their canonical bytes, and
//!   HASH routing `db_id = xxh3_64(canonical_bytes) % num_dbs` ([`HashRouter`]).
//! * **Key encodings** — [`KeyEncoding`] (`u64be`, `u32be`, `utf8`, `raw`): the bytes stored in
//!   shards, with the reader-side lookup rules.
//! * **Sharding specs** — [`ShardingSpec`] for HASH and CEL (the CEL engine itself is in
//!   `shardyfusion-cel`).
//! * **Configuration** — [`WriteConfig`] and [`WriteOptions`] builders that validate every rule;
//!   [`RetryConfig`]; prefix URLs and the object layout ([`PrefixUrl`], [`url_join`],
//!   [`DbPathTemplate`]).
//! * **Errors** — one [`Error`] with a coarse [`ErrorKind`] and [`Error::is_retryable`].
//! * **Metrics** — stable [`MetricEvent`] names and the [`MetricsCollector`] trait.
//! * **Credentials** — [`CredentialProvider`]s whose `Debug` never prints a secret, and
//!   [`S3ConnectionOptions`].
//! * **Manifest model** — [`RequiredBuildMeta`], [`RequiredShardMeta`], [`ManifestRef`],
//!   [`CurrentPointer`] and the object-safe async [`ManifestStore`] trait the store crates
//!   implement.
//! * **Database stores** — [`sql_store`]: the one implementation of the PostgreSQL and SQLite
//!   manifest stores over a blocking [`sql_store::SqlBackend`] that each store crate provides.
//!
//! Layering: every other crate depends on this one; this one depends on no workspace crate and
//! on no I/O crate (checked by `cargo xtask tidy`).
//!
//! ```
//! use shardyfusion_core::{HashRouter, KeyEncoding, KeyRef};
//!
//! let router = HashRouter::new(8)?;
//! let key = KeyRef::Int(42);
//! assert_eq!(router.db_id(key), 0);
//! assert_eq!(KeyEncoding::U64Be.encode(key)?, 42u64.to_be_bytes());
//! // Strings and bytes with the same content route alike.
//! assert_eq!(router.db_id(KeyRef::Str("hello")), router.db_id(KeyRef::Bytes(b"hello")));
//! # Ok::<(), shardyfusion_core::Error>(())
//! ```

#![deny(missing_docs)]

pub mod codec;
mod config;
mod credentials;
mod encoding;
mod error;
mod key;
mod layout;
pub mod metrics;
mod model;
pub mod pyjson;
mod sharding;
pub mod sql_store;
mod time;
mod trust;

pub use config::{
    DEFAULT_BATCH_SIZE, DEFAULT_MAX_TOTAL_BATCHED_BYTES, DuplicateKeys, OutputOptions, RetryConfig,
    WriteConfig, WriteConfigBuilder, WriteOptions, WriteOptionsBuilder,
};
pub use credentials::{
    AddressingStyle, CredentialProvider, EnvCredentialProvider, EnvLookup, S3ConnectionOptions,
    S3Credentials, SecretString, StaticCredentialProvider, VerifySsl, process_env,
};
pub use encoding::{KeyEncoding, KeyFormat};
pub use error::{BoxError, Error, ErrorKind, Result};
pub use key::{
    HASH_ALGORITHM, HashRouter, Key, KeyRef, check_hash_algorithm, hash_db_id, xxh3_digest,
};
pub use layout::{
    DEFAULT_DB_PATH_TEMPLATE, DEFAULT_RUN_REGISTRY_PREFIX, DbPathTemplate, MAX_RUN_ID_LEN,
    PrefixUrl, attempt_claim_url, attempt_claims_dir, attempt_segment, parse_attempt_claim,
    run_id_of_record_dir, run_record_dir, shard_attempt_url, url_join, validate_path_segment,
    validate_run_id,
};
pub use metrics::{MetricEvent, MetricValue, MetricsCollector};
pub use model::{
    CURRENT_POINTER_KEY, CurrentPointer, CustomFields, DEFAULT_KEY_COL, FORMAT_VERSION,
    MANIFEST_CONTENT_TYPE, ManifestRef, ManifestSharding, ManifestStore, NoopPublishObserver,
    ParsedManifest, PublishObserver, RequiredBuildMeta, RequiredShardMeta, WriterInfo,
};
pub use sharding::{
    CelColumnType, RoutingValue, ShardingSpec, ShardingStrategy, sort_routing_values,
    validate_routing_values,
};
pub use time::Timestamp;
pub use trust::{
    UrlBoundary, confine_manifest, confine_to_recorded_prefix, rebase_url,
    validate_allowed_url_prefixes,
};

#[doc(hidden)]
pub mod reference;
