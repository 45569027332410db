//! Resource limits on read (SPEC 15.4): a hostile `num_dbs` is refused or costs nothing, shard
//! opens run with bounded concurrency, and a retired snapshot closes its readers wherever its
//! last borrower lets go.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use shardyfusion_core::{
    ErrorKind, KeyRef, ManifestStore, NoopPublishObserver, ParsedManifest, RequiredBuildMeta,
    RequiredShardMeta, Result,
};
use shardyfusion_reader_async::{
    AsyncShardedReader, DEFAULT_MAX_NUM_DBS, ReaderOptions, ShardReader, ShardReaderFactory,
};
use shardyfusion_storage::StorageResolver;

use crate::{store_for, unique};

fn manifest(
    prefix: &str,
    num_dbs: u32,
    non_empty: u32,
) -> (RequiredBuildMeta, Vec<RequiredShardMeta>) {
    let build = RequiredBuildMeta::new(unique("run").replace('-', "x"), num_dbs, prefix);
    let shards = (0..non_empty)
        .map(|db_id| {
            let mut s = RequiredShardMeta::empty(db_id);
            s.db_url = Some(format!(
                "{prefix}/shards/run_id={}/db={db_id:05}/attempt=00",
                build.run_id
            ));
            s.row_count = 1;
            s
        })
        .collect();
    (build, shards)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_num_dbs_is_refused_and_costs_nothing_when_allowed() {
    let prefix = format!("memory://limits/{}", unique("p"));
    let store = store_for(&prefix, &StorageResolver::default());
    let (build, shards) = manifest(&prefix, 4_000_000_000, 0);
    store
        .publish(&build, &shards, &NoopPublishObserver)
        .await
        .unwrap();

    let err = AsyncShardedReader::open(
        store.clone(),
        ReaderOptions::default().with_max_fallback_attempts(0),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ManifestParse, "{err}");
    assert!(
        err.message().contains("4000000000")
            && err.message().contains(&DEFAULT_MAX_NUM_DBS.to_string()),
        "{err}"
    );

    // Raised on purpose, the snapshot opens: per-shard state exists only for the shards the
    // manifest has (none here), never for all 4 billion.
    let reader =
        AsyncShardedReader::open(store, ReaderOptions::default().with_max_num_dbs(u32::MAX))
            .await
            .unwrap();
    assert_eq!(reader.snapshot_info().unwrap().num_dbs, 4_000_000_000);
    assert_eq!(reader.get(KeyRef::Int(7)).await.unwrap(), None);
    reader.close();
}

/// Opens shards that answer nothing, counting opens in flight at once and closes.
#[derive(Debug, Default)]
struct Counting {
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    opened: AtomicUsize,
    closed: Arc<AtomicUsize>,
}

struct Nothing(Arc<AtomicUsize>);

#[async_trait]
impl ShardReader for Nothing {
    async fn get(&self, _key: &[u8]) -> Result<Option<Bytes>> {
        Ok(None)
    }
    async fn close(&self) -> Result<()> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[async_trait]
impl ShardReaderFactory for Counting {
    async fn open(
        &self,
        _shard: &RequiredShardMeta,
        _manifest: &ParsedManifest,
    ) -> Result<Arc<dyn ShardReader>> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        // Stand in for the first-byte latency of an object store.
        tokio::time::sleep(Duration::from_millis(2)).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.opened.fetch_add(1, Ordering::SeqCst);
        Ok(Arc::new(Nothing(self.closed.clone())))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shard_opens_run_with_bounded_concurrency() {
    let prefix = format!("memory://limits/{}", unique("p"));
    let store: Arc<dyn ManifestStore> = store_for(&prefix, &StorageResolver::default());
    let (build, shards) = manifest(&prefix, 1000, 300);
    store
        .publish(&build, &shards, &NoopPublishObserver)
        .await
        .unwrap();
    let factory = Arc::new(Counting::default());
    let reader = AsyncShardedReader::open(
        store,
        ReaderOptions::default()
            .with_factory(factory.clone())
            .with_shard_open_concurrency(8),
    )
    .await
    .unwrap();
    let max = factory.max_in_flight.load(Ordering::SeqCst);
    assert_eq!(factory.opened.load(Ordering::SeqCst), 300);
    assert!(
        (2..=8).contains(&max),
        "opens overlap but never exceed the bound: {max}"
    );
    reader.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_retired_outside_any_runtime_still_closes_its_readers() {
    let prefix = format!("memory://limits/{}", unique("p"));
    let store: Arc<dyn ManifestStore> = store_for(&prefix, &StorageResolver::default());
    let (build, shards) = manifest(&prefix, 8, 5);
    store
        .publish(&build, &shards, &NoopPublishObserver)
        .await
        .unwrap();
    let factory = Arc::new(Counting::default());
    let reader = AsyncShardedReader::open(
        store.clone(),
        ReaderOptions::default().with_factory(factory.clone()),
    )
    .await
    .unwrap();
    // A handle keeps the first snapshot alive across a refresh to a second one.
    let handle = reader.reader_for_key(KeyRef::Int(1), None).unwrap();
    let (build, shards) = manifest(&prefix, 8, 3);
    store
        .publish(&build, &shards, &NoopPublishObserver)
        .await
        .unwrap();
    assert!(reader.refresh().await.unwrap());
    assert_eq!(factory.closed.load(Ordering::SeqCst), 0);
    // The last borrower lets go on a thread with no runtime.
    std::thread::spawn(move || drop(handle)).join().unwrap();
    for _ in 0..500 {
        if factory.closed.load(Ordering::SeqCst) == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        factory.closed.load(Ordering::SeqCst),
        5,
        "the first snapshot's 5 readers"
    );
    reader.close();
}
