//! # shardyfusion-reader-async
//!
//! [`AsyncShardedReader`], the read engine: it loads `_CURRENT` and the manifest from any
//! `ManifestStore`, builds the router (HASH or CEL), and opens one write-free SlateDB reader per
//! non-empty shard, all concurrently, sharing one block cache. Each open also loads the shard's
//! SST indexes and filters into that cache ([`ReaderOptions::warm_metadata`], on by default), so
//! the first lookup of a key costs one object-store request, its data block. Lookups route each
//! key, encode it with the snapshot's key encoding, and read one shard; `multi_get` groups keys
//! by shard and reads the groups concurrently.
//!
//! [`refresh`](AsyncShardedReader::refresh) builds the complete new snapshot, then swaps it in
//! atomically; the old one closes when its last borrower (an in-flight read or a
//! [`ShardHandle`]) lets go, so a reader never sees a mix of two snapshots. If the current
//! manifest does not parse at open, up to `max_fallback_attempts` older manifests are tried.
//!
//! Layering: core, manifest, storage, and cel (feature `cel`, default on). The manifest store
//! is passed in as `Arc<dyn ManifestStore>`.
//!
//! ```
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
//! use std::sync::Arc;
//! use shardyfusion_core::{Key, KeyRef, ManifestStore, WriteConfig, WriteOptions};
//! use shardyfusion_reader_async::{AsyncShardedReader, ReaderOptions};
//! use shardyfusion_storage::StorageResolver;
//! use shardyfusion_store_s3::ObjectStoreManifestStore;
//! use shardyfusion_writer::ShardedWriter;
//!
//! let prefix = "memory://reader-doc/snap";
//! let store: Arc<dyn ManifestStore> = Arc::new(ObjectStoreManifestStore::new(prefix, StorageResolver::default())?);
//! let config = WriteConfig::builder(prefix).num_dbs(4).manifest_store(store.clone()).build()?;
//! let keys: Vec<i64> = (0..100).collect();
//! ShardedWriter::new(config)?.write(&keys, |k| Key::Int(**k), |k| format!("v{k}").into_bytes(), &WriteOptions::default()).await?;
//!
//! let reader = AsyncShardedReader::open(store, ReaderOptions::default()).await?;
//! assert_eq!(reader.get(KeyRef::Int(42)).await?.as_deref(), Some(&b"v42"[..]));
//! assert_eq!(reader.get(KeyRef::Int(1000)).await?, None);
//! reader.close();
//! # Ok::<(), shardyfusion_core::Error>(())
//! # }).unwrap();
//! ```

#![deny(missing_docs)]

mod reader;
mod shard;
mod snapshot;

pub use reader::{
    AsyncShardedReader, DEFAULT_MAX_NUM_DBS, DEFAULT_SHARD_OPEN_CONCURRENCY, HealthStatus,
    ReadRateLimiter, ReaderHealth, ReaderOptions, ShardHandle,
};
pub use shard::{DEFAULT_CACHE_BYTES, ShardReader, ShardReaderFactory, SlateDbReaderFactory};
pub use snapshot::{ShardDetail, SnapshotInfo};

/// Column values that route one lookup with multi-column CEL.
#[cfg(feature = "cel")]
pub use shardyfusion_cel::RoutingContext;

/// Without the `cel` feature there are no routing contexts (the type has no values).
#[cfg(not(feature = "cel"))]
pub type RoutingContext = std::convert::Infallible;
