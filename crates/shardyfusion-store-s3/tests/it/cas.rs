//! The pointer moves only on purpose (SPEC 15.2): a publish whose pointer update is overtaken by
//! another publish or a rollback fails with `PublishCurrent` instead of overwriting it, and a
//! delayed, resent pointer PUT cannot move the pointer back.

use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use shardyfusion_core::{ErrorKind, ManifestStore, NoopPublishObserver};
use shardyfusion_storage::StorageResolver;
use shardyfusion_storage::object_store::path::Path;
use shardyfusion_storage::object_store::{
    self, CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};
use shardyfusion_store_conformance::sample_snapshot;
use shardyfusion_store_s3::ObjectStoreManifestStore;
use tokio::sync::Notify;

use crate::{s3_resolver, s3_server, unique};

/// A pointer PUT as it went over the wire: path, body, options, and the store it went to.
type SentPut = (Path, Bytes, PutOptions, Arc<dyn ObjectStore>);

/// Shared by every store a resolver wraps: an optional hold on the next pointer write, and the
/// last pointer PUT seen (to resend it later, as a network might).
#[derive(Default)]
struct Control {
    armed: Mutex<bool>,
    reached: Notify,
    release: Notify,
    last_put: Mutex<Option<SentPut>>,
}

struct Hold {
    inner: Arc<dyn ObjectStore>,
    control: Arc<Control>,
}

impl fmt::Debug for Hold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hold({})", self.inner)
    }
}

impl fmt::Display for Hold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[async_trait]
impl ObjectStore for Hold {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let name = location.as_ref();
        if name.ends_with("_CURRENT") || name.ends_with("_CURRENT.lock") {
            let hold = std::mem::take(&mut *self.control.armed.lock().unwrap());
            if hold {
                self.control.reached.notify_one();
                self.control.release.notified().await;
            }
        }
        if name.ends_with("_CURRENT") {
            let bytes: Bytes = payload.clone().into();
            *self.control.last_put.lock().unwrap() =
                Some((location.clone(), bytes, opts.clone(), self.inner.clone()));
        }
        self.inner.put_opts(location, payload, opts).await
    }
    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }
    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }
    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }
    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }
    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }
    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }
    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

/// A resolver whose stores all go through one [`Control`].
fn holding(base: StorageResolver, control: Arc<Control>) -> StorageResolver {
    base.to_builder()
        .wrap_stores(move |inner| {
            Arc::new(Hold {
                inner,
                control: control.clone(),
            }) as Arc<dyn ObjectStore>
        })
        .build()
}

/// Publisher A reads the pointer, writes its manifest and is held just before its pointer
/// update; publisher B publishes in full; then A goes on. A must fail with `PublishCurrent`
/// naming B, and the pointer must still name B (without compare-and-swap A would silently
/// overwrite B: a lost update).
async fn overtaken_publish_fails(prefix: String, base: StorageResolver) {
    let control = Arc::new(Control::default());
    let store: Arc<dyn ManifestStore> =
        Arc::new(ObjectStoreManifestStore::new(&prefix, holding(base, control.clone())).unwrap());
    let (b0, s0) = sample_snapshot("base", &prefix);
    store.publish(&b0, &s0, &NoopPublishObserver).await.unwrap();

    *control.armed.lock().unwrap() = true;
    let a = {
        let store = store.clone();
        let prefix = prefix.clone();
        tokio::spawn(async move {
            let (ba, sa) = sample_snapshot("writer-a", &prefix);
            store.publish(&ba, &sa, &NoopPublishObserver).await
        })
    };
    control.reached.notified().await;
    let (bb, sb) = sample_snapshot("writer-b", &prefix);
    let rb = store.publish(&bb, &sb, &NoopPublishObserver).await.unwrap();
    control.release.notify_one();
    let err = a.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PublishCurrent, "{err}");
    assert!(err.message().contains("moved concurrently"), "{err}");
    assert!(err.message().contains(&rb.manifest_ref), "{err}");
    let a_ref = err.manifest_ref().unwrap().to_owned();
    assert!(a_ref.contains("_run_id=writer-a/"), "{a_ref}");
    let cur = store.load_current().await.unwrap().unwrap();
    assert_eq!(
        cur.manifest_ref, rb.manifest_ref,
        "the pointer still names B"
    );
    // A's manifest is there, unpublished; an operator can make it current on purpose.
    store.load_manifest(&a_ref).await.unwrap();
    store.set_current(&a_ref).await.unwrap();
    assert_eq!(
        store.load_current().await.unwrap().unwrap().run_id,
        "writer-a"
    );
}

/// Publish v1, v2, v3 (recording v3's pointer PUT); roll back to v2; then the recorded PUT of
/// v3 arrives again, late. The store must reject it, and the pointer must stay on v2.
async fn resent_pointer_put_after_rollback_is_rejected(prefix: String, base: StorageResolver) {
    let control = Arc::new(Control::default());
    let store = ObjectStoreManifestStore::new(&prefix, holding(base, control.clone())).unwrap();
    let mut refs = Vec::new();
    for id in ["v1", "v2", "v3"] {
        let (b, s) = sample_snapshot(id, &prefix);
        refs.push(store.publish(&b, &s, &NoopPublishObserver).await.unwrap());
    }
    let (path, body, opts, inner) = control.last_put.lock().unwrap().take().unwrap();
    store.set_current(&refs[1].manifest_ref).await.unwrap();
    let resent = inner.put_opts(&path, body.into(), opts).await;
    assert!(
        matches!(resent, Err(object_store::Error::Precondition { .. })),
        "a resent conditional PUT must lose: {resent:?}"
    );
    let cur = store.load_current().await.unwrap().unwrap();
    assert_eq!(
        cur.manifest_ref, refs[1].manifest_ref,
        "still rolled back to v2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overtaken_publish_memory() {
    overtaken_publish_fails(
        format!("memory://cas/{}", unique("p")),
        StorageResolver::default(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overtaken_publish_local_directory() {
    let dir = std::env::temp_dir().join(unique("sf-cas"));
    overtaken_publish_fails(
        dir.to_string_lossy().into_owned(),
        StorageResolver::default(),
    )
    .await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overtaken_publish_s3_server() {
    let Some((endpoint, bucket)) = s3_server() else {
        return;
    };
    overtaken_publish_fails(
        format!("s3://{bucket}/{}", unique("cas")),
        s3_resolver(&endpoint),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resent_put_memory() {
    resent_pointer_put_after_rollback_is_rejected(
        format!("memory://cas/{}", unique("p")),
        StorageResolver::default(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resent_put_s3_server() {
    let Some((endpoint, bucket)) = s3_server() else {
        return;
    };
    resent_pointer_put_after_rollback_is_rejected(
        format!("s3://{bucket}/{}", unique("cas")),
        s3_resolver(&endpoint),
    )
    .await;
}
