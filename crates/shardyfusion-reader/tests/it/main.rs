//! Integration tests of the blocking readers: many threads, admission control, refresh from
//! another thread, calls from inside an async context.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use shardyfusion_core::{ErrorKind, Key, KeyRef, ManifestStore, WriteConfig, WriteOptions};
use shardyfusion_reader::{
    ConcurrentOptions, ConcurrentShardedReader, ReaderOptions, ShardedReader, ThreadSafety,
};
use shardyfusion_storage::StorageResolver;
use shardyfusion_store_s3::ObjectStoreManifestStore;
use shardyfusion_writer::ShardedWriter;

fn publish(store: &Arc<dyn ManifestStore>, prefix: &str, num_dbs: u32, generation: u32) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let config = WriteConfig::builder(prefix)
            .num_dbs(num_dbs)
            .manifest_store(store.clone())
            .build()
            .unwrap();
        let keys: Vec<i64> = (0..100).collect();
        ShardedWriter::new(config)
            .unwrap()
            .with_run_registry(false)
            .write(
                &keys,
                |k| Key::Int(**k),
                move |k| format!("g{generation}-{k}").into_bytes(),
                &WriteOptions::default(),
            )
            .await
            .unwrap();
    });
}

fn setup(name: &str) -> (Arc<dyn ManifestStore>, String) {
    let prefix = format!("memory://sync/{name}-{}", std::process::id());
    let store: Arc<dyn ManifestStore> =
        Arc::new(ObjectStoreManifestStore::new(&prefix, StorageResolver::default()).unwrap());
    publish(&store, &prefix, 4, 1);
    (store, prefix)
}

#[test]
fn threads_read_while_another_refreshes() {
    let (store, prefix) = setup("threads");
    let reader = Arc::new(
        ConcurrentShardedReader::open(
            store.clone(),
            ReaderOptions::default(),
            ConcurrentOptions::default(),
        )
        .unwrap(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..3)
        .map(|t| {
            let (reader, stop) = (reader.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let k = (n * 7 + t) % 100;
                    let v = reader.get(KeyRef::Int(k)).unwrap().unwrap();
                    assert!(
                        String::from_utf8(v.to_vec())
                            .unwrap()
                            .ends_with(&format!("-{k}"))
                    );
                    n += 1;
                }
                n
            })
        })
        .collect();
    for g in 2..=6 {
        publish(&store, &prefix, 2 + g % 4, g);
        assert!(reader.refresh().unwrap());
    }
    stop.store(true, Ordering::Relaxed);
    let total: i64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    assert!(total > 0);
    assert_eq!(
        reader.get(KeyRef::Int(5)).unwrap().as_deref(),
        Some(&b"g6-5"[..])
    );
    reader.close();
    assert_eq!(
        reader.get(KeyRef::Int(5)).unwrap_err().kind(),
        ErrorKind::ReaderState
    );
}

#[test]
fn admission_control_times_out_with_pool_exhausted() {
    // A rate limiter that holds each read for 400 ms keeps the only slot busy.
    /// Holds each read (and so the only slot) for 400 ms, and says when it has started.
    struct Slow(Arc<AtomicBool>);
    #[async_trait::async_trait]
    impl shardyfusion_reader_async::ReadRateLimiter for Slow {
        async fn acquire(&self, _n: u64) {
            self.0.store(true, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
    }
    let entered = Arc::new(AtomicBool::new(false));
    let (store2, _) = setup("pool2");
    let slow = Arc::new(
        ConcurrentShardedReader::open(
            store2,
            ReaderOptions::default().with_rate_limiter(Arc::new(Slow(entered.clone()))),
            ConcurrentOptions::default()
                .with_thread_safety(ThreadSafety::Pool)
                .with_max_in_flight(1)
                .with_checkout_timeout(Duration::from_millis(50)),
        )
        .unwrap(),
    );
    let s2 = slow.clone();
    let holder = std::thread::spawn(move || s2.get(KeyRef::Int(1)).unwrap());
    while !entered.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let err = slow.get(KeyRef::Int(2)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PoolExhausted);
    assert!(err.is_retryable());
    assert!(holder.join().unwrap().is_some());
    assert!("bogus".parse::<ThreadSafety>().is_err());
    assert!(
        ConcurrentShardedReader::open(
            setup("bad").0,
            ReaderOptions::default(),
            ConcurrentOptions::default().with_max_in_flight(0)
        )
        .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_reader_inside_an_async_context_does_not_panic() {
    let (store, _) = tokio::task::spawn_blocking(|| setup("inasync"))
        .await
        .unwrap();
    let reader = ShardedReader::open(store, ReaderOptions::default()).unwrap();
    assert_eq!(
        reader.get(KeyRef::Int(9)).unwrap().as_deref(),
        Some(&b"g1-9"[..])
    );
    assert_eq!(reader.snapshot_info().unwrap().num_dbs, 4);
    drop(reader); // dropping the private runtime here must not panic either
}
