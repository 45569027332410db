//! Failure safety: transient faults are absorbed, a failure at each step leaves the previous
//! snapshot current and readable, invalid input fails before anything is published.

use std::sync::Arc;
use std::time::Duration;

use shardyfusion_core::metrics::RecordingCollector;
use shardyfusion_core::{
    CelColumnType, ErrorKind, Key, KeyEncoding, KeyRef, ManifestStore, MetricEvent, RetryConfig,
    ShardingSpec, WriteConfig, WriteOptions,
};
use shardyfusion_storage::object_store::memory::InMemory;
use shardyfusion_storage::object_store::path::Path;
use shardyfusion_storage::object_store::{ObjectStore, ObjectStoreExt};
use shardyfusion_storage::{FaultInjectingStore, FaultRule, Op, StorageResolver, StorageRetry};
use shardyfusion_store_s3::ObjectStoreManifestStore;
use shardyfusion_writer::{ShardedWriter, SlateDbOptions};

use crate::{Shards, unique};

struct Env {
    faults: Arc<FaultInjectingStore>,
    resolver: StorageResolver,
    store: Arc<dyn ManifestStore>,
    prefix: String,
    metrics: Arc<RecordingCollector>,
}

fn env() -> Env {
    let bucket = unique("faulty");
    let faults = Arc::new(FaultInjectingStore::wrap(Arc::new(InMemory::new())));
    let resolver = StorageResolver::builder()
        .retry(StorageRetry::fast(4))
        .bucket_override(bucket.clone(), faults.clone() as Arc<dyn ObjectStore>)
        .build();
    let prefix = format!("s3://{bucket}/snap");
    let store: Arc<dyn ManifestStore> =
        Arc::new(ObjectStoreManifestStore::new(&prefix, resolver.clone()).unwrap());
    Env {
        faults,
        resolver,
        store,
        prefix,
        metrics: Arc::new(RecordingCollector::default()),
    }
}

impl Env {
    fn writer(&self, retry: Option<RetryConfig>) -> ShardedWriter {
        let mut b = WriteConfig::builder(&self.prefix)
            .num_dbs(4)
            .batch_size(100)
            .manifest_store(self.store.clone())
            .metrics_collector(self.metrics.clone());
        if let Some(r) = retry {
            b = b.shard_retry(r);
        }
        ShardedWriter::new(b.build().unwrap())
            .unwrap()
            .with_storage(self.resolver.clone())
            .with_slatedb_options(SlateDbOptions::default().with_object_store_max_retries(2))
    }

    async fn write(
        &self,
        w: &ShardedWriter,
        tag: &str,
    ) -> shardyfusion_core::Result<shardyfusion_writer::BuildResult> {
        let keys: Vec<i64> = (0..400).collect();
        let tag = tag.to_owned();
        w.write(
            &keys,
            |k| Key::Int(**k),
            move |k| format!("{tag}-{k}").into_bytes(),
            &WriteOptions::default(),
        )
        .await
    }

    async fn pointer(&self) -> Vec<u8> {
        self.faults
            .get(&Path::from("snap/_CURRENT"))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .to_vec()
    }

    /// The previous snapshot is still current and every key reads back with its old value.
    async fn assert_old_snapshot_current(&self, before: &[u8], old_ref: &str) {
        assert_eq!(self.pointer().await, before, "_CURRENT must not move");
        let cur = self.store.load_current().await.unwrap().unwrap();
        assert_eq!(cur.manifest_ref, old_ref);
        let m = self.store.load_manifest(old_ref).await.unwrap();
        let shards = Shards::open(m, &self.resolver).await;
        for k in (0..400).step_by(13) {
            assert_eq!(
                shards.get(KeyRef::Int(k)).await,
                Some(format!("old-{k}").into_bytes())
            );
        }
        shards.close().await;
    }
}

fn quick_retry() -> RetryConfig {
    RetryConfig::new(3, Duration::from_millis(10), 2.0).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_percent_transient_faults_still_publish_everything() {
    let e = env();
    e.faults.gate().set_random_failures(0.10, true, 1234);
    let r = e.write(&e.writer(Some(quick_retry())), "v").await.unwrap();
    assert!(e.faults.gate().injected() > 0, "faults were injected");
    e.faults.gate().clear();
    let m = e
        .store
        .load_manifest(&r.manifest_ref.manifest_ref)
        .await
        .unwrap();
    assert_eq!(m.row_count(), 400);
    let shards = Shards::open(m, &e.resolver).await;
    for k in 0..400 {
        assert_eq!(
            shards.get(KeyRef::Int(k)).await,
            Some(format!("v-{k}").into_bytes()),
            "key {k}"
        );
    }
    shards.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_attempt_is_retried_with_a_new_url_and_cleaned_up() {
    let e = env();
    // Every write of shard 1's first attempt fails; attempt 01 succeeds.
    e.faults
        .gate()
        .add_rule(FaultRule::new(Some(Op::Put), "db=00001/attempt=00", false));
    let r = e.write(&e.writer(Some(quick_retry())), "v").await.unwrap();
    let w1 = r.winners.iter().find(|w| w.db_id == 1).unwrap();
    assert_eq!(w1.attempt, 1);
    assert!(
        w1.db_url
            .as_deref()
            .unwrap()
            .ends_with("/db=00001/attempt=01")
    );
    assert_eq!(w1.attempt_urls.len(), 2);
    assert!(e.metrics.count(MetricEvent::WriteShardRetried) >= 1);
    let m = e
        .store
        .load_manifest(&r.manifest_ref.manifest_ref)
        .await
        .unwrap();
    assert_eq!(m.shard(1).attempt, 1);
    // The losing attempt's objects are gone.
    e.faults.gate().clear();
    let left = e
        .faults
        .list(Some(&Path::from(format!(
            "snap/shards/run_id={}/db=00001/attempt=00",
            r.run_id
        ))))
        .collect::<Vec<_>>()
        .await;
    assert!(left.is_empty(), "{} objects left", left.len());
    let shards = Shards::open(m, &e.resolver).await;
    for k in 0..400 {
        assert_eq!(
            shards.get(KeyRef::Int(k)).await,
            Some(format!("v-{k}").into_bytes())
        );
    }
    shards.close().await;
}

use futures::StreamExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_exhausted_fail_the_write_and_keep_current() {
    let e = env();
    let old = e.write(&e.writer(None), "old").await.unwrap();
    let before = e.pointer().await;
    e.faults
        .gate()
        .add_rule(FaultRule::new(Some(Op::Put), "db=00002/attempt=", false));
    let err = e
        .write(
            &e.writer(Some(
                RetryConfig::new(1, Duration::from_millis(5), 1.0).unwrap(),
            )),
            "new",
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ShardWrite, "{err}");
    assert!(e.metrics.count(MetricEvent::WriteShardRetryExhausted) >= 1);
    e.faults.gate().clear();
    e.assert_old_snapshot_current(&before, &old.manifest_ref.manifest_ref)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_failure_at_each_step_keeps_the_previous_snapshot() {
    for (step, rule, kind) in [
        (
            "shard write",
            FaultRule::new(Some(Op::Put), "/shards/", false),
            ErrorKind::ShardWrite,
        ),
        (
            "manifest put",
            FaultRule::new(Some(Op::Put), "/manifests/", false),
            ErrorKind::PublishManifest,
        ),
        (
            "pointer put",
            FaultRule::new(Some(Op::Put), "_CURRENT", false),
            ErrorKind::PublishCurrent,
        ),
    ] {
        let e = env();
        let old = e.write(&e.writer(None), "old").await.unwrap();
        let before = e.pointer().await;
        e.faults.gate().add_rule(rule);
        let err = e.write(&e.writer(None), "new").await.unwrap_err();
        assert_eq!(err.kind(), kind, "{step}: {err}");
        e.faults.gate().clear();
        e.assert_old_snapshot_current(&before, &old.manifest_ref.manifest_ref)
            .await;
        // The run record says failed, with the error kind.
        let runs = e
            .faults
            .list(Some(&Path::from("snap/runs")))
            .collect::<Vec<_>>()
            .await;
        let mut failed = 0;
        for meta in runs {
            let text = String::from_utf8(
                e.faults
                    .get(&meta.unwrap().location)
                    .await
                    .unwrap()
                    .bytes()
                    .await
                    .unwrap()
                    .to_vec(),
            )
            .unwrap();
            if text.contains("status: failed") {
                assert!(
                    text.contains(&format!("error_type: \"{}\"", kind.name())),
                    "{step}: {text}"
                );
                failed += 1;
            }
        }
        assert_eq!(failed, 1, "{step}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_input_fails_before_publishing() {
    let e = env();
    let old = e.write(&e.writer(None), "old").await.unwrap();
    let before = e.pointer().await;
    let cfg = |enc: KeyEncoding| {
        WriteConfig::builder(&e.prefix)
            .num_dbs(4)
            .key_encoding(enc)
            .manifest_store(e.store.clone())
            .build()
            .unwrap()
    };
    let w = |enc| {
        ShardedWriter::new(cfg(enc))
            .unwrap()
            .with_storage(e.resolver.clone())
    };
    let opts = WriteOptions::default();

    // A string key under u64be.
    let keys = ["a".to_owned()];
    let err = w(KeyEncoding::U64Be)
        .write(&keys, |k| Key::Str((*k).clone()), |_| vec![1], &opts)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConfigValidation);
    assert!(err.message().contains("\"a\""), "{err}");
    // A negative key under u64be.
    let ints = [5i64, -1];
    let err = w(KeyEncoding::U64Be)
        .write(&ints, |k| Key::Int(**k), |_| vec![1], &opts)
        .await
        .unwrap_err();
    assert!(err.message().contains("-1"), "{err}");
    // An integer key under utf8, and mixed key types.
    let err = w(KeyEncoding::Utf8)
        .write(&ints, |k| Key::Int(**k), |_| vec![1], &opts)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConfigValidation);
    let mixed = [Key::Str("a".into()), Key::Bytes(b"b".to_vec()), Key::Int(1)];
    let err = w(KeyEncoding::Raw)
        .write(&mixed, |k| (*k).clone(), |_| vec![1], &opts)
        .await
        .unwrap_err();
    assert!(err.message().contains("mixes"), "{err}");
    // An unknown categorical token.
    let spec = ShardingSpec::cel("key", [("key", CelColumnType::String)])
        .with_routing_values(["eu", "us"]);
    let cel = WriteConfig::builder(&e.prefix)
        .sharding(spec)
        .key_encoding(KeyEncoding::Utf8)
        .manifest_store(e.store.clone())
        .build()
        .unwrap();
    let tokens = ["eu".to_owned(), "ap".to_owned()];
    let err = ShardedWriter::new(cel)
        .unwrap()
        .with_storage(e.resolver.clone())
        .write(&tokens, |k| Key::Str((*k).clone()), |_| vec![1], &opts)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ShardAssignment);
    assert!(err.message().contains("'ap'"), "{err}");
    // No manifest store at all.
    let no_store = WriteConfig::builder(&e.prefix).num_dbs(1).build().unwrap();
    assert_eq!(
        ShardedWriter::new(no_store).unwrap_err().kind(),
        ErrorKind::ConfigValidation
    );

    e.assert_old_snapshot_current(&before, &old.manifest_ref.manifest_ref)
        .await;
}

/// SPEC 15.1: a rerun with a run id that was already written never opens its shard paths (no
/// merge into published shards under readers): `ConfigValidation` naming the path, before any
/// object is written, and the published snapshot stays current with its values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reusing_a_run_id_is_refused_before_writing() {
    use futures::StreamExt;
    let e = env();
    let config = |tag: &str| {
        WriteConfig::builder(&e.prefix)
            .num_dbs(4)
            .batch_size(100)
            .run_id("nightly-1")
            .manifest_store(e.store.clone())
            .build()
            .unwrap_or_else(|err| panic!("{tag}: {err}"))
    };
    let first = ShardedWriter::new(config("first"))
        .unwrap()
        .with_storage(e.resolver.clone());
    let r = e.write(&first, "old").await.unwrap();
    let before = e.pointer().await;
    let objects = || async {
        e.faults
            .list(None)
            .map(|m| m.unwrap().location.to_string())
            .collect::<Vec<_>>()
            .await
    };
    let listed = objects().await;

    let again = ShardedWriter::new(config("again"))
        .unwrap()
        .with_storage(e.resolver.clone());
    let err = e.write(&again, "new").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConfigValidation, "{err}");
    assert!(
        err.message().contains("already holds objects")
            && err.message().contains("run_id=nightly-1/")
            && err.message().contains("new run id"),
        "the error names the path and what to do: {err}"
    );
    let mut after = objects().await;
    // The only new objects are the failed run's record (runs/…), never shard data.
    after.retain(|p| !listed.contains(p));
    assert!(
        after.iter().all(|p| p.contains("/runs/")),
        "nothing written under shards/ or manifests/: {after:?}"
    );
    e.assert_old_snapshot_current(&before, &r.manifest_ref.manifest_ref)
        .await;
}
