//! Shard adapters: how one shard attempt is written. [`SlateDbFactory`] opens a SlateDB
//! database at the attempt's `db_url`, tuned for a one-shot bulk build.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use shardyfusion_core::{Error, ErrorKind, Result};
use shardyfusion_storage::StorageResolver;
use slatedb::config::{CloseOptions, FlushOptions, FlushType, Settings, WriteOptions};
use slatedb::{Db, WriteBatch};

use crate::batch::KvBatch;

/// One shard attempt's database.
#[async_trait]
pub trait ShardAdapter: Send {
    /// Write all pairs atomically as one batch (owned, so adapters can avoid copying).
    async fn write_batch(&mut self, batch: KvBatch) -> Result<()>;
    /// Make everything written so far durable.
    async fn flush(&mut self) -> Result<()>;
    /// Finish the database (SlateDB: nothing to do).
    async fn seal(&mut self) -> Result<()>;
    /// Materialized size (SlateDB reports 0).
    fn db_bytes(&self) -> u64;
    /// Shut the database down; idempotent.
    async fn close(&mut self) -> Result<()>;
}

/// Opens shard adapters.
#[async_trait]
pub trait AdapterFactory: Send + Sync + std::fmt::Debug {
    /// Open the database of one attempt at `db_url` (`local_dir` is scratch space it may use).
    async fn open(&self, db_url: &str, local_dir: &Path) -> Result<Box<dyn ShardAdapter>>;
}

/// Tuning of the SlateDB shard adapter.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SlateDbOptions {
    /// Write SSTs without bloom filters, for sites that still run SlateDB 0.11/0.12 readers.
    pub legacy_readers: bool,
    /// Memtable size at which an L0 SST is cut (default 64 MiB).
    pub l0_sst_size_bytes: usize,
    /// Backpressure limit of unflushed data (default 256 MiB).
    pub max_unflushed_bytes: usize,
    /// Object-store retries inside SlateDB (default 10; never unbounded, so faults surface).
    pub object_store_max_retries: u32,
    /// Timeouts: open, write batch, flush, close (default unbounded).
    pub open_timeout: Option<Duration>,
    /// Write timeout.
    pub write_timeout: Option<Duration>,
    /// Flush timeout.
    pub flush_timeout: Option<Duration>,
    /// Close timeout.
    pub close_timeout: Option<Duration>,
}

impl Default for SlateDbOptions {
    fn default() -> Self {
        SlateDbOptions {
            legacy_readers: false,
            l0_sst_size_bytes: 64 << 20,
            max_unflushed_bytes: 256 << 20,
            object_store_max_retries: 10,
            open_timeout: None,
            write_timeout: None,
            flush_timeout: None,
            close_timeout: None,
        }
    }
}

impl SlateDbOptions {
    /// Set `legacy_readers`.
    #[must_use]
    pub fn with_legacy_readers(mut self, on: bool) -> Self {
        self.legacy_readers = on;
        self
    }

    /// Set `object_store_max_retries`.
    #[must_use]
    pub fn with_object_store_max_retries(mut self, n: u32) -> Self {
        self.object_store_max_retries = n;
        self
    }

    /// The SlateDB settings of a bulk build: no WAL, no timed flushes, no compactor, no GC,
    /// L0 limits raised so the build never stalls waiting for compaction.
    pub fn settings(&self) -> Settings {
        Settings {
            flush_interval: None,
            wal_enabled: false,
            l0_sst_size_bytes: self.l0_sst_size_bytes,
            max_unflushed_bytes: self.max_unflushed_bytes.max(self.l0_sst_size_bytes + 1),
            l0_max_ssts: 1 << 16,
            l0_max_ssts_per_key: 1 << 16,
            compactor_options: None,
            garbage_collector_options: None,
            min_filter_keys: if self.legacy_readers {
                u32::MAX
            } else {
                Settings::default().min_filter_keys
            },
            object_store_max_retries: Some(self.object_store_max_retries),
            ..Settings::default()
        }
    }
}

/// Opens [`SlateDbAdapter`]s through a [`StorageResolver`] (the db_url is the database root).
#[derive(Debug, Clone)]
pub struct SlateDbFactory {
    resolver: StorageResolver,
    options: SlateDbOptions,
}

impl SlateDbFactory {
    /// A factory resolving shard URLs with `resolver`.
    pub fn new(resolver: StorageResolver, options: SlateDbOptions) -> Self {
        SlateDbFactory { resolver, options }
    }
}

async fn timed<T>(
    limit: Option<Duration>,
    what: &str,
    fut: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    match limit {
        None => fut.await,
        Some(d) => tokio::time::timeout(d, fut).await.map_err(|_| {
            Error::new(
                ErrorKind::ShardWrite,
                format!("{what} timed out after {d:?}"),
            )
        })?,
    }
}

fn slate_err(kind: ErrorKind, what: &str, e: slatedb::Error) -> Error {
    Error::new(kind, format!("{what}: {e}")).with_source(e)
}

#[async_trait]
impl AdapterFactory for SlateDbFactory {
    async fn open(&self, db_url: &str, _local_dir: &Path) -> Result<Box<dyn ShardAdapter>> {
        let loc = self.resolver.resolve(db_url)?;
        let mut builder = Db::builder(loc.path.clone(), loc.store.clone())
            .with_settings(self.options.settings())
            .with_db_cache_disabled();
        if self.options.legacy_readers {
            builder = builder.with_filter_policies(vec![]);
        }
        let what = format!("opening shard database {db_url}");
        let db = timed(self.options.open_timeout, &what, async {
            builder.build().await.map_err(|e| {
                // Transient storage trouble is retryable; bad settings or incompatible data are not.
                let kind = if matches!(e.kind(), slatedb::ErrorKind::Unavailable) {
                    ErrorKind::ShardWrite
                } else {
                    ErrorKind::DbAdapter
                };
                slate_err(kind, &what, e)
            })
        })
        .await?;
        Ok(Box::new(SlateDbAdapter {
            db: Some(Arc::new(db)),
            url: db_url.to_owned(),
            options: self.options.clone(),
        }))
    }
}

/// A SlateDB shard being built.
pub struct SlateDbAdapter {
    db: Option<Arc<Db>>,
    url: String,
    options: SlateDbOptions,
}

impl SlateDbAdapter {
    fn db(&self) -> Result<&Arc<Db>> {
        self.db.as_ref().ok_or_else(|| {
            Error::new(
                ErrorKind::ShardWrite,
                format!("shard database {} is closed", self.url),
            )
        })
    }
}

#[async_trait]
impl ShardAdapter for SlateDbAdapter {
    async fn write_batch(&mut self, pairs: KvBatch) -> Result<()> {
        let rows = pairs.len();
        let mut pairs = pairs;
        // Key-ordered inserts are markedly cheaper for SlateDB's skiplist memtable.
        pairs.sort();
        let mut batch = WriteBatch::new();
        // Every key and value is a slice of the batch's one buffer: no copy, no allocation.
        for (k, v) in pairs.into_shared() {
            batch.put_bytes(k, v);
        }
        let db = self.db()?.clone();
        let what = format!("writing a batch of {rows} rows to {}", self.url);
        timed(self.options.write_timeout, &what, async {
            // No durability wait per batch: the final memtable flush makes everything durable.
            db.write_with_options(batch, &WriteOptions::default())
                .await
                .map(|_| ())
                .map_err(|e| slate_err(ErrorKind::ShardWrite, &what, e))
        })
        .await
    }

    async fn flush(&mut self) -> Result<()> {
        let db = self.db()?.clone();
        let what = format!("flushing {} to L0 SSTs", self.url);
        timed(self.options.flush_timeout, &what, async {
            db.flush_with_options(FlushOptions {
                flush_type: FlushType::MemTable,
            })
            .await
            .map_err(|e| slate_err(ErrorKind::ShardWrite, &what, e))
        })
        .await
    }

    async fn seal(&mut self) -> Result<()> {
        Ok(())
    }

    fn db_bytes(&self) -> u64 {
        0
    }

    async fn close(&mut self) -> Result<()> {
        let Some(db) = self.db.take() else {
            return Ok(());
        };
        let what = format!("closing {}", self.url);
        timed(self.options.close_timeout, &what, async {
            db.close_with_options(CloseOptions {
                flush_type: Some(FlushType::MemTable),
            })
            .await
            .map_err(|e| slate_err(ErrorKind::ShardWrite, &what, e))
        })
        .await
    }
}
