//! The engine seam: a driver begins a build, "tasks" (separate writers, as on executors)
//! write the shards of their partitions from Arrow batches (plans and results passed as
//! JSON), a speculative duplicate writes one partition again, and the driver commits: one
//! winner per shard, the losers and the attempt claims deleted, every key readable. Misrouted
//! rows, missing shards and results from another writer version are refused, and a refused or
//! aborted build leaves `_CURRENT` untouched.

use std::sync::Arc;

use arrow_array::{ArrayRef, BinaryArray, Int64Array, RecordBatch};
use shardyfusion_core::{ErrorKind, KeyRef, WriteConfig, WriteOptions, hash_db_id};
use shardyfusion_storage::StorageResolver;
use shardyfusion_writer::{BuildPlan, ShardResult, ShardedWriter, ValueSpec};

use crate::{Shards, store_for, unique};

const NUM_DBS: u32 = 4;

fn value(k: i64) -> Vec<u8> {
    format!("engine-{k}").into_bytes()
}

/// The rows of `keys` as one Arrow batch.
fn batch(keys: &[i64]) -> RecordBatch {
    RecordBatch::try_from_iter([
        ("id", Arc::new(Int64Array::from(keys.to_vec())) as ArrayRef),
        (
            "v",
            Arc::new(BinaryArray::from_iter_values(
                keys.iter().map(|k| value(*k)),
            )) as ArrayRef,
        ),
    ])
    .unwrap()
}

fn stream(
    keys: Vec<i64>,
) -> impl futures::Stream<Item = Result<RecordBatch, std::convert::Infallible>> {
    futures::stream::iter([Ok(batch(&keys))])
}

fn writer(prefix: &str, resolver: &StorageResolver) -> ShardedWriter {
    let config = WriteConfig::builder(prefix)
        .num_dbs(NUM_DBS)
        .manifest_store(store_for(prefix, resolver))
        .build()
        .unwrap();
    ShardedWriter::new(config).unwrap()
}

/// The keys of `0..n` that route to one of `shards`.
fn keys_of(n: i64, shards: &[u32]) -> Vec<i64> {
    (0..n)
        .filter(|k| shards.contains(&hash_db_id(KeyRef::Int(*k), NUM_DBS).unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_write_partitions_and_the_driver_commits() {
    let dir = std::env::temp_dir().join(unique("sf-engine"));
    let prefix = dir.to_str().unwrap().to_owned();
    let resolver = StorageResolver::default();
    let v = ValueSpec::BinaryColumn("v".into());
    let opts = WriteOptions::default();
    let driver = writer(&prefix, &resolver);
    let build = driver.begin("id", &opts).await.unwrap();
    // Plans and results cross process boundaries as JSON.
    let plan = BuildPlan::from_json(&build.plan().to_json()).unwrap();
    assert_eq!(&plan, build.plan());
    assert_eq!(plan.num_dbs, NUM_DBS);

    // The routing the tasks check, for repartitioning: the same as the HASH of each key.
    let routed = driver.route_batch(&plan, &batch(&[1, 2, 3, 42])).unwrap();
    for (i, k) in [1i64, 2, 3, 42].iter().enumerate() {
        assert_eq!(
            routed.value(i),
            hash_db_id(KeyRef::Int(*k), NUM_DBS).unwrap()
        );
    }
    let nulls = RecordBatch::try_from_iter([(
        "id",
        Arc::new(Int64Array::from(vec![Some(1), None])) as ArrayRef,
    )])
    .unwrap();
    let err = driver.route_batch(&plan, &nulls).unwrap_err();
    assert_eq!(err.input_row(), Some(1), "{err}");

    // Two tasks of two shards each, plus a speculative duplicate of the first one.
    let (a, b) = ([0u32, 1], [2u32, 3]);
    let mut results = Vec::new();
    for shards in [&a[..], &b[..], &a[..]] {
        let task = writer(&prefix, &resolver);
        let r = task
            .write_partition(&plan, shards, stream(keys_of(2000, shards)), &v, &opts)
            .await
            .unwrap();
        assert_eq!(
            r.iter().map(|r| r.db_id).collect::<Vec<_>>(),
            shards.to_vec()
        );
        results.extend(
            r.iter()
                .map(|r| ShardResult::from_json(&r.to_json()).unwrap()),
        );
    }
    // The duplicate claimed new attempt numbers: no two results share a URL.
    let mut urls: Vec<_> = results.iter().filter_map(|r| r.db_url.clone()).collect();
    let n = urls.len();
    urls.sort();
    urls.dedup();
    assert_eq!(urls.len(), n, "{urls:?}");
    let losers: Vec<String> = results
        .iter()
        .filter(|r| r.attempt > 0)
        .filter_map(|r| r.db_url.clone())
        .collect();
    assert_eq!(losers.len(), 2, "the duplicate's two shards are attempt 1");

    let r = driver.commit(build, results).await.unwrap();
    assert_eq!(r.stats.rows_written, 2000);
    assert!(r.winners.iter().all(|w| w.attempt == 0));
    for url in &losers {
        let path = url.strip_prefix("file://").unwrap();
        assert!(!std::path::Path::new(path).exists(), "loser {url} kept");
    }
    assert!(
        !dir.join("_claims")
            .join(format!("run_id={}", plan.run_id))
            .exists()
    );
    let store = store_for(&prefix, &resolver);
    let m = store
        .load_manifest(&r.manifest_ref.manifest_ref)
        .await
        .unwrap();
    let shards = Shards::open(m, &resolver).await;
    for k in 0..2000 {
        assert_eq!(shards.get(KeyRef::Int(k)).await, Some(value(k)), "key {k}");
    }
    shards.close().await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_builds_publish_nothing() {
    let dir = std::env::temp_dir().join(unique("sf-engine-bad"));
    let prefix = dir.to_str().unwrap().to_owned();
    let resolver = StorageResolver::default();
    let v = ValueSpec::BinaryColumn("v".into());
    let opts = WriteOptions::default();
    let driver = writer(&prefix, &resolver);
    let current = || async { store_for(&prefix, &resolver).load_current().await.unwrap() };

    // A row of shard 2 in a partition that writes shards 0 and 1.
    let build = driver.begin("id", &opts).await.unwrap();
    let plan = build.plan().clone();
    let stray = keys_of(100, &[2])[0];
    let err = writer(&prefix, &resolver)
        .write_partition(&plan, &[0, 1], stream(vec![stray]), &v, &opts)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ShardAssignment, "{err}");
    assert!(err.message().contains("shard 2"), "{err}");
    driver.abort(build, &err).await;

    // Shards 2 and 3 never reported: coverage fails at commit.
    let build = driver.begin("id", &opts).await.unwrap();
    let plan = build.plan().clone();
    let part = writer(&prefix, &resolver)
        .write_partition(&plan, &[0, 1], stream(keys_of(200, &[0, 1])), &v, &opts)
        .await
        .unwrap();
    let err = driver.commit(build, part).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ShardCoverage, "{err}");

    // A result from another writer version is refused before anything is published.
    let build = driver.begin("id", &opts).await.unwrap();
    let plan = build.plan().clone();
    let mut all = Vec::new();
    for shards in [[0u32, 1], [2, 3]] {
        all.extend(
            writer(&prefix, &resolver)
                .write_partition(&plan, &shards, stream(keys_of(200, &shards)), &v, &opts)
                .await
                .unwrap(),
        );
    }
    all[3].writer_version = "0.0.0-other".into();
    let err = driver.commit(build, all).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConfigValidation, "{err}");
    assert!(err.message().contains("0.0.0-other"), "{err}");
    assert_eq!(current().await, None, "nothing was published");

    // A task cannot write into a plan from another writer version.
    let build = driver.begin("id", &opts).await.unwrap();
    let mut plan = build.plan().clone();
    plan.writer_version = "9.9.9".into();
    let err = writer(&prefix, &resolver)
        .write_partition(&plan, &[0], stream(vec![]), &v, &opts)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConfigValidation, "{err}");
    driver.abort(build, &err).await;
    std::fs::remove_dir_all(dir).unwrap();
}
