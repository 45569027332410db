//! Integration tests of shardyfusion-storage: URL resolution, retries and the test wrappers.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use shardyfusion_core::metrics::RecordingCollector;
use shardyfusion_core::{ErrorKind, MetricEvent, S3ConnectionOptions};
use shardyfusion_storage::{
    CountingStore, ErrorClass, FaultInjectingStore, FaultRule, Op, StorageResolver, StorageRetry,
    classify,
};

#[test]
fn resolves_every_url_form() {
    let r = StorageResolver::default();
    let s3 = r.resolve("s3://bucket/a/b/").unwrap();
    assert_eq!(
        (s3.url.as_str(), s3.path.as_ref()),
        ("s3://bucket/a/b", "a/b")
    );
    let file = r.resolve("file:///tmp/sf-x/").unwrap();
    assert_eq!(
        (file.url.as_str(), file.path.as_ref()),
        ("file:///tmp/sf-x", "tmp/sf-x")
    );
    let rel = r.resolve("some/../rel/dir").unwrap();
    let cwd = std::env::current_dir().unwrap();
    assert_eq!(rel.url, format!("file://{}/rel/dir", cwd.display()));
    let mem = r.resolve("memory://m1/k").unwrap();
    assert_eq!(
        (mem.url.as_str(), mem.path.as_ref()),
        ("memory://m1/k", "k")
    );
    for bad in ["", "gs://b/p", "s3://bucket", "file://rel"] {
        assert_eq!(
            r.resolve(bad).unwrap_err().kind(),
            ErrorKind::ConfigValidation,
            "{bad}"
        );
    }
    // One store per bucket / name.
    assert!(Arc::ptr_eq(
        &r.resolve("memory://m1/x").unwrap().store,
        &mem.store
    ));
    assert!(Arc::ptr_eq(
        &r.resolve("s3://bucket/other").unwrap().store,
        &s3.store
    ));
}

#[test]
fn bad_connection_options_are_config_errors() {
    let r = StorageResolver::builder()
        .s3_options(S3ConnectionOptions::new().with_max_attempts(0))
        .build();
    let err = r.resolve("s3://bucket/p").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConfigValidation);
    assert!(err.message().contains("max_attempts"), "{err}");
}

#[tokio::test]
async fn local_files_round_trip_under_the_absolute_dir() {
    let dir = std::env::temp_dir().join(format!("sf-storage-{}", std::process::id()));
    let r = StorageResolver::default();
    let loc = r.resolve(dir.to_str().unwrap()).unwrap();
    let key = loc.child(&["manifests", "x", "manifest"]);
    loc.store
        .put(&key, PutPayload::from_static(b"hello"))
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(dir.join("manifests/x/manifest")).unwrap(),
        b"hello"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn bucket_override_serves_s3_urls_from_another_store() {
    let local: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    local
        .put(&Path::from("snap/_CURRENT"), PutPayload::from_static(b"{}"))
        .await
        .unwrap();
    let r = StorageResolver::builder()
        .bucket_override("sf-compat-head", local)
        .build();
    let loc = r.resolve("s3://sf-compat-head/snap").unwrap();
    let got = loc
        .store
        .get(&loc.child(&["_CURRENT"]))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&got[..], b"{}");
}

#[tokio::test]
async fn transient_faults_are_retried_and_reported() {
    let faults = Arc::new(FaultInjectingStore::wrap(Arc::new(InMemory::new())));
    faults
        .gate()
        .add_rule(FaultRule::new(Some(Op::Put), "k", true).times(2));
    let metrics = RecordingCollector::default();
    let retry = StorageRetry::fast(4);
    let store = faults.clone();
    let (k, missing) = (Path::from("k"), Path::from("missing"));
    retry
        .run("put", Some(&metrics), || {
            store.put(&k, PutPayload::from_static(b"v"))
        })
        .await
        .unwrap();
    assert_eq!(faults.gate().injected(), 2);
    assert_eq!(metrics.count(MetricEvent::S3Retry), 2);

    // Exhausted: S3Transient, one retry_exhausted event.
    faults
        .gate()
        .add_rule(FaultRule::new(Some(Op::Get), "k", true));
    let fail = retry
        .run("get", Some(&metrics), || store.get(&k))
        .await
        .unwrap_err();
    assert_eq!(fail.attempts, 4);
    let err = fail.into_error(ErrorKind::ManifestStore, "GET memory://x/k");
    assert_eq!(err.kind(), ErrorKind::S3Transient);
    assert!(err.is_retryable());
    assert_eq!(metrics.count(MetricEvent::S3RetryExhausted), 1);

    // Permanent and not-found errors are not retried.
    faults.gate().clear();
    faults
        .gate()
        .add_rule(FaultRule::new(Some(Op::Get), "k", false));
    let fail = retry
        .run("get", Some(&metrics), || store.get(&k))
        .await
        .unwrap_err();
    assert_eq!((fail.class, fail.attempts), (ErrorClass::Permanent, 1));
    assert_eq!(
        fail.into_error(ErrorKind::ManifestStore, "GET").kind(),
        ErrorKind::ManifestStore
    );
    faults.gate().clear();
    let fail = retry
        .run("get", None, || store.get(&missing))
        .await
        .unwrap_err();
    assert_eq!((fail.class, fail.attempts), (ErrorClass::NotFound, 1));
}

#[tokio::test]
async fn random_faults_hit_about_the_requested_rate() {
    let faults = FaultInjectingStore::wrap(Arc::new(InMemory::new()));
    faults.gate().set_random_failures(0.1, true, 7);
    let mut failed = 0;
    for i in 0..1000 {
        if faults
            .put(&Path::from(format!("k{i}")), PutPayload::from_static(b"v"))
            .await
            .is_err()
        {
            failed += 1;
        }
    }
    assert!((60..=140).contains(&failed), "{failed}");
    assert_eq!(faults.gate().injected(), failed);
}

#[tokio::test]
async fn counting_store_counts_each_kind() {
    let counting = CountingStore::wrap(Arc::new(InMemory::new()));
    counting
        .put(&Path::from("a/b"), PutPayload::from_static(b"v"))
        .await
        .unwrap();
    counting.get(&Path::from("a/b")).await.unwrap();
    counting.head(&Path::from("a/b")).await.unwrap();
    counting
        .list_with_delimiter(Some(&Path::from("a")))
        .await
        .unwrap();
    counting.delete(&Path::from("a/b")).await.unwrap();
    let c = counting.gate();
    assert_eq!(
        [
            c.get(Op::Put),
            c.get(Op::Get),
            c.get(Op::Head),
            c.get(Op::List),
            c.get(Op::Delete)
        ],
        [1; 5]
    );
    assert_eq!(c.total(), 5);
    c.reset();
    assert_eq!(c.total(), 0);
}

#[test]
fn classification_is_by_variant_never_by_message_text() {
    use object_store::client::{HttpError, HttpErrorKind};
    let nf = object_store::Error::NotFound {
        path: "x".into(),
        source: "gone".into(),
    };
    assert_eq!(classify(&nf), ErrorClass::NotFound);
    for conflict in [
        object_store::Error::Precondition {
            path: "x".into(),
            source: "etag".into(),
        },
        object_store::Error::AlreadyExists {
            path: "x".into(),
            source: "exists".into(),
        },
    ] {
        assert_eq!(classify(&conflict), ErrorClass::Conflict);
    }
    let denied = object_store::Error::PermissionDenied {
        path: "x".into(),
        source: "no".into(),
    };
    assert_eq!(classify(&denied), ErrorClass::Denied);
    let unauthenticated = object_store::Error::Unauthenticated {
        path: "x".into(),
        source: "no".into(),
    };
    assert_eq!(classify(&unauthenticated), ErrorClass::Denied);
    // A transport failure of the HTTP client: transient.
    let io = std::io::Error::other("reset");
    let timeout = object_store::Error::Generic {
        store: "S3",
        source: Box::new(HttpError::new(HttpErrorKind::Timeout, io)),
    };
    assert_eq!(classify(&timeout), ErrorClass::Transient);
    // Text that looks like throttling or a 5xx decides nothing: a local store's generic error
    // naming an object key `db=00429` or a `.503…Z` timestamp is permanent.
    for text in [
        "writing s3://b/p/shards/db=00429/attempt=00 failed",
        "manifests/2026-03-14T10:30:00.503000Z_run_id=x status code: 503 connection timed out",
    ] {
        let e = object_store::Error::Generic {
            store: "LocalFileSystem",
            source: text.into(),
        };
        assert_eq!(classify(&e), ErrorClass::Permanent, "{text}");
    }
    // I/O errors of local stores by their kind.
    let local = |kind| object_store::Error::Generic {
        store: "LocalFileSystem",
        source: Box::new(std::io::Error::new(kind, "x")),
    };
    assert_eq!(
        classify(&local(std::io::ErrorKind::TimedOut)),
        ErrorClass::Transient
    );
    assert_eq!(
        classify(&local(std::io::ErrorKind::PermissionDenied)),
        ErrorClass::Denied
    );
    assert_eq!(
        classify(&local(std::io::ErrorKind::InvalidData)),
        ErrorClass::Permanent
    );
    // A status error object_store has no variant for (400, 501, or a 5xx that outlived the S3
    // client's own status-code retries): permanent, whatever its text says.
    let s3_status = object_store::Error::Generic {
        store: "S3",
        source: "Server returned non-2xx status code: 503 Service Unavailable".into(),
    };
    assert_eq!(classify(&s3_status), ErrorClass::Permanent);
}

#[tokio::test]
async fn errors_the_s3_client_already_retried_are_not_retried_again() {
    use object_store::client::{HttpError, HttpErrorKind};
    let retry = StorageRetry::fast(4);
    let mut calls = 0;
    let fail = retry
        .run("get", None, || {
            calls += 1;
            async {
                Err::<(), _>(object_store::Error::Generic {
                    store: "S3",
                    source: Box::new(HttpError::new(
                        HttpErrorKind::Connect,
                        std::io::Error::other("connection refused"),
                    )),
                })
            }
        })
        .await
        .unwrap_err();
    assert_eq!(
        (fail.class, fail.attempts, calls),
        (ErrorClass::Transient, 1, 1)
    );
    assert_eq!(
        fail.into_error(ErrorKind::ManifestStore, "GET s3://b/k")
            .kind(),
        ErrorKind::S3Transient
    );
}
