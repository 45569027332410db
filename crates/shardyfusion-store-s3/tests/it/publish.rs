//! Exact layout of a publish, and failures at each phase (fault-injecting store): a failure
//! before the pointer write leaves `_CURRENT` exactly as it was.

use std::sync::Arc;

use shardyfusion_core::metrics::RecordingCollector;
use shardyfusion_core::{ErrorKind, ManifestStore, MetricEvent, NoopPublishObserver, Timestamp};
use shardyfusion_manifest::pointer_from_json;
use shardyfusion_storage::object_store::memory::InMemory;
use shardyfusion_storage::object_store::path::Path;
use shardyfusion_storage::object_store::{ObjectStore, ObjectStoreExt};
use shardyfusion_storage::{FaultInjectingStore, FaultRule, Op, StorageResolver, StorageRetry};
use shardyfusion_store_conformance::sample_snapshot;
use shardyfusion_store_s3::ObjectStoreManifestStore;

use crate::unique;

#[tokio::test]
async fn layout_and_pointer_bytes() {
    let dir = std::env::temp_dir().join(unique("sf-layout"));
    let store =
        ObjectStoreManifestStore::new(dir.to_str().unwrap(), StorageResolver::default()).unwrap();
    let (build, shards) = sample_snapshot("run42", "s3://b/p");
    let r = store
        .publish(&build, &shards, &NoopPublishObserver)
        .await
        .unwrap();
    // manifests/<TS>_run_id=<id>/manifest with TS = %Y-%m-%dT%H:%M:%S.%fZ, ref = file:// URL.
    let prefix = format!("file://{}/manifests/", dir.display());
    let name = r
        .manifest_ref
        .strip_prefix(&prefix)
        .unwrap()
        .strip_suffix("/manifest")
        .unwrap();
    let (ts, id) = name.split_once("_run_id=").unwrap();
    assert_eq!(id, "run42");
    assert_eq!(ts.len(), 27, "{ts}");
    assert_eq!(Timestamp::parse(ts).unwrap().to_key_string(), ts);
    assert_eq!(r.published_at.to_key_string(), ts);
    assert!(dir.join("manifests").join(name).join("manifest").is_file());
    // The pointer: compact sorted JSON naming the manifest.
    let raw = std::fs::read(dir.join("_CURRENT")).unwrap();
    let text = String::from_utf8(raw.clone()).unwrap();
    assert!(text.starts_with(&format!(
        r#"{{"format_version":1,"manifest_content_type":"application/x-sqlite3","manifest_ref":"{}","run_id":"run42","updated_at":""#,
        r.manifest_ref
    )), "{text}");
    assert!(!text.ends_with('\n'));
    assert_eq!(
        pointer_from_json(&raw).unwrap().manifest_ref,
        r.manifest_ref
    );
    std::fs::remove_dir_all(dir).unwrap();
}

fn faulty() -> (
    Arc<FaultInjectingStore>,
    ObjectStoreManifestStore,
    Arc<RecordingCollector>,
) {
    let faults = Arc::new(FaultInjectingStore::wrap(Arc::new(InMemory::new())));
    let metrics = Arc::new(RecordingCollector::default());
    let resolver = StorageResolver::builder()
        .retry(StorageRetry::fast(3))
        .metrics(metrics.clone())
        .bucket_override("faulty", faults.clone() as Arc<dyn ObjectStore>)
        .build();
    let store = ObjectStoreManifestStore::new("s3://faulty/snap", resolver).unwrap();
    (faults, store, metrics)
}

async fn current_bytes(faults: &FaultInjectingStore) -> Vec<u8> {
    faults
        .get(&Path::from("snap/_CURRENT"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec()
}

#[tokio::test]
async fn manifest_put_failure_leaves_current_untouched() {
    let (faults, store, _) = faulty();
    let (b1, s1) = sample_snapshot("old", "s3://faulty/snap");
    let old = store.publish(&b1, &s1, &NoopPublishObserver).await.unwrap();
    let before = current_bytes(&faults).await;

    for transient in [false, true] {
        faults.gate().clear();
        faults
            .gate()
            .add_rule(FaultRule::new(Some(Op::Put), "/manifest", transient));
        let (b2, s2) = sample_snapshot("new", "s3://faulty/snap");
        let err = store
            .publish(&b2, &s2, &NoopPublishObserver)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PublishManifest, "{err}");
        assert!(err.is_retryable());
        assert_eq!(current_bytes(&faults).await, before, "pointer unchanged");
        assert_eq!(
            store.load_current().await.unwrap().unwrap().manifest_ref,
            old.manifest_ref
        );
        assert_eq!(
            store
                .load_manifest(&old.manifest_ref)
                .await
                .unwrap()
                .build
                .run_id,
            "old"
        );
    }
}

#[tokio::test]
async fn pointer_failure_is_publish_current_with_the_manifest_ref() {
    let (faults, store, metrics) = faulty();
    let (b1, s1) = sample_snapshot("old", "s3://faulty/snap");
    let old = store.publish(&b1, &s1, &NoopPublishObserver).await.unwrap();
    faults
        .gate()
        .add_rule(FaultRule::new(Some(Op::Put), "_CURRENT", false));
    let (b2, s2) = sample_snapshot("new", "s3://faulty/snap");
    let err = store
        .publish(&b2, &s2, &NoopPublishObserver)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PublishCurrent, "{err}");
    let written = err.manifest_ref().unwrap().to_owned();
    assert!(written.contains("_run_id=new/manifest"), "{written}");
    // The manifest exists, the pointer did not move; a permanent fault is tried once (one retry
    // layer, and it retries only transient failures).
    assert_eq!(
        store.load_manifest(&written).await.unwrap().build.run_id,
        "new"
    );
    assert_eq!(
        store.load_current().await.unwrap().unwrap().manifest_ref,
        old.manifest_ref
    );
    assert_eq!(faults.gate().injected(), 1);
    // An operator can finish the publish later with set_current.
    faults.gate().clear();
    store.set_current(&written).await.unwrap();
    assert_eq!(store.load_current().await.unwrap().unwrap().run_id, "new");
    assert_eq!(
        metrics.count(MetricEvent::S3Retry),
        0,
        "permanent faults are not retried"
    );
}

#[tokio::test]
async fn transient_pointer_faults_recover_and_emit_retry_events() {
    let (faults, store, metrics) = faulty();
    faults
        .gate()
        .add_rule(FaultRule::new(Some(Op::Put), "_CURRENT", true).times(2));
    let (b, s) = sample_snapshot("r1", "s3://faulty/snap");
    let r = store.publish(&b, &s, &NoopPublishObserver).await.unwrap();
    assert_eq!(
        store.load_current().await.unwrap().unwrap().manifest_ref,
        r.manifest_ref
    );
    assert_eq!(metrics.count(MetricEvent::S3Retry), 2);
}

#[tokio::test]
async fn corrupt_pointer_is_manifest_parse() {
    let (faults, store, _) = faulty();
    faults
        .put(&Path::from("snap/_CURRENT"), b"{not json".to_vec().into())
        .await
        .unwrap();
    let err = store.load_current().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ManifestParse);
    assert!(
        err.message()
            .starts_with("CURRENT pointer validation failed"),
        "{err}"
    );
}

#[tokio::test]
async fn refs_and_db_urls_outside_the_store_are_refused() {
    let a: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let b: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let resolver = StorageResolver::builder()
        .bucket_override("bucket-a", a.clone())
        .bucket_override("bucket-b", b)
        .build();
    let store_b = ObjectStoreManifestStore::new("s3://bucket-b/p", resolver.clone()).unwrap();
    let (bb, sb) = sample_snapshot("in-b", "s3://bucket-b/p");
    let rb = store_b
        .publish(&bb, &sb, &NoopPublishObserver)
        .await
        .unwrap();
    let store_a = ObjectStoreManifestStore::new("s3://bucket-a/p", resolver.clone()).unwrap();
    // A ref of the store layout is read under the store's own prefix, never in bucket-b.
    let err = store_a.load_manifest(&rb.manifest_ref).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ManifestStore, "{err}");
    // Any other foreign ref is outside the trust boundary.
    for hostile in [
        "file:///etc/passwd",
        "/etc/passwd",
        "s3://bucket-b/p/odd/manifest",
    ] {
        let err = store_a.load_manifest(hostile).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ManifestParse, "{hostile}: {err}");
        assert!(err.message().contains(hostile), "{err}");
    }

    // Manifests (in bucket-a itself) whose db_urls point at /etc, file:/// or bucket-b.
    for (i, hostile) in [
        "/etc",
        "file:///",
        "file:///etc/shadow",
        "s3://bucket-b/p/shards/x",
    ]
    .into_iter()
    .enumerate()
    {
        let (mut build, mut shards) = sample_snapshot(&format!("h{i}"), "s3://bucket-a/p");
        build.s3_prefix = "s3://bucket-a/p".into();
        shards[0].db_url = Some(hostile.to_owned());
        let r = store_a
            .publish(&build, &shards, &NoopPublishObserver)
            .await
            .unwrap();
        let err = store_a.load_manifest(&r.manifest_ref).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ManifestParse, "{hostile}: {err}");
        assert!(err.message().contains(hostile), "{err}");
        // Allowed explicitly, the same manifest loads.
        if hostile.starts_with("s3://") {
            let allowing = ObjectStoreManifestStore::new("s3://bucket-a/p", resolver.clone())
                .unwrap()
                .with_allowed_url_prefixes(["s3://bucket-b/p"])
                .unwrap();
            let m = allowing.load_manifest(&r.manifest_ref).await.unwrap();
            assert_eq!(m.shards[0].db_url.as_deref(), Some(hostile));
        }
    }
}

#[tokio::test]
async fn a_copied_snapshot_reads_its_copy() {
    let orig = std::env::temp_dir().join(unique("sf-orig"));
    let copy = std::env::temp_dir().join(unique("sf-copy"));
    let prefix = orig.to_str().unwrap().to_owned();
    let store = ObjectStoreManifestStore::new(&prefix, StorageResolver::default()).unwrap();
    let (build, shards) = sample_snapshot("c1", &prefix);
    store
        .publish(&build, &shards, &NoopPublishObserver)
        .await
        .unwrap();
    // cp -r, then the original goes away.
    copy_dir(&orig, &copy);
    std::fs::remove_dir_all(&orig).unwrap();
    let copied =
        ObjectStoreManifestStore::new(copy.to_str().unwrap(), StorageResolver::default()).unwrap();
    let cur = copied.load_current().await.unwrap().unwrap();
    let m = copied.load_manifest(&cur.manifest_ref).await.unwrap();
    let want = format!(
        "file://{}/shards/run_id=c1/db=00000/attempt=00",
        copy.display()
    );
    assert_eq!(m.shards[0].db_url.as_deref(), Some(want.as_str()));
    std::fs::remove_dir_all(copy).unwrap();
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}
