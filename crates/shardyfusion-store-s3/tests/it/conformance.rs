//! The shared conformance suite on every backend this crate serves.

use std::sync::Arc;

use async_trait::async_trait;
use shardyfusion_core::ManifestStore;
use shardyfusion_storage::StorageResolver;
use shardyfusion_storage::object_store::{ObjectStoreExt, PutPayload};
use shardyfusion_store_conformance::{ConformanceTarget, run_all};
use shardyfusion_store_s3::{InMemoryManifestStore, ObjectStoreManifestStore};

use crate::{s3_resolver, s3_resolver_as, s3_server, unique, unreachable_resolver};

/// Object-store store on prefixes made by `prefix()`, resolved through `resolver`.
struct ObjectTarget {
    resolver: StorageResolver,
    prefix: Box<dyn Fn() -> String + Send + Sync>,
}

#[async_trait]
impl ConformanceTarget for ObjectTarget {
    async fn fresh(&self) -> Arc<dyn ManifestStore> {
        Arc::new(ObjectStoreManifestStore::new(&(self.prefix)(), self.resolver.clone()).unwrap())
    }
    async fn corrupt(&self, _store: &Arc<dyn ManifestStore>, manifest_ref: &str) {
        let loc = self.resolver.resolve(manifest_ref).unwrap();
        loc.store
            .put(
                &loc.path,
                PutPayload::from_static(b"SQLite format 3\0 but then garbage"),
            )
            .await
            .unwrap();
    }
    async fn unavailable(&self) -> Option<Arc<dyn ManifestStore>> {
        Some(Arc::new(
            ObjectStoreManifestStore::new("s3://nowhere/p", unreachable_resolver()).unwrap(),
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_memory_object_store() {
    let target = ObjectTarget {
        resolver: StorageResolver::default(),
        prefix: Box::new(|| format!("memory://conf/{}", unique("p"))),
    };
    run_all(&target).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_local_directory() {
    let root = std::env::temp_dir().join(unique("sf-conf"));
    let r = root.clone();
    let target = ObjectTarget {
        resolver: StorageResolver::default(),
        prefix: Box::new(move || r.join(unique("p")).to_string_lossy().into_owned()),
    };
    run_all(&target).await;
    std::fs::remove_dir_all(root).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_s3_server() {
    let Some((endpoint, bucket)) = s3_server() else {
        return;
    };
    let target = ObjectTarget {
        resolver: s3_resolver(&endpoint),
        prefix: Box::new(move || format!("s3://{bucket}/{}", unique("conf"))),
    };
    run_all(&target).await;
}

/// In-memory store; remembers the stores it made so `corrupt` can reach the concrete type.
#[derive(Default)]
struct MemoryTarget {
    made: std::sync::Mutex<Vec<Arc<InMemoryManifestStore>>>,
}

#[async_trait]
impl ConformanceTarget for MemoryTarget {
    async fn fresh(&self) -> Arc<dyn ManifestStore> {
        let store = Arc::new(InMemoryManifestStore::new());
        self.made.lock().unwrap().push(store.clone());
        store
    }
    async fn corrupt(&self, store: &Arc<dyn ManifestStore>, manifest_ref: &str) {
        let made = self.made.lock().unwrap();
        let target = made
            .iter()
            .find(|m| std::ptr::addr_eq(Arc::as_ptr(m), Arc::as_ptr(store)))
            .unwrap();
        assert!(target.replace_manifest_bytes(manifest_ref, b"not a manifest".to_vec()));
    }
    async fn unavailable(&self) -> Option<Arc<dyn ManifestStore>> {
        None
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_in_memory_store() {
    run_all(&MemoryTarget::default()).await;
}

/// The test server checks signatures: a wrong secret or an unknown key fails with a clear,
/// non-retryable error that says to check the credentials, and nothing is published; the right
/// identity works (the conformance run above).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_fail_clearly_on_the_s3_server() {
    let Some((endpoint, bucket)) = s3_server() else {
        return;
    };
    let (id, secret) = crate::s3_test_identity();
    let prefix = format!("s3://{bucket}/{}", unique("auth"));
    for (what, id, secret) in [
        ("wrong secret", id.as_str(), "not-the-secret"),
        ("unknown key", "AKIDNOBODY", secret.as_str()),
    ] {
        let store =
            ObjectStoreManifestStore::new(&prefix, s3_resolver_as(&endpoint, id, secret)).unwrap();
        let err = store.load_current().await.unwrap_err();
        assert_eq!(
            err.kind(),
            shardyfusion_core::ErrorKind::ConfigValidation,
            "{what}: {err}"
        );
        assert!(!err.is_retryable(), "{what}: {err}");
        assert!(
            err.message().contains("check the credentials"),
            "{what}: {err}"
        );
        let (b, s) = shardyfusion_store_conformance::sample_snapshot("auth1", &prefix);
        let err = store
            .publish(&b, &s, &shardyfusion_core::NoopPublishObserver)
            .await
            .unwrap_err();
        assert!(!err.is_retryable(), "{what}: publish: {err}");
    }
    // With the right identity the prefix is still empty: nothing was published.
    let good = ObjectStoreManifestStore::new(&prefix, s3_resolver(&endpoint)).unwrap();
    assert_eq!(good.load_current().await.unwrap(), None);
}
