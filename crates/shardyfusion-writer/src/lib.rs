//! # shardyfusion-writer
//!
//! Build a sharded snapshot and publish it safely.
//!
//! 1. **Route** every record to a shard (HASH on the key, or CEL), encode its key with the
//!    configured key encoding, and track row counts and min/max keys.
//! 2. **Write** each non-empty shard into its own SlateDB database at
//!    `<prefix>/<shard_prefix>/run_id=<id>/db=<NNNNN>/attempt=<NN>`. Writes are batched with no
//!    durability wait per batch and no WAL; each shard ends with one memtable flush to L0 SSTs
//!    and a clean close. Shards are written concurrently (parallel mode: one worker per shard,
//!    bounded queues and bytes in flight); rate limits are token buckets. A batch's keys and
//!    values live in one buffer ([`KvBatch`]) that SlateDB reads as zero-copy slices, and one
//!    memtable budget ([`SlateDbOptions::memtable_budget_bytes`]) is shared by all shards, so
//!    memory does not grow with the shard count.
//! 3. **Retry** failed shards (with `shard_retry`): each attempt gets a new attempt number and
//!    URL and is replayed from a local spool; only retryable errors are retried.
//! 4. **Publish** through any `ManifestStore`: manifest first, then the pointer. A failure at
//!    any step leaves `_CURRENT` where it was.
//!
//! Entry points: [`ShardedWriter::write`], [`ShardedWriter::write_with_columns`],
//! [`ShardedWriter::write_batches`] (Arrow) and [`ShardedWriter::write_single_db`].
//!
//! Layering: core, manifest, storage, and cel (feature `cel`, default on). The manifest store
//! comes from the configuration as `Arc<dyn ManifestStore>`.
//!
//! ```
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
//! use std::sync::Arc;
//! use shardyfusion_core::{Key, ManifestStore, WriteConfig, WriteOptions};
//! use shardyfusion_storage::StorageResolver;
//! use shardyfusion_store_s3::ObjectStoreManifestStore;
//! use shardyfusion_writer::ShardedWriter;
//!
//! let prefix = "memory://writer-doc/snap";
//! let store: Arc<dyn ManifestStore> = Arc::new(ObjectStoreManifestStore::new(prefix, StorageResolver::default())?);
//! let config = WriteConfig::builder(prefix).num_dbs(4).manifest_store(store.clone()).build()?;
//! let rows: Vec<i64> = (0..100).collect();
//! let result = ShardedWriter::new(config)?
//!     .write(&rows, |k| Key::Int(**k), |k| format!("value-{k}").into_bytes(), &WriteOptions::default())
//!     .await?;
//! assert_eq!(result.stats.rows_written, 100);
//! assert_eq!(store.load_current().await?.unwrap().run_id, result.run_id);
//! # Ok::<(), shardyfusion_core::Error>(())
//! # }).unwrap();
//! ```

#![deny(missing_docs)]

mod adapter;
mod batch;
mod buffers;
mod compact;
mod dispatch;
mod engine;
mod input;
mod publish;
mod ratelimit;
mod registry;
mod result;
mod route;
mod session;
mod shard;
mod single;
mod wire;
mod writer;

pub use adapter::{
    AdapterFactory, MEMTABLE_RAM_FACTOR, ShardAdapter, SlateDbAdapter, SlateDbFactory,
    SlateDbOptions,
};
pub use batch::KvBatch;
pub use engine::{Build, BuildPlan, WRITER_VERSION};
pub use input::{Record, ValueFn, ValueSpec};
pub use ratelimit::{LimiterType, TokenBucket};
pub use result::{BuildDurations, BuildResult, BuildStats, ShardResult};
pub use writer::{ShardedWriter, resolver_for};

/// Column values that route one record with multi-column CEL.
#[cfg(feature = "cel")]
pub use shardyfusion_cel::RoutingContext;

/// Without the `cel` feature there are no routing contexts (the type has no values).
#[cfg(not(feature = "cel"))]
pub type RoutingContext = std::convert::Infallible;
