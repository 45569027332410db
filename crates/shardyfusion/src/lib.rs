//! # shardyfusion
//!
//! Serve batch-computed key-value data from object storage. A writer splits a dataset into N
//! independent SlateDB databases ("shards") by xxh3_64 of the key (or a CEL expression),
//! publishes a manifest and then a `_CURRENT` pointer, and readers route each lookup to its shard
//! and swap to new snapshots atomically. Snapshots are format-compatible with the Python
//! `shardyfusion` library.
//!
//! This crate re-exports the workspace behind features:
//!
//! | feature | what |
//! |---|---|
//! | `s3` (default) | [`stores::ObjectStoreManifestStore`] on `s3://`, `file://`, paths, `memory://`, and the [`manifest_store_for_prefix`] helper |
//! | `postgres` | `stores::PostgresManifestStore` |
//! | `sqlite` | `stores::SqliteManifestStore` |
//! | `cel` (default) | CEL routing ([`cel`]) |
//! | `writer` (default) | [`writer::ShardedWriter`] |
//! | `reader` (default) | blocking [`reader::ShardedReader`] and [`reader::ConcurrentShardedReader`] |
//! | `async` | [`reader_async::AsyncShardedReader`] |
//!
//! Everything from `shardyfusion-core` (keys, config, errors, metrics, the manifest model) is at
//! the crate root.
//!
//! ## Write, then read
//!
//! ```
//! # #[cfg(all(feature = "s3", feature = "writer", feature = "reader"))]
//! # fn main() -> shardyfusion::Result<()> {
//! use shardyfusion::reader::{ConcurrentOptions, ConcurrentShardedReader, ReaderOptions};
//! use shardyfusion::writer::ShardedWriter;
//! use shardyfusion::{Key, KeyRef, WriteConfig, WriteOptions};
//!
//! let dir = std::env::temp_dir().join(format!("shardyfusion-doc-{}", std::process::id()));
//! let prefix = dir.to_str().unwrap();
//! let store = shardyfusion::manifest_store_for_prefix(prefix)?;
//!
//! // Write 10,000 rows into 8 shards and publish them.
//! let config = WriteConfig::builder(prefix).num_dbs(8).manifest_store(store.clone()).build()?;
//! let rows: Vec<(i64, String)> = (0..10_000).map(|i| (i, format!("value-{i}"))).collect();
//! let rt = tokio::runtime::Runtime::new().unwrap();
//! let result = rt.block_on(
//!     ShardedWriter::new(config)?.write(&rows, |r| Key::Int(r.0), |r| r.1.clone().into_bytes(), &WriteOptions::default()),
//! )?;
//! assert_eq!(result.stats.rows_written, 10_000);
//! drop(rt);
//!
//! // Read keys back from the current snapshot.
//! let reader = ConcurrentShardedReader::open(store, ReaderOptions::default(), ConcurrentOptions::default())?;
//! assert_eq!(reader.get(KeyRef::Int(42))?.as_deref(), Some(&b"value-42"[..]));
//! assert_eq!(reader.get(KeyRef::Int(10_000))?, None);
//! reader.close();
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok(())
//! # }
//! # #[cfg(not(all(feature = "s3", feature = "writer", feature = "reader")))]
//! # fn main() {}
//! ```

#![deny(missing_docs)]

pub use shardyfusion_core::*;

/// The manifest format v4 and the `_CURRENT` pointer JSON.
pub mod manifest {
    pub use shardyfusion_manifest::*;
}

/// Object stores from URLs, retries, and the counting / fault-injecting wrappers.
pub mod storage {
    pub use shardyfusion_storage::*;
}

/// Manifest stores.
pub mod stores {
    #[cfg(feature = "postgres")]
    pub use shardyfusion_store_postgres::{PostgresManifestStore, PostgresOptions};
    #[cfg(feature = "s3")]
    pub use shardyfusion_store_s3::{InMemoryManifestStore, ObjectStoreManifestStore};
    #[cfg(feature = "sqlite")]
    pub use shardyfusion_store_sqlite::SqliteManifestStore;
}

/// CEL routing.
#[cfg(feature = "cel")]
pub mod cel {
    pub use shardyfusion_cel::*;
}

/// The sharded writer.
#[cfg(feature = "writer")]
pub mod writer {
    pub use shardyfusion_writer::*;
}

/// The async reader.
#[cfg(feature = "async")]
pub mod reader_async {
    pub use shardyfusion_reader_async::*;
}

/// The blocking readers.
#[cfg(feature = "reader")]
pub mod reader {
    pub use shardyfusion_reader::*;
}

mod open;
pub use open::ManifestStoreSpec;

/// The default manifest store of a prefix: manifests and `_CURRENT` as objects under it,
/// reached with default storage settings (environment credentials).
#[cfg(feature = "s3")]
pub fn manifest_store_for_prefix(prefix: &str) -> Result<std::sync::Arc<dyn ManifestStore>> {
    manifest_store_with(prefix, shardyfusion_storage::StorageResolver::default())
}

/// The object-store manifest store of a prefix, reached through `resolver`.
#[cfg(feature = "s3")]
pub fn manifest_store_with(
    prefix: &str,
    resolver: shardyfusion_storage::StorageResolver,
) -> Result<std::sync::Arc<dyn ManifestStore>> {
    Ok(std::sync::Arc::new(
        shardyfusion_store_s3::ObjectStoreManifestStore::new(prefix, resolver)?,
    ))
}
