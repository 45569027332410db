//! Refresh, fallback, handles, service features, and the refresh stress test.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use shardyfusion_core::metrics::{OwnedMetricValue, RecordingCollector};
use shardyfusion_core::{ErrorKind, KeyRef, MetricEvent};
use shardyfusion_reader_async::{AsyncShardedReader, HealthStatus, ReadRateLimiter, ReaderOptions};
use shardyfusion_storage::StorageResolver;
use shardyfusion_storage::object_store::{ObjectStoreExt, PutPayload};

use crate::{publish, store_for, unique};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_swaps_whole_snapshots_and_handles_keep_theirs() {
    let prefix = format!("memory://r/{}", unique("refresh"));
    let resolver = StorageResolver::default();
    let store = store_for(&prefix, &resolver);
    let keys: Vec<i64> = (0..200).collect();
    publish(&store, &prefix, 4, 1, &keys).await;
    let metrics = Arc::new(RecordingCollector::default());
    let reader = AsyncShardedReader::open(
        store.clone(),
        ReaderOptions::default().with_metrics(metrics.clone()),
    )
    .await
    .unwrap();
    assert_eq!(
        reader.get(KeyRef::Int(7)).await.unwrap().as_deref(),
        Some(&b"g1-7"[..])
    );
    let handle = reader.reader_for_key(KeyRef::Int(7), None).unwrap();

    assert!(
        !reader.refresh().await.unwrap(),
        "same pointer: not changed"
    );
    publish(&store, &prefix, 6, 2, &keys).await;
    assert!(reader.refresh().await.unwrap());
    assert_eq!(reader.snapshot_info().unwrap().num_dbs, 6);
    assert_eq!(
        reader.get(KeyRef::Int(7)).await.unwrap().as_deref(),
        Some(&b"g2-7"[..])
    );
    // The handle still reads the snapshot it was taken from.
    assert_eq!(
        handle.get(KeyRef::Int(7)).await.unwrap().as_deref(),
        Some(&b"g1-7"[..])
    );
    handle.close();

    // A new manifest that does not parse leaves the reader where it was.
    let bad = publish(&store, &prefix, 3, 3, &keys).await;
    let loc = resolver.resolve(&bad.manifest_ref.manifest_ref).unwrap();
    loc.store
        .put(&loc.path, PutPayload::from_static(b"garbage"))
        .await
        .unwrap();
    assert!(!reader.refresh().await.unwrap());
    assert_eq!(
        reader.get(KeyRef::Int(7)).await.unwrap().as_deref(),
        Some(&b"g2-7"[..])
    );

    let changed: Vec<_> = metrics
        .events()
        .into_iter()
        .filter(|e| e.event == MetricEvent::ReaderRefreshed)
        .map(|e| e.field("changed").cloned())
        .collect();
    assert_eq!(
        changed,
        vec![
            Some(OwnedMetricValue::Bool(false)),
            Some(OwnedMetricValue::Bool(true)),
            Some(OwnedMetricValue::Bool(false))
        ]
    );
    assert!(metrics.count(MetricEvent::ReaderGet) >= 3);
    assert_eq!(metrics.count(MetricEvent::ReaderInitialized), 1);

    // Health and close.
    let h = reader.health(Some(Duration::from_secs(3600)));
    assert_eq!(
        (h.status, h.num_shards, h.is_closed),
        (HealthStatus::Healthy, 6, false)
    );
    assert_eq!(
        reader.health(Some(Duration::ZERO)).status,
        HealthStatus::Degraded
    );
    reader.close();
    reader.close();
    assert_eq!(
        reader.get(KeyRef::Int(7)).await.unwrap_err().kind(),
        ErrorKind::ReaderState
    );
    assert_eq!(
        reader.refresh().await.unwrap_err().kind(),
        ErrorKind::ReaderState
    );
    assert_eq!(reader.health(None).status, HealthStatus::Unhealthy);
    assert_eq!(metrics.count(MetricEvent::ReaderClosed), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_start_falls_back_to_an_older_manifest() {
    let prefix = format!("memory://r/{}", unique("fallback"));
    let resolver = StorageResolver::default();
    let store = store_for(&prefix, &resolver);
    let keys: Vec<i64> = (0..50).collect();
    publish(&store, &prefix, 2, 1, &keys).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let bad = publish(&store, &prefix, 2, 2, &keys).await;
    let loc = resolver.resolve(&bad.manifest_ref.manifest_ref).unwrap();
    loc.store
        .put(&loc.path, PutPayload::from_static(b"SQLite format 3\0junk"))
        .await
        .unwrap();
    let reader = AsyncShardedReader::open(store.clone(), ReaderOptions::default())
        .await
        .unwrap();
    assert_eq!(
        reader.get(KeyRef::Int(3)).await.unwrap().as_deref(),
        Some(&b"g1-3"[..])
    );
    let err = AsyncShardedReader::open(
        store.clone(),
        ReaderOptions::default().with_max_fallback_attempts(0),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ManifestParse);
    // Nothing published at all.
    let empty = store_for(&format!("memory://r/{}", unique("none")), &resolver);
    let err = AsyncShardedReader::open(empty, ReaderOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ReaderState);
    assert!(err.message().contains("CURRENT pointer not found"), "{err}");
}

struct Counting(AtomicU64);

#[async_trait]
impl ReadRateLimiter for Counting {
    async fn acquire(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_get_rate_limits_and_bad_keys() {
    let prefix = format!("memory://r/{}", unique("multi"));
    let resolver = StorageResolver::default();
    let store = store_for(&prefix, &resolver);
    let keys: Vec<i64> = (0..100).collect();
    publish(&store, &prefix, 8, 1, &keys).await;
    let limiter = Arc::new(Counting(AtomicU64::new(0)));
    let reader = AsyncShardedReader::open(
        store,
        ReaderOptions::default()
            .with_rate_limiter(limiter.clone())
            .with_max_concurrency(2),
    )
    .await
    .unwrap();
    let q = [
        KeyRef::Int(5),
        KeyRef::Int(500),
        KeyRef::Int(5),
        KeyRef::Int(42),
        KeyRef::Bytes(&[0, 0, 0, 0, 0, 0, 0, 9]),
    ];
    let got = reader.multi_get(&q).await.unwrap();
    let flat: Vec<(String, Option<Vec<u8>>)> = got
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_ref().map(|b| b.to_vec())))
        .collect();
    assert_eq!(
        flat,
        vec![
            ("5".into(), Some(b"g1-5".to_vec())),
            ("500".into(), None),
            ("42".into(), Some(b"g1-42".to_vec())),
            (
                "b\"\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\t\"".into(),
                Some(b"g1-9".to_vec())
            ),
        ],
        "distinct keys in first-occurrence order; pre-encoded bytes decode to the integer"
    );
    reader.get(KeyRef::Int(1)).await.unwrap();
    assert_eq!(
        limiter.0.load(Ordering::Relaxed),
        6,
        "5 for the multi_get (duplicates counted) + 1"
    );
    for bad in [KeyRef::Str("x"), KeyRef::Int(-1), KeyRef::Bytes(b"abc")] {
        assert_eq!(
            reader.get(bad).await.unwrap_err().kind(),
            ErrorKind::ConfigValidation,
            "{bad}"
        );
    }
    assert_eq!(
        reader.shard_for_key(KeyRef::Int(5), None).unwrap().db_id,
        reader.route_key(KeyRef::Int(5), None).unwrap()
    );
    assert!(
        reader
            .readers_for_keys(&[KeyRef::Int(1), KeyRef::Int(2), KeyRef::Int(1)], None)
            .unwrap()
            .len()
            <= 2
    );
    assert!(
        AsyncShardedReader::open(
            store_for(&prefix, &resolver),
            ReaderOptions::default().with_max_concurrency(0)
        )
        .await
        .is_err()
    );
}

/// Readers hammer the snapshot while another task publishes and refreshes 50 times with shard
/// counts changing: no read fails and every multi_get answer comes from one whole snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stress_refresh_while_reading() {
    let prefix = format!("memory://r/{}", unique("stress"));
    let resolver = StorageResolver::default();
    let store = store_for(&prefix, &resolver);
    let keys: Vec<i64> = (0..64).collect();
    publish(&store, &prefix, 3, 0, &keys).await;
    let reader = Arc::new(
        AsyncShardedReader::open(store.clone(), ReaderOptions::default())
            .await
            .unwrap(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for t in 0..2 {
        let (reader, stop, reads) = (reader.clone(), stop.clone(), reads.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = t as i64;
            while !stop.load(Ordering::Relaxed) {
                let k = i % 64;
                let v = reader
                    .get(KeyRef::Int(k))
                    .await
                    .expect("get never fails during refresh")
                    .expect("key present");
                let text = String::from_utf8(v.to_vec()).unwrap();
                assert!(text.ends_with(&format!("-{k}")), "{text}");
                let batch: Vec<KeyRef<'_>> = (0..16).map(|j| KeyRef::Int((i + j) % 64)).collect();
                let got = reader
                    .multi_get(&batch)
                    .await
                    .expect("multi_get never fails during refresh");
                let gens: std::collections::HashSet<String> = got
                    .iter()
                    .map(|(_, v)| {
                        String::from_utf8(v.as_ref().unwrap().to_vec())
                            .unwrap()
                            .split('-')
                            .next()
                            .unwrap()
                            .to_owned()
                    })
                    .collect();
                assert_eq!(gens.len(), 1, "one snapshot per multi_get: {gens:?}");
                reads.fetch_add(17, Ordering::Relaxed);
                i += 1;
                tokio::task::yield_now().await;
            }
        }));
    }
    for generation in 1..=50u32 {
        publish(&store, &prefix, 1 + generation % 7, generation, &keys).await;
        assert!(reader.refresh().await.unwrap());
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    assert!(reads.load(Ordering::Relaxed) > 0);
    assert_eq!(
        reader.get(KeyRef::Int(1)).await.unwrap().as_deref(),
        Some(&b"g50-1"[..])
    );
}
