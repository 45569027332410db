//! Every key written reads back through SlateDB; manifests hold what SPEC says.

use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use shardyfusion_cel::{CelValue, routing_context};
use shardyfusion_core::metrics::{OwnedMetricValue, RecordingCollector};
use shardyfusion_core::{
    CelColumnType, Key, KeyEncoding, KeyRef, MetricEvent, S3ConnectionOptions, ShardingSpec,
    StaticCredentialProvider, WriteConfig, WriteOptions,
};
use shardyfusion_storage::{StorageResolver, StorageRetry};
use shardyfusion_writer::{ShardedWriter, ValueSpec};

use crate::{Shards, s3_server, store_for, unique};

fn value(k: i64) -> Vec<u8> {
    format!("value-{k:08}").into_bytes()
}

async fn round_trip(prefix: &str, resolver: StorageResolver, options: WriteOptions) {
    let store = store_for(prefix, &resolver);
    let metrics = Arc::new(RecordingCollector::default());
    let config = WriteConfig::builder(prefix)
        .num_dbs(8)
        .batch_size(1000)
        .manifest_store(store.clone())
        .metrics_collector(metrics.clone())
        .custom_manifest_fields(serde_json::json!({"team": "ml"}))
        .build()
        .unwrap();
    let keys: Vec<i64> = (0..5000).collect();
    let result = ShardedWriter::new(config)
        .unwrap()
        .with_storage(resolver.clone())
        .write(&keys, |k| Key::Int(**k), |k| value(**k), &options)
        .await
        .unwrap();
    assert_eq!(result.stats.rows_written, 5000);
    assert_eq!(result.num_dbs, 8);
    assert_eq!(result.stats.num_winners, 8);

    // The manifest, field by field.
    let current = store.load_current().await.unwrap().unwrap();
    assert_eq!(current.manifest_ref, result.manifest_ref.manifest_ref);
    let m = store.load_manifest(&current.manifest_ref).await.unwrap();
    assert_eq!(m.build.run_id, result.run_id);
    assert_eq!(m.build.num_dbs, 8);
    assert_eq!(m.build.s3_prefix, prefix);
    assert_eq!(m.build.key_col, "_key");
    assert_eq!(m.build.key_encoding, KeyEncoding::U64Be);
    assert_eq!(m.build.custom["team"], "ml");
    assert_eq!(m.row_count(), 5000);
    for s in &m.shards {
        let url = s.db_url.as_deref().unwrap();
        // A plain path prefix is recorded as given, shard URLs as the absolute file:// URL.
        assert!(
            ["file:///", "memory://", "s3://"]
                .iter()
                .any(|p| url.starts_with(p)),
            "{url}"
        );
        assert!(
            url.ends_with(&format!(
                "/shards/run_id={}/db={:05}/attempt=00",
                result.run_id, s.db_id
            )),
            "{url}"
        );
        assert_eq!((s.attempt, s.db_bytes), (0, 0));
        assert_eq!(s.checkpoint_id.as_ref().map(String::len), Some(32));
        let (Some(Key::Int(lo)), Some(Key::Int(hi))) = (&s.min_key, &s.max_key) else {
            panic!("{s:?}")
        };
        assert!(lo <= hi);
    }
    // Every key reads back; absent keys are absent.
    let shards = Shards::open(m, &resolver).await;
    for k in (0..5000).step_by(7) {
        assert_eq!(shards.get(KeyRef::Int(k)).await, Some(value(k)), "key {k}");
    }
    assert_eq!(shards.get(KeyRef::Int(5000)).await, None);
    shards.close().await;

    // Metric events of the write path.
    for e in [
        MetricEvent::WriteStarted,
        MetricEvent::WriteShardStarted,
        MetricEvent::WriteShardCompleted,
        MetricEvent::WriteShardsCompleted,
        MetricEvent::WriteBatchWritten,
        MetricEvent::WriteManifestPublished,
        MetricEvent::WriteCurrentPublished,
        MetricEvent::WriteCompleted,
    ] {
        assert!(metrics.count(e) > 0, "{e} not emitted");
    }
    let events = metrics.events();
    let completed = events
        .iter()
        .find(|e| e.event == MetricEvent::WriteCompleted)
        .unwrap();
    assert_eq!(
        completed.field("rows_written"),
        Some(&OwnedMetricValue::Int(5000))
    );
    let current_ev = events
        .iter()
        .find(|e| e.event == MetricEvent::WriteCurrentPublished)
        .unwrap();
    assert_eq!(
        current_ev.field("manifest_ref"),
        Some(&OwnedMetricValue::Str(current.manifest_ref.clone()))
    );
    for e in events
        .iter()
        .filter(|e| e.event == MetricEvent::WriteShardCompleted)
    {
        for f in ["elapsed_ms", "duration_ms", "row_count", "db_id"] {
            assert!(e.field(f).is_some(), "{f}");
        }
    }
    // The run record says succeeded.
    let rec_url = result.run_record_ref.clone().unwrap();
    let loc = resolver.resolve(&rec_url).unwrap();
    use shardyfusion_storage::object_store::ObjectStoreExt;
    let yaml = String::from_utf8(
        loc.store
            .get(&loc.path)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    assert!(yaml.contains("status: succeeded"), "{yaml}");
    assert!(yaml.contains(&current.manifest_ref), "{yaml}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_memory_sequential() {
    round_trip(
        &format!("memory://w/{}", unique("seq")),
        StorageResolver::default(),
        WriteOptions::default(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_local_directory_parallel() {
    let dir = std::env::temp_dir().join(unique("sf-writer"));
    let opts = WriteOptions::builder()
        .parallel(true)
        .max_queue_size(2)
        .max_parallel_bytes_in_flight(64 << 10)
        .build()
        .unwrap();
    round_trip(dir.to_str().unwrap(), StorageResolver::default(), opts).await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_s3_server() {
    let Some((endpoint, bucket)) = s3_server() else {
        return;
    };
    let (id, secret) = shardyfusion_store_conformance::s3_test_identity();
    let resolver = StorageResolver::builder()
        .credential_provider(Arc::new(StaticCredentialProvider::new(id, secret, None)))
        .s3_options(
            S3ConnectionOptions::new()
                .with_endpoint_url(&endpoint)
                .with_region("us-east-1"),
        )
        .retry(StorageRetry::fast(3))
        .build();
    let opts = WriteOptions::builder().parallel(true).build().unwrap();
    round_trip(
        &format!("s3://{bucket}/{}", unique("writer")),
        resolver,
        opts,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caps_sorting_and_max_keys_per_shard() {
    let prefix = format!("memory://w/{}", unique("caps"));
    let resolver = StorageResolver::default();
    let store = store_for(&prefix, &resolver);
    let config = WriteConfig::builder(&prefix)
        .sharding(ShardingSpec::hash_with_max_keys_per_shard(300))
        .key_encoding(KeyEncoding::Utf8)
        .manifest_store(store.clone())
        .build()
        .unwrap();
    let keys: Vec<String> = (0..1000).map(|i| format!("user:{i}")).collect();
    let opts = WriteOptions::builder()
        .max_total_batched_items(50)
        .max_total_batched_bytes(4096)
        .sort_within_partitions(false)
        .build()
        .unwrap();
    let r = ShardedWriter::new(config)
        .unwrap()
        .write(
            &keys,
            |k| Key::Str((*k).clone()),
            // Values borrowed from the records: no copy before the batch buffer.
            |k| k.as_bytes(),
            &opts,
        )
        .await
        .unwrap();
    assert_eq!(r.num_dbs, 4, "ceil(1000 / 300)");
    let m = store
        .load_manifest(&r.manifest_ref.manifest_ref)
        .await
        .unwrap();
    assert_eq!(m.build.key_encoding, KeyEncoding::Utf8);
    let shards = Shards::open(m, &resolver).await;
    for k in &keys {
        assert_eq!(
            shards.get(KeyRef::Str(k)).await.as_deref(),
            Some(k.as_bytes())
        );
    }
    shards.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cel_categorical_multi_column_and_inferred() {
    let prefix = format!("memory://w/{}", unique("cel"));
    let resolver = StorageResolver::default();
    let store = store_for(&prefix, &resolver);
    let spec =
        ShardingSpec::cel("region", [("region", CelColumnType::String)]).infer_routing_values();
    let config = WriteConfig::builder(&prefix)
        .sharding(spec)
        .manifest_store(store.clone())
        .build()
        .unwrap();
    let regions = ["us", "eu", "ap"];
    let rows: Vec<(i64, &str)> = (0..300).map(|i| (i, regions[(i % 3) as usize])).collect();
    let r = ShardedWriter::new(config)
        .unwrap()
        .write_with_columns(
            &rows,
            |r| Key::Int(r.0),
            |r| format!("{}-{}", r.1, r.0).into_bytes(),
            |r| routing_context([("region", CelValue::from(r.1))]),
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(r.num_dbs, 3);
    let m = store
        .load_manifest(&r.manifest_ref.manifest_ref)
        .await
        .unwrap();
    let values = m.build.sharding.routing_values.clone().unwrap();
    assert_eq!(
        values,
        vec!["ap".into(), "eu".into(), "us".into()],
        "inferred and sorted"
    );
    let shards = Shards::open(m, &resolver).await;
    for (k, region) in &rows {
        let db_id = values.iter().position(|v| *v == (*region).into()).unwrap() as u32;
        assert_eq!(
            shards.get_in(db_id, KeyRef::Int(*k)).await,
            Some(format!("{region}-{k}").into_bytes())
        );
    }
    shards.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cel_direct_mode_discovers_num_dbs() {
    let prefix = format!("memory://w/{}", unique("direct"));
    let resolver = StorageResolver::default();
    let store = store_for(&prefix, &resolver);
    let spec = shardyfusion_cel::cel_sharding_by_columns(
        &[shardyfusion_cel::CelColumn::new("key", CelColumnType::Int)],
        Some(5),
        ":",
    )
    .unwrap();
    let config = WriteConfig::builder(&prefix)
        .sharding(spec)
        .manifest_store(store.clone())
        .build()
        .unwrap();
    let keys: Vec<i64> = (0..500).collect();
    let r = ShardedWriter::new(config)
        .unwrap()
        .write(
            &keys,
            |k| Key::Int(**k),
            |k| value(**k),
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(r.num_dbs, 5);
    let m = store
        .load_manifest(&r.manifest_ref.manifest_ref)
        .await
        .unwrap();
    assert_eq!(
        m.build.sharding.cel_expr.as_deref(),
        Some("shard_hash(key) % 5u")
    );
    // shard_hash(k) % 5u routes exactly like HASH with 5 shards.
    let shards = Shards::open(m, &resolver).await;
    for k in &keys {
        assert_eq!(shards.get(KeyRef::Int(*k)).await, Some(value(*k)));
    }
    shards.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arrow_batches_with_json_values_and_single_db() {
    let prefix = format!("memory://w/{}", unique("arrow"));
    let resolver = StorageResolver::default();
    let store = store_for(&prefix, &resolver);
    let config = WriteConfig::builder(&prefix)
        .num_dbs(3)
        .manifest_store(store.clone())
        .build()
        .unwrap();
    let ids: ArrayRef = Arc::new(Int64Array::from(vec![1, 2, 3]));
    let names: ArrayRef = Arc::new(StringArray::from(vec![Some("a\"b"), None, Some("é")]));
    let scores: ArrayRef = Arc::new(Int64Array::from(vec![10, 20, 30]));
    let batch =
        RecordBatch::try_from_iter([("id", ids), ("name", names), ("score", scores)]).unwrap();
    let writer = ShardedWriter::new(config).unwrap();
    let r = writer
        .write_batches(
            std::slice::from_ref(&batch),
            "id",
            &ValueSpec::JsonColumns(None),
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    let m = store
        .load_manifest(&r.manifest_ref.manifest_ref)
        .await
        .unwrap();
    assert_eq!(m.build.key_col, "id");
    let shards = Shards::open(m, &resolver).await;
    assert_eq!(
        shards.get(KeyRef::Int(1)).await.unwrap(),
        br#"{"name":"a\"b","score":10}"#
    );
    assert_eq!(
        shards.get(KeyRef::Int(2)).await.unwrap(),
        br#"{"name":null,"score":20}"#
    );
    assert_eq!(
        shards.get(KeyRef::Int(3)).await.unwrap(),
        br#"{"name":"\u00e9","score":30}"#
    );
    shards.close().await;
    let err = writer
        .write_batches(
            &[batch],
            "nope",
            &ValueSpec::BinaryColumn("name".into()),
            &WriteOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(err.message().contains("\"nope\""), "{err}");

    // One database, keys sorted.
    let single_prefix = format!("memory://w/{}", unique("single"));
    let single_store = store_for(&single_prefix, &resolver);
    let cfg = WriteConfig::builder(&single_prefix)
        .num_dbs(1)
        .manifest_store(single_store.clone())
        .build()
        .unwrap();
    let keys: Vec<i64> = (0..200).rev().collect();
    let r = ShardedWriter::new(cfg)
        .unwrap()
        .write_single_db(
            &keys,
            |k| Key::Int(**k),
            |k| value(**k),
            true,
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        (r.num_dbs, r.stats.num_winners, r.stats.rows_written),
        (1, 1, 200)
    );
    let m = single_store
        .load_manifest(&r.manifest_ref.manifest_ref)
        .await
        .unwrap();
    assert_eq!(
        (m.shards[0].min_key.clone(), m.shards[0].max_key.clone()),
        (Some(Key::Int(0)), Some(Key::Int(199)))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_hold_and_do_not_hang() {
    let prefix = format!("memory://w/{}", unique("rate"));
    let resolver = StorageResolver::default();
    let store = store_for(&prefix, &resolver);
    let metrics = Arc::new(RecordingCollector::default());
    let config = WriteConfig::builder(&prefix)
        .num_dbs(1)
        .batch_size(500)
        .manifest_store(store)
        .metrics_collector(metrics.clone())
        .build()
        .unwrap();
    let keys: Vec<i64> = (0..1000).collect();
    // 1000 rows/s with 500-row batches and a 200 rows/s bucket: batches bigger than the bucket
    // still complete, and the long-run rate holds (1000 rows at 200/s: about 2.5 s after the
    // first full bucket).
    let opts = WriteOptions::builder()
        .max_writes_per_second(200.0)
        .build()
        .unwrap();
    let start = std::time::Instant::now();
    ShardedWriter::new(config)
        .unwrap()
        .write(&keys, |k| Key::Int(**k), |k| value(**k), &opts)
        .await
        .unwrap();
    assert!(
        start.elapsed().as_secs_f64() >= 2.0,
        "{:?}",
        start.elapsed()
    );
    assert!(metrics.count(MetricEvent::RateLimiterThrottled) >= 1);
}

/// The Python SlateDB binding (0.13.1) from `cargo xtask it`.
fn python() -> Option<String> {
    shardyfusion_store_conformance::server_env("SHARDYFUSION_PYTHON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_slatedb_and_sqlite3_read_a_rust_snapshot() {
    let Some(py) = python() else { return };
    let dir = std::env::temp_dir().join(unique("sf-pycheck"));
    let prefix = dir.to_str().unwrap().to_owned();
    let resolver = StorageResolver::default();
    let store = store_for(&prefix, &resolver);
    let config = WriteConfig::builder(&prefix)
        .num_dbs(4)
        .manifest_store(store)
        .custom_manifest_fields(serde_json::json!({"team": "ml"}))
        .build()
        .unwrap();
    let keys: Vec<i64> = (0..600).collect();
    // Small memtables: each shard flushes more than four L0 SSTs and is compacted into one sorted
    // run at close, so Python reads compacted shards.
    let r = ShardedWriter::new(config)
        .unwrap()
        .with_slatedb_options(crate::compaction::tiny_memtables())
        .write(
            &keys,
            |k| Key::Int(**k),
            |k| value(**k),
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let pairs: Vec<serde_json::Value> = keys
        .iter()
        .map(|k| {
            let db = shardyfusion_core::hash_db_id(KeyRef::Int(*k), 4).unwrap();
            serde_json::json!([
                db,
                hex(&KeyEncoding::U64Be.encode(KeyRef::Int(*k)).unwrap()),
                hex(&value(*k))
            ])
        })
        .collect();
    let expected = dir.join("expected.json");
    std::fs::write(
        &expected,
        serde_json::json!({"pairs": pairs, "num_dbs": 4}).to_string(),
    )
    .unwrap();
    let manifest_rel = r
        .manifest_ref
        .manifest_ref
        .strip_prefix(&format!("file://{prefix}/"))
        .unwrap()
        .to_owned();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/py/read_snapshot.py");
    let out = tokio::process::Command::new(py)
        .args([script, &prefix, &manifest_rel, expected.to_str().unwrap()])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python check failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.trim(), "checked 600 keys in 4 shards");
    std::fs::remove_dir_all(dir).unwrap();
}
