//! Shard readers: one read-only handle per non-empty shard.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use shardyfusion_core::{Error, ErrorKind, ParsedManifest, RequiredShardMeta, Result};
use shardyfusion_storage::StorageResolver;
use slatedb::config::{DbReaderOptions, ReadOptions};
use slatedb::db_cache::DbCache;
use slatedb::db_cache::moka::{MokaCache, MokaCacheOptions};
use slatedb::{DbReader, DbReaderMode};

/// A read-only handle on one shard database. Safe for concurrent use.
#[async_trait]
pub trait ShardReader: Send + Sync {
    /// The value stored under the encoded key.
    async fn get(&self, key: &[u8]) -> Result<Option<Bytes>>;
    /// The values of several encoded keys, in the order given (duplicates allowed). The
    /// default looks them up one by one.
    async fn multi_get(&self, keys: &[&[u8]]) -> Result<Vec<Option<Bytes>>> {
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            out.push(self.get(k).await?);
        }
        Ok(out)
    }
    /// Release the handle.
    async fn close(&self) -> Result<()>;
}

/// Opens shard readers.
#[async_trait]
pub trait ShardReaderFactory: Send + Sync + std::fmt::Debug {
    /// Open the shard described by `shard` (never called for empty shards).
    async fn open(
        &self,
        shard: &RequiredShardMeta,
        manifest: &ParsedManifest,
    ) -> Result<Arc<dyn ShardReader>>;
}

/// Opens SlateDB readers write-free (`FollowLatest`, no WAL replay) with one block cache shared
/// by every shard of every snapshot this factory opens.
///
/// By default each open also loads the index and filters of every SST of the shard into the
/// cache (SlateDB's `warm_sst`), so the first lookup of a key after open costs one object-store
/// request (its data block) instead of three; see [`with_warm_metadata`](Self::with_warm_metadata).
/// A shard whose metadata is larger than its share of half the cache is not warmed.
pub struct SlateDbReaderFactory {
    resolver: StorageResolver,
    cache: Arc<dyn DbCache>,
    next_cache_id: AtomicU64,
    object_store_max_retries: u32,
    warm_metadata: bool,
    cache_bytes: u64,
}

impl std::fmt::Debug for SlateDbReaderFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlateDbReaderFactory")
            .field("resolver", &self.resolver)
            .finish_non_exhaustive()
    }
}

/// Default shared block cache size.
pub const DEFAULT_CACHE_BYTES: u64 = 256 << 20;

impl SlateDbReaderFactory {
    /// A factory resolving shard URLs with `resolver`, caching up to `cache_bytes`.
    pub fn new(resolver: StorageResolver, cache_bytes: u64) -> Self {
        let cache: Arc<dyn DbCache> = Arc::new(MokaCache::new_with_opts(MokaCacheOptions {
            max_capacity: cache_bytes,
            time_to_live: None,
            time_to_idle: None,
        }));
        SlateDbReaderFactory {
            resolver,
            cache,
            next_cache_id: AtomicU64::new(1),
            object_store_max_retries: 10,
            warm_metadata: true,
            cache_bytes,
        }
    }

    /// Use `cache` (holding up to `capacity_bytes`) instead of a private moka cache: one cache
    /// shared with other readers, or another [`DbCache`] implementation. This factory scopes its
    /// shards with `db_cache_id`s counting up from 1; other users of the cache should take ids
    /// that cannot collide (e.g. counting down from `u64::MAX`).
    #[must_use]
    pub fn with_cache(mut self, cache: Arc<dyn DbCache>, capacity_bytes: u64) -> Self {
        self.cache = cache;
        self.cache_bytes = capacity_bytes;
        self
    }

    /// Whether opening a shard loads its SST indexes and filters into the cache (default
    /// `true`: two reads per SST at open, then one per cold lookup). Off, the first lookup in
    /// each SST pays those reads instead.
    #[must_use]
    pub fn with_warm_metadata(mut self, on: bool) -> Self {
        self.warm_metadata = on;
        self
    }
}

/// Load the index and filters of every SST of an open shard into the block cache.
///
/// Only while the shard's metadata fits in `budget` bytes (its share of half the cache):
/// warming more than the cache holds would just evict what was warmed. Returns whether it
/// warmed.
async fn warm_metadata(
    reader: &DbReader,
    budget: u64,
) -> std::result::Result<bool, slatedb::Error> {
    use slatedb::{CacheTarget, DbCacheManagerOps};
    let targets = [CacheTarget::Index, CacheTarget::Filters];
    let (ids, metadata): (Vec<_>, Vec<u64>) = reader
        .manifest()
        .all_sst_views()
        .map(|v| (v.sst.id, v.sst.info.index_len + v.sst.info.filter_len))
        .unzip();
    if metadata.iter().sum::<u64>() > budget {
        return Ok(false);
    }
    let warms = ids.into_iter().map(|id| {
        let targets = &targets;
        async move { reader.warm_sst(id, targets).await }
    });
    for r in futures::future::join_all(warms).await {
        r?;
    }
    Ok(true)
}

struct SlateShard {
    reader: DbReader,
    url: String,
    db_id: u32,
}

fn classify(e: slatedb::Error) -> Error {
    let kind = if matches!(e.kind(), slatedb::ErrorKind::Unavailable) {
        ErrorKind::S3Transient
    } else {
        ErrorKind::DbAdapter
    };
    Error::new(kind, e.to_string()).with_source(e)
}

fn open_err(e: slatedb::Error, db_id: u32, url: &str) -> Error {
    let e = classify(e);
    Error::new(
        e.kind(),
        format!(
            "opening shard db_id={db_id} at {url} failed: {}",
            e.message()
        ),
    )
    .with_source(e)
}

#[async_trait]
impl ShardReaderFactory for SlateDbReaderFactory {
    async fn open(
        &self,
        shard: &RequiredShardMeta,
        manifest: &ParsedManifest,
    ) -> Result<Arc<dyn ShardReader>> {
        let url = shard
            .db_url
            .clone()
            .ok_or_else(|| Error::new(ErrorKind::DbAdapter, "empty shards are never opened"))?;
        let loc = self.resolver.resolve(&url)?;
        let options = DbReaderOptions {
            manifest_poll_interval: Duration::from_secs(3600),
            skip_wal_replay: true,
            object_store_max_retries: Some(self.object_store_max_retries),
            ..DbReaderOptions::default()
        };
        let reader = DbReader::builder(loc.path.clone(), loc.store.clone())
            .with_reader_mode(DbReaderMode::FollowLatest)
            .with_options(options)
            .with_db_cache(
                self.cache.clone(),
                self.next_cache_id.fetch_add(1, Ordering::Relaxed),
            )
            .build()
            .await
            .map_err(|e| open_err(e, shard.db_id, &url))?;
        if self.warm_metadata {
            // Each non-empty shard may fill its share of half the cache with metadata.
            let shards = manifest
                .shards
                .iter()
                .filter(|s| !s.is_empty())
                .count()
                .max(1);
            let budget = self.cache_bytes / 2 / shards as u64;
            match warm_metadata(&reader, budget).await {
                Ok(true) => {}
                Ok(false) => tracing::debug!(
                    db_id = shard.db_id,
                    budget,
                    "shard metadata exceeds its share of the cache: not warmed"
                ),
                Err(e) => {
                    let _ = reader.close().await;
                    return Err(open_err(e, shard.db_id, &url));
                }
            }
        }
        Ok(Arc::new(SlateShard {
            reader,
            url,
            db_id: shard.db_id,
        }))
    }
}

impl SlateShard {
    fn read_err(&self, e: slatedb::Error) -> Error {
        let e = classify(e);
        let kind = if e.kind() == ErrorKind::S3Transient {
            ErrorKind::S3Transient
        } else {
            ErrorKind::DbAdapter
        };
        Error::new(
            kind,
            format!(
                "Read failed for shard db_id={} ({}): {}",
                self.db_id,
                self.url,
                e.message()
            ),
        )
        .with_source(e)
    }
}

#[async_trait]
impl ShardReader for SlateShard {
    async fn get(&self, key: &[u8]) -> Result<Option<Bytes>> {
        self.reader
            .get_with_options(key, &ReadOptions::default())
            .await
            .map_err(|e| self.read_err(e))
    }

    async fn close(&self) -> Result<()> {
        self.reader.close().await.map_err(|e| {
            Error::new(
                ErrorKind::DbAdapter,
                format!("closing shard db_id={}: {e}", self.db_id),
            )
        })
    }
}
