//! Shard adapters: how one shard attempt is written. [`SlateDbFactory`] opens a SlateDB
//! database at the attempt's `db_url`, tuned for a one-shot bulk build.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use shardyfusion_core::{Error, ErrorKind, Result};
use shardyfusion_storage::{ErrorClass, StorageResolver, StoreLocation};
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
    /// Shut the database down after a failure, without making unflushed data durable (it will
    /// never be published). Defaults to [`close`](Self::close).
    async fn abandon(&mut self) -> Result<()> {
        self.close().await
    }
}

/// Opens shard adapters.
#[async_trait]
pub trait AdapterFactory: Send + Sync + std::fmt::Debug {
    /// Open the database of one attempt at `db_url` (`local_dir` is scratch space it may use);
    /// `num_dbs` shards of this write are being built at the same time.
    async fn open(
        &self,
        db_url: &str,
        local_dir: &Path,
        num_dbs: u32,
    ) -> Result<Box<dyn ShardAdapter>>;
}

/// RAM a memtable row costs per byte of SlateDB's size estimate (measured: a 108-byte row is
/// estimated at about 135 bytes and costs about 300 in the skiplist, more while its SST
/// uploads).
pub const MEMTABLE_RAM_FACTOR: usize = 3;

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
    /// Memory (RAM) for memtables across all shards of one write (default 384 MiB; `None` =
    /// the per-shard limits alone). Every shard of a write is open at once, so without a total
    /// the memory grows with the shard count. SlateDB counts its limits in estimated SST bytes,
    /// and a row in a memtable costs about [`MEMTABLE_RAM_FACTOR`] times its estimate, so each
    /// of `n` shards gets `budget / n / factor` unflushed (estimated) bytes and memtables of half
    /// that, never below 1 MiB (smaller memtables mean more, smaller L0 SSTs per shard).
    pub memtable_budget_bytes: Option<usize>,
    /// Compact each shard of more than four tables into one sorted run when it closes
    /// (default on): a build flushes many overlapping L0 SSTs, and a get probes each of them
    /// (80 L0 SSTs: 5x the hot-get time of one run). It costs a read and a write of the shard
    /// at the end of the build (a large build takes about twice as long).
    pub compact: bool,
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
            memtable_budget_bytes: Some(384 << 20),
            compact: true,
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

    /// Set `compact`.
    #[must_use]
    pub fn with_compaction(mut self, on: bool) -> Self {
        self.compact = on;
        self
    }

    /// Set `object_store_max_retries`.
    #[must_use]
    pub fn with_object_store_max_retries(mut self, n: u32) -> Self {
        self.object_store_max_retries = n;
        self
    }

    /// Set `memtable_budget_bytes`.
    #[must_use]
    pub fn with_memtable_budget(mut self, bytes: Option<usize>) -> Self {
        self.memtable_budget_bytes = bytes;
        self
    }

    /// Memtable size and unflushed limit of each shard when `num_dbs` shards are built at once.
    pub fn memtable_limits(&self, num_dbs: u32) -> (usize, usize) {
        const FLOOR: usize = 1 << 20;
        let (mut l0, mut unflushed) = (self.l0_sst_size_bytes, self.max_unflushed_bytes);
        if let Some(budget) = self.memtable_budget_bytes {
            let per_shard = budget / num_dbs.max(1) as usize / MEMTABLE_RAM_FACTOR;
            unflushed = unflushed.min(per_shard);
            l0 = l0.min(per_shard / 2).max(FLOOR.min(self.l0_sst_size_bytes));
        }
        (l0, unflushed.max(l0 + 1))
    }

    /// The SlateDB settings of a bulk build: no WAL, no timed flushes, no compactor, no GC,
    /// L0 limits raised so the build never stalls waiting for compaction (one shard alone).
    pub fn settings(&self) -> Settings {
        self.settings_for(1)
    }

    /// [`settings`](Self::settings) for one of `num_dbs` shards built at the same time (the
    /// memtable budget is shared).
    pub fn settings_for(&self, num_dbs: u32) -> Settings {
        let (l0, unflushed) = self.memtable_limits(num_dbs);
        Settings {
            flush_interval: None,
            wal_enabled: false,
            l0_sst_size_bytes: l0,
            max_unflushed_bytes: unflushed,
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
            // One upload at a time per shard: many shards are open at once, and each upload
            // buffers its SST in memory.
            l0_flush_parallelism: 1,
            ..Settings::default()
        }
    }
}

/// Opens [`SlateDbAdapter`]s through a [`StorageResolver`] (the db_url is the database root).
#[derive(Debug, Clone)]
pub struct SlateDbFactory {
    resolver: StorageResolver,
    options: SlateDbOptions,
    /// Compactions at once across the shards this factory opens (each reads and writes its
    /// shard, so a few at a time keep the end of a build within the memory budget).
    compactions: Arc<tokio::sync::Semaphore>,
}

/// Shards of one write compacting at the same time.
const CONCURRENT_COMPACTIONS: usize = 2;

impl SlateDbFactory {
    /// A factory resolving shard URLs with `resolver`.
    pub fn new(resolver: StorageResolver, options: SlateDbOptions) -> Self {
        SlateDbFactory {
            resolver,
            options,
            compactions: Arc::new(tokio::sync::Semaphore::new(CONCURRENT_COMPACTIONS)),
        }
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

/// A shard attempt never opens a path that already holds objects (SPEC 15.1): SlateDB would
/// open the database there and merge into it, under readers that may be serving it.
async fn ensure_empty(loc: &StoreLocation) -> Result<()> {
    let first = loc.store.list(Some(&loc.path)).next().await;
    match first {
        None => Ok(()),
        Some(Ok(meta)) => Err(Error::config(format!(
            "shard attempt path {} already holds objects (e.g. {}): a published snapshot is never \
             written again. This run id was used before under this prefix; write under a new run \
             id (or leave it unset for a fresh one)",
            loc.url, meta.location
        ))),
        Some(Err(e)) => {
            let class = shardyfusion_storage::classify(&e);
            let failure = shardyfusion_storage::RetryFailure {
                class,
                attempts: 1,
                error: e,
            };
            let e = failure.into_error(
                ErrorKind::DbAdapter,
                &format!("checking that shard attempt path {} is empty", loc.url),
            );
            // A transient listing failure is a retryable shard write failure.
            Err(if class == ErrorClass::Transient {
                Error::new(ErrorKind::ShardWrite, e.message().to_owned()).with_source(e)
            } else {
                e
            })
        }
    }
}

fn slate_err(kind: ErrorKind, what: &str, e: slatedb::Error) -> Error {
    Error::new(kind, format!("{what}: {e}")).with_source(e)
}

#[async_trait]
impl AdapterFactory for SlateDbFactory {
    async fn open(
        &self,
        db_url: &str,
        _local_dir: &Path,
        num_dbs: u32,
    ) -> Result<Box<dyn ShardAdapter>> {
        let loc = self.resolver.resolve(db_url)?;
        ensure_empty(&loc).await?;
        let mut builder = Db::builder(loc.path.clone(), loc.store.clone())
            .with_settings(self.options.settings_for(num_dbs))
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
            loc,
            compactions: self.compactions.clone(),
            url: db_url.to_owned(),
            options: self.options.clone(),
            l0_bytes: self.options.memtable_limits(num_dbs).0,
        }))
    }
}

/// A SlateDB shard being built.
pub struct SlateDbAdapter {
    db: Option<Arc<Db>>,
    /// Where the database lives (for the compaction after close).
    loc: StoreLocation,
    compactions: Arc<tokio::sync::Semaphore>,
    url: String,
    options: SlateDbOptions,
    /// The memtable size of this shard (writes are split to at most half of it).
    l0_bytes: usize,
}

impl SlateDbAdapter {
    async fn close_with(&mut self, flush_type: Option<FlushType>) -> Result<()> {
        let Some(db) = self.db.take() else {
            return Ok(());
        };
        let what = format!("closing {}", self.url);
        timed(self.options.close_timeout, &what, async {
            db.close_with_options(CloseOptions { flush_type })
                .await
                .map_err(|e| slate_err(ErrorKind::ShardWrite, &what, e))
        })
        .await
    }

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
        let mut pairs = pairs;
        // Key-ordered inserts are markedly cheaper for SlateDB's skiplist memtable.
        pairs.sort();
        // SlateDB checks its memtable limit before a write and lets the whole write in: writes
        // of at most half a memtable keep the overshoot (and the memory) small.
        let rows_per_write = (self.l0_bytes / 2)
            .checked_div(pairs.bytes().div_ceil(pairs.len().max(1)).max(1))
            .unwrap_or(usize::MAX)
            .max(1);
        // One shared conversion (no copy of any value), then writes of `rows_per_write` rows.
        let mut rows = pairs.into_shared().peekable();
        while rows.peek().is_some() {
            let mut batch = WriteBatch::new();
            let mut n = 0;
            // Values are slices of the batch's one buffer, keys of a small key buffer (no copy
            // of a value, no allocation per row).
            for (k, v) in rows.by_ref().take(rows_per_write) {
                batch.put_bytes(k, v);
                n += 1;
            }
            let db = self.db()?.clone();
            let what = format!("writing a batch of {n} rows to {}", self.url);
            timed(self.options.write_timeout, &what, async {
                // No durability wait per batch: the final memtable flush makes everything
                // durable.
                db.write_with_options(batch, &WriteOptions::default())
                    .await
                    .map(|_| ())
                    .map_err(|e| slate_err(ErrorKind::ShardWrite, &what, e))
            })
            .await?;
        }
        Ok(())
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
        self.close_with(Some(FlushType::MemTable)).await?;
        if !self.options.compact {
            return Ok(());
        }
        let _permit =
            self.compactions.acquire().await.map_err(|_| {
                Error::new(ErrorKind::ShardWrite, "the compaction queue was closed")
            })?;
        crate::compact::compact_to_one_run(
            self.loc.store.clone(),
            self.loc.path.clone(),
            &self.url,
            &self.options,
        )
        .await
    }

    async fn abandon(&mut self) -> Result<()> {
        self.close_with(None).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    #[test]
    fn memtable_budget_is_shared_by_the_shards_of_a_write() {
        let o = SlateDbOptions::default();
        let per_shard = |n: usize| (384 * MIB) / n / MEMTABLE_RAM_FACTOR;
        // One shard: 64 MiB memtables, the unflushed limit shrunk to the RAM budget.
        assert_eq!(o.memtable_limits(1), (64 * MIB, per_shard(1)));
        // Many shards: the total stays at the budget.
        assert_eq!(o.memtable_limits(8), (per_shard(8) / 2, per_shard(8)));
        assert_eq!(o.memtable_limits(64), (per_shard(64) / 2, per_shard(64)));
        // Past the floor, memtables stay at 1 MiB (and the limit just above them).
        assert_eq!(o.memtable_limits(4096), (MIB, MIB + 1));
        // Without a budget, the per-shard limits alone.
        let none = o.clone().with_memtable_budget(None);
        assert_eq!(none.memtable_limits(4096), (64 * MIB, 256 * MIB));
        // Settings carry the limits and always validate (unflushed > memtable).
        let s = o.settings_for(64);
        assert_eq!(
            (s.l0_sst_size_bytes, s.max_unflushed_bytes),
            (per_shard(64) / 2, per_shard(64))
        );
        for n in [1, 3, 64, 1000, 100_000] {
            let (l0, unflushed) = o.memtable_limits(n);
            assert!(unflushed > l0, "{n} shards: {l0} / {unflushed}");
        }
    }
}
