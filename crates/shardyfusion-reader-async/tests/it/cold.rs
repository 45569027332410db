//! Object-store requests of the first lookup after open, with and without warmed metadata.

use std::sync::Arc;

use shardyfusion_core::KeyRef;
use shardyfusion_reader_async::{AsyncShardedReader, ReaderOptions};
use shardyfusion_storage::{Op, RequestCounts, StorageResolver};

use crate::{publish, store_for, unique};

/// Wait until the reader's background requests stop: right after open, each SlateDB reader's
/// manifest poller looks for a newer shard manifest once (its timer's first tick), and those
/// requests are not part of any lookup.
async fn settle(counter: &RequestCounts) {
    for _ in 0..100 {
        counter.reset();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        if counter.total() == 0 {
            return;
        }
    }
    panic!("the reader kept making requests while idle");
}

/// Requests made by the first `get` of each shard's smallest key right after open (the
/// smallest key starts the first block, so the lookup needs exactly that one block).
async fn first_get_requests(warm: bool, cache_bytes: u64) -> Vec<u64> {
    let counter = Arc::new(RequestCounts::default());
    let resolver = StorageResolver::builder()
        .count_requests(counter.clone())
        .build();
    let prefix = format!("memory://{}/snap", unique("cold"));
    let store = store_for(&prefix, &resolver);
    let keys: Vec<i64> = (0..6000).collect(); // ~2000 a shard: enough for bloom filters
    publish(&store, &prefix, 3, 0, &keys).await;
    let reader = AsyncShardedReader::open(
        store,
        ReaderOptions::default()
            .with_storage(resolver)
            .with_warm_metadata(warm)
            .with_cache_bytes(cache_bytes),
    )
    .await
    .unwrap();
    settle(&counter).await;
    let mut out = Vec::new();
    for shard in reader.shard_details().unwrap() {
        let Some(shardyfusion_core::Key::Int(min)) = shard.min_key else {
            panic!("shard {} has no integer min key", shard.db_id)
        };
        counter.reset();
        let v = reader.get(KeyRef::Int(min)).await.unwrap();
        assert_eq!(v.as_deref(), Some(format!("g0-{min}").as_bytes()));
        assert_eq!(counter.get(Op::Put), 0, "reads never write");
        out.push(counter.total());
    }
    reader.close();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warmed_open_makes_a_cold_get_one_request() {
    // Warm (the default): index and filters were loaded at open; only the data block is read.
    assert_eq!(first_get_requests(true, 64 << 20).await, vec![1, 1, 1]);
    // Not warmed: the same lookups also fetch each SST's filter and index.
    for n in first_get_requests(false, 64 << 20).await {
        assert!(
            n >= 3,
            "a cold get without warmed metadata made {n} requests"
        );
    }
    // A cache too small for the metadata: warming is skipped (it would only churn) and lookups
    // still answer, paying the metadata reads.
    for n in first_get_requests(true, 4096).await {
        assert!(n >= 3, "a cold get with a 4 KiB cache made {n} requests");
    }
}

/// A block cache that counts what SlateDB stores in it.
struct CountingCache {
    inner: Arc<dyn slatedb::db_cache::DbCache>,
    inserts: std::sync::atomic::AtomicU64,
}

#[async_trait::async_trait]
impl slatedb::db_cache::DbCache for CountingCache {
    async fn get_block(
        &self,
        key: &slatedb::db_cache::CachedKey,
    ) -> Result<Option<slatedb::db_cache::CachedEntry>, slatedb::Error> {
        self.inner.get_block(key).await
    }
    async fn get_index(
        &self,
        key: &slatedb::db_cache::CachedKey,
    ) -> Result<Option<slatedb::db_cache::CachedEntry>, slatedb::Error> {
        self.inner.get_index(key).await
    }
    async fn get_filter(
        &self,
        key: &slatedb::db_cache::CachedKey,
    ) -> Result<Option<slatedb::db_cache::CachedEntry>, slatedb::Error> {
        self.inner.get_filter(key).await
    }
    async fn get_stats(
        &self,
        key: &slatedb::db_cache::CachedKey,
    ) -> Result<Option<slatedb::db_cache::CachedEntry>, slatedb::Error> {
        self.inner.get_stats(key).await
    }
    async fn insert(
        &self,
        key: slatedb::db_cache::CachedKey,
        value: slatedb::db_cache::CachedEntry,
    ) {
        self.inserts
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.insert(key, value).await
    }
    async fn remove(&self, key: &slatedb::db_cache::CachedKey) {
        self.inner.remove(key).await
    }
    fn entry_count(&self) -> u64 {
        self.inner.entry_count()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supplied_block_cache_is_the_one_used() {
    use shardyfusion_reader_async::SlateDbReaderFactory;
    use slatedb::db_cache::moka::{MokaCache, MokaCacheOptions};
    let resolver = StorageResolver::default();
    let prefix = format!("memory://{}/snap", unique("cache"));
    let store = store_for(&prefix, &resolver);
    let keys: Vec<i64> = (0..6000).collect();
    publish(&store, &prefix, 2, 0, &keys).await;
    let cache = Arc::new(CountingCache {
        inner: Arc::new(MokaCache::new_with_opts(MokaCacheOptions {
            max_capacity: 64 << 20,
            time_to_live: None,
            time_to_idle: None,
        })),
        inserts: Default::default(),
    });
    let factory =
        SlateDbReaderFactory::new(resolver.clone(), 1 << 20).with_cache(cache.clone(), 64 << 20);
    let reader = AsyncShardedReader::open(
        store,
        ReaderOptions::default()
            .with_storage(resolver)
            .with_factory(Arc::new(factory)),
    )
    .await
    .unwrap();
    let load = |c: &CountingCache| c.inserts.load(std::sync::atomic::Ordering::Relaxed);
    // Open warmed index and filters of both shards into the supplied cache...
    let warmed = load(&cache);
    assert!(warmed >= 4, "{warmed} entries after open");
    // ...and a lookup's data block goes there too.
    assert!(reader.get(KeyRef::Int(7)).await.unwrap().is_some());
    assert_eq!(load(&cache), warmed + 1);
    reader.close();
}
