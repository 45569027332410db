//! The manifest model (format v4) and the [`ManifestStore`] trait that store crates implement.
//!
//! These are plain data records mirroring the versioned snapshot format, so their fields are
//! public; the format crate (`shardyfusion-manifest`) turns them into bytes and back.

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;

use crate::encoding::KeyEncoding;
use crate::error::{Error, Result};
use crate::key::{HASH_ALGORITHM, Key};
use crate::layout::{DEFAULT_DB_PATH_TEMPLATE, validate_run_id};
use crate::sharding::{CelColumnType, RoutingValue, ShardingSpec, ShardingStrategy};
use crate::time::Timestamp;

/// The manifest format this library writes and reads.
pub const FORMAT_VERSION: u32 = 4;
/// Content type of manifest objects.
pub const MANIFEST_CONTENT_TYPE: &str = "application/x-sqlite3";
/// Default key of the current pointer under a prefix.
pub const CURRENT_POINTER_KEY: &str = "_CURRENT";
/// `key_col` recorded for record-iterator writes.
pub const DEFAULT_KEY_COL: &str = "_key";

/// JSON object of caller-supplied custom manifest fields.
pub type CustomFields = serde_json::Map<String, serde_json::Value>;

/// The sharding facts recorded in a manifest (the `sharding` JSON column).
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestSharding {
    /// `hash` or `cel`.
    pub strategy: ShardingStrategy,
    /// CEL expression (CEL only).
    pub cel_expr: Option<String>,
    /// Declared CEL columns (CEL only).
    pub cel_columns: Option<BTreeMap<String, CelColumnType>>,
    /// Categorical tokens in `db_id` order (`None` = HASH or direct mode).
    pub routing_values: Option<Vec<RoutingValue>>,
}

impl ManifestSharding {
    /// HASH sharding.
    pub fn hash() -> Self {
        ManifestSharding {
            strategy: ShardingStrategy::Hash,
            cel_expr: None,
            cel_columns: None,
            routing_values: None,
        }
    }

    /// The manifest form of a write-side spec (with inferred routing values already resolved).
    pub fn from_spec(spec: &ShardingSpec, routing_values: Option<Vec<RoutingValue>>) -> Self {
        match spec.strategy {
            ShardingStrategy::Hash => ManifestSharding::hash(),
            ShardingStrategy::Cel => ManifestSharding {
                strategy: ShardingStrategy::Cel,
                cel_expr: spec.cel_expr.clone(),
                cel_columns: Some(spec.cel_columns.clone()),
                routing_values: routing_values.or_else(|| spec.routing_values.clone()),
            },
        }
    }

    /// Always `xxh3_64` in format v4.
    pub fn hash_algorithm(&self) -> &'static str {
        HASH_ALGORITHM
    }
}

/// The `build_meta` row.
#[derive(Debug, Clone, PartialEq)]
pub struct RequiredBuildMeta {
    /// Run id.
    pub run_id: String,
    /// Manifest build time.
    pub created_at: Timestamp,
    /// Number of shards (> 0).
    pub num_dbs: u32,
    /// The prefix URL exactly as the caller gave it.
    pub s3_prefix: String,
    /// `_key` for record-iterator writes, else the key column name.
    pub key_col: String,
    /// Sharding facts.
    pub sharding: ManifestSharding,
    /// Shard path template (verbatim).
    pub db_path_template: String,
    /// Shard prefix segment.
    pub shard_prefix: String,
    /// Always [`FORMAT_VERSION`] when written.
    pub format_version: u32,
    /// Key encoding.
    pub key_encoding: KeyEncoding,
    /// Custom fields.
    pub custom: CustomFields,
}

impl RequiredBuildMeta {
    /// A build row with defaults for a HASH snapshot; adjust the public fields as needed.
    pub fn new(run_id: impl Into<String>, num_dbs: u32, s3_prefix: impl Into<String>) -> Self {
        RequiredBuildMeta {
            run_id: run_id.into(),
            created_at: Timestamp::now(),
            num_dbs,
            s3_prefix: s3_prefix.into(),
            key_col: DEFAULT_KEY_COL.to_owned(),
            sharding: ManifestSharding::hash(),
            db_path_template: DEFAULT_DB_PATH_TEMPLATE.to_owned(),
            shard_prefix: "shards".to_owned(),
            format_version: FORMAT_VERSION,
            key_encoding: KeyEncoding::U64Be,
            custom: CustomFields::new(),
        }
    }

    /// Check the rules every store enforces before publishing.
    pub fn validate(&self) -> Result<()> {
        validate_run_id(&self.run_id)?;
        if self.num_dbs == 0 {
            return Err(Error::new(
                crate::ErrorKind::ManifestBuild,
                "num_dbs must be > 0, got 0",
            ));
        }
        Ok(())
    }
}

/// Per-attempt writer facts (the `writer_info` JSON column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WriterInfo {
    /// Attempt number.
    pub attempt: i64,
    /// Attempt wall time in milliseconds.
    pub duration_ms: i64,
    /// Spark stage id (Python writers only).
    pub stage_id: Option<i64>,
    /// Spark task attempt id (Python writers only).
    pub task_attempt_id: Option<i64>,
}

/// One `shards` row.
#[derive(Debug, Clone, PartialEq)]
pub struct RequiredShardMeta {
    /// Shard id, `0 <= db_id < num_dbs`.
    pub db_id: u32,
    /// Winning attempt URL (`None` = empty shard).
    pub db_url: Option<String>,
    /// Winning attempt number.
    pub attempt: u32,
    /// Rows in the shard.
    pub row_count: u64,
    /// Materialized size (SlateDB writers report 0).
    pub db_bytes: u64,
    /// Smallest logical key (integer or string; byte keys are stored as their UTF-8 text).
    pub min_key: Option<Key>,
    /// Largest logical key.
    pub max_key: Option<Key>,
    /// Opaque writer stamp (never a SlateDB checkpoint).
    pub checkpoint_id: Option<String>,
    /// Writer facts.
    pub writer_info: WriterInfo,
}

impl RequiredShardMeta {
    /// The synthesized row of an empty shard (absent from the manifest).
    pub fn empty(db_id: u32) -> Self {
        RequiredShardMeta {
            db_id,
            db_url: None,
            attempt: 0,
            row_count: 0,
            db_bytes: 0,
            min_key: None,
            max_key: None,
            checkpoint_id: None,
            writer_info: WriterInfo::default(),
        }
    }

    /// Whether this shard holds no database.
    pub fn is_empty(&self) -> bool {
        self.db_url.is_none()
    }
}

/// A loaded and validated manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedManifest {
    /// The build row.
    pub build: RequiredBuildMeta,
    /// The shard rows present in the manifest, ascending by `db_id` (sparse: empty shards may be
    /// absent).
    pub shards: Vec<RequiredShardMeta>,
}

impl ParsedManifest {
    /// Custom fields.
    pub fn custom(&self) -> &CustomFields {
        &self.build.custom
    }

    /// The row of `db_id`, or a synthesized empty shard when absent.
    pub fn shard(&self, db_id: u32) -> RequiredShardMeta {
        match self.shards.binary_search_by_key(&db_id, |s| s.db_id) {
            Ok(i) => self.shards[i].clone(),
            Err(_) => RequiredShardMeta::empty(db_id),
        }
    }

    /// One entry per `db_id` in `[0, num_dbs)`, empty shards synthesized.
    pub fn dense_shards(&self) -> Vec<RequiredShardMeta> {
        (0..self.build.num_dbs).map(|id| self.shard(id)).collect()
    }

    /// Σ `row_count` over all shards.
    pub fn row_count(&self) -> u64 {
        self.shards.iter().map(|s| s.row_count).sum()
    }
}

/// A reference to one published manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestRef {
    /// Store-specific ref: the manifest URL (object stores) or the run id (database stores).
    pub manifest_ref: String,
    /// Run id of the manifest.
    pub run_id: String,
    /// When it was published.
    pub published_at: Timestamp,
}

/// The `_CURRENT` pointer object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentPointer {
    /// Pointer format (written as 1).
    pub format_version: i64,
    /// Always `application/x-sqlite3` when written.
    pub manifest_content_type: String,
    /// Absolute manifest URL.
    pub manifest_ref: String,
    /// Run id of that manifest.
    pub run_id: String,
    /// Pointer write time.
    pub updated_at: Timestamp,
}

impl CurrentPointer {
    /// A pointer to `manifest_ref`, written now.
    pub fn new(
        manifest_ref: impl Into<String>,
        run_id: impl Into<String>,
        updated_at: Timestamp,
    ) -> Self {
        CurrentPointer {
            format_version: 1,
            manifest_content_type: MANIFEST_CONTENT_TYPE.to_owned(),
            manifest_ref: manifest_ref.into(),
            run_id: run_id.into(),
            updated_at,
        }
    }

    /// The manifest ref this pointer names.
    pub fn to_manifest_ref(&self) -> ManifestRef {
        ManifestRef {
            manifest_ref: self.manifest_ref.clone(),
            run_id: self.run_id.clone(),
            published_at: self.updated_at,
        }
    }
}

/// Told by [`ManifestStore::publish`] as each phase becomes durable, so writers can emit
/// `write.manifest_published` and `write.current_published` at the right moment.
pub trait PublishObserver: Send + Sync {
    /// The manifest is durable (not yet current).
    fn manifest_published(&self, manifest_ref: &str);
    /// The pointer now names the manifest.
    fn current_published(&self, manifest_ref: &str);
}

/// A [`PublishObserver`] that does nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopPublishObserver;

impl PublishObserver for NoopPublishObserver {
    fn manifest_published(&self, _: &str) {}
    fn current_published(&self, _: &str) {}
}

/// Where manifests and the current pointer live. Implemented by the object-store, PostgreSQL,
/// SQLite and in-memory stores; writers and readers only ever see `Arc<dyn ManifestStore>`.
///
/// Errors: transport and query failures are [`ManifestStore`](crate::ErrorKind::ManifestStore)
/// (retryable); invalid content is [`ManifestParse`](crate::ErrorKind::ManifestParse).
#[async_trait]
pub trait ManifestStore: Send + Sync + fmt::Debug {
    /// Persist the manifest and make it current. Object stores do this in two phases (manifest,
    /// then pointer: a failure of the second is `PublishCurrent` carrying the ref); database
    /// stores in one transaction (failure: `PublishManifest`).
    async fn publish(
        &self,
        build: &RequiredBuildMeta,
        shards: &[RequiredShardMeta],
        observer: &dyn PublishObserver,
    ) -> Result<ManifestRef>;

    /// The current pointer, or `None` when nothing was ever published.
    async fn load_current(&self) -> Result<Option<ManifestRef>>;

    /// Load and validate one manifest.
    async fn load_manifest(&self, manifest_ref: &str) -> Result<ParsedManifest>;

    /// Published manifests, newest first, at most `limit`.
    async fn list_manifests(&self, limit: usize) -> Result<Vec<ManifestRef>>;

    /// Make an existing manifest current (the rollback primitive). Conditional like a
    /// publish: a concurrent move of the pointer in between is `PublishCurrent`.
    async fn set_current(&self, manifest_ref: &str) -> Result<()>;

    /// The prefix URL that bounds the URLs this store hands out (SPEC 15.3): an object store's
    /// own prefix. `None` for database stores, whose manifests are bounded by the bucket or
    /// directory of their own recorded `s3_prefix`.
    fn data_root(&self) -> Option<String> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_shards_are_synthesized() {
        let mut build = RequiredBuildMeta::new("r1", 4, "s3://b/p");
        build.validate().unwrap();
        let mut s2 = RequiredShardMeta::empty(2);
        s2.db_url = Some("s3://b/p/shards/run_id=r1/db=00002/attempt=00".into());
        s2.row_count = 5;
        let m = ParsedManifest {
            build: build.clone(),
            shards: vec![s2.clone()],
        };
        assert_eq!(m.shard(2), s2);
        assert!(m.shard(0).is_empty());
        assert_eq!(m.dense_shards().len(), 4);
        assert_eq!(m.row_count(), 5);
        build.num_dbs = 0;
        assert_eq!(
            build.validate().unwrap_err().kind(),
            crate::ErrorKind::ManifestBuild
        );
    }

    #[test]
    fn manifest_sharding_from_spec() {
        let spec =
            ShardingSpec::cel("region", [("region", CelColumnType::String)]).infer_routing_values();
        let m = ManifestSharding::from_spec(&spec, Some(vec!["ap".into(), "eu".into()]));
        assert_eq!(m.strategy, ShardingStrategy::Cel);
        assert_eq!(m.routing_values.as_ref().map(Vec::len), Some(2));
        assert_eq!(
            ManifestSharding::from_spec(&ShardingSpec::hash(), None),
            ManifestSharding::hash()
        );
        assert_eq!(m.hash_algorithm(), "xxh3_64");
    }

    #[test]
    fn store_trait_is_object_safe() {
        fn takes(_: Option<std::sync::Arc<dyn ManifestStore>>) {}
        takes(None);
        let p = CurrentPointer::new(
            "s3://b/p/manifests/x_run_id=r/manifest",
            "r",
            Timestamp::now(),
        );
        assert_eq!(p.to_manifest_ref().run_id, "r");
        assert_eq!(p.manifest_content_type, MANIFEST_CONTENT_TYPE);
    }
}
