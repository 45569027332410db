//! # shardyfusion-store-conformance
//!
//! One conformance suite for every [`ManifestStore`] (object store on a local directory, memory
//! and S3; PostgreSQL; SQLite file; in-memory), in the manner of `object_store`'s integration
//! module: each store crate's integration tests implement [`ConformanceTarget`] and call
//! [`run_all`]. A failed check panics with the name of the check and what differed.
//!
//! Checks: missing pointer → `None`; publish → `load_current` → `load_manifest` round trip;
//! `list_manifests` newest first with a limit; `set_current` to an older manifest (rollback) and
//! back; unknown refs are errors; a corrupt manifest is `ManifestParse`; concurrent publishes
//! from several tasks all land and the pointer ends on one of them; an unreachable backend is a
//! retryable error.
//!
//! Layering: depends on `shardyfusion-core` only; store crates use it as a dev-dependency.

#![deny(missing_docs)]
#![allow(clippy::unwrap_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use shardyfusion_core::{
    ErrorKind, Key, ManifestRef, ManifestStore, NoopPublishObserver, PublishObserver,
    RequiredBuildMeta, RequiredShardMeta, Timestamp, WriterInfo,
};

/// What the suite needs from a store implementation.
#[async_trait]
pub trait ConformanceTarget: Send + Sync {
    /// A fresh, empty store (its own prefix, table names or file).
    async fn fresh(&self) -> Arc<dyn ManifestStore>;
    /// Make the manifest `manifest_ref` held by `store` unparseable, behind the store's back.
    async fn corrupt(&self, store: &Arc<dyn ManifestStore>, manifest_ref: &str);
    /// A store whose backend cannot be reached, or `None` where that cannot happen (memory).
    async fn unavailable(&self) -> Option<Arc<dyn ManifestStore>>;
}

/// A build row and shard rows for run `run_id`: `num_dbs` 4, shards 0, 1 and 3 non-empty.
pub fn sample_snapshot(run_id: &str, prefix: &str) -> (RequiredBuildMeta, Vec<RequiredShardMeta>) {
    let mut build = RequiredBuildMeta::new(run_id, 4, prefix);
    build.custom = serde_json::json!({"team": "ml", "n": 3})
        .as_object()
        .cloned()
        .unwrap_or_default();
    let shards = [0u32, 1, 3]
        .into_iter()
        .map(|db_id| RequiredShardMeta {
            db_id,
            db_url: Some(format!(
                "{prefix}/shards/run_id={run_id}/db={db_id:05}/attempt=00"
            )),
            attempt: 0,
            row_count: 100 + u64::from(db_id),
            db_bytes: 0,
            min_key: Some(Key::Int(i64::from(db_id))),
            max_key: Some(Key::Str(format!("k{db_id}"))),
            checkpoint_id: Some(format!("{db_id:032x}")),
            writer_info: WriterInfo {
                attempt: 0,
                duration_ms: 7,
                stage_id: None,
                task_attempt_id: None,
            },
        })
        .collect();
    (build, shards)
}

async fn publish(store: &Arc<dyn ManifestStore>, run_id: &str) -> ManifestRef {
    let (build, shards) = sample_snapshot(run_id, "s3://bucket/conformance");
    let r = store.publish(&build, &shards, &NoopPublishObserver).await;
    let r = r.unwrap_or_else(|e| panic!("publish {run_id}: {e}"));
    // Distinct timestamps for ordering checks.
    tokio::time::sleep(Duration::from_millis(3)).await;
    r
}

/// Run every check against `target`.
pub async fn run_all(target: &dyn ConformanceTarget) {
    missing_pointer(target).await;
    round_trip(target).await;
    history_and_rollback(target).await;
    unknown_refs(target).await;
    corrupt_manifest(target).await;
    concurrent_publishes(target).await;
    unavailable_backend(target).await;
}

/// A store that never published has no current pointer and no history.
pub async fn missing_pointer(target: &dyn ConformanceTarget) {
    let store = target.fresh().await;
    assert_eq!(
        store.load_current().await.unwrap(),
        None,
        "missing_pointer: load_current"
    );
    assert!(
        store.list_manifests(10).await.unwrap().is_empty(),
        "missing_pointer: list_manifests"
    );
}

struct Recording(std::sync::Mutex<Vec<String>>);

impl PublishObserver for Recording {
    fn manifest_published(&self, r: &str) {
        self.0.lock().unwrap().push(format!("manifest {r}"));
    }
    fn current_published(&self, r: &str) {
        self.0.lock().unwrap().push(format!("current {r}"));
    }
}

/// publish → load_current → load_manifest returns what was published.
pub async fn round_trip(target: &dyn ConformanceTarget) {
    let store = target.fresh().await;
    let (build, shards) = sample_snapshot("rt1", "s3://bucket/conformance");
    let observer = Recording(Default::default());
    let r = store.publish(&build, &shards, &observer).await.unwrap();
    assert_eq!(r.run_id, "rt1", "round_trip: ref run_id");
    let age = r.published_at.seconds_until(Timestamp::now());
    assert!(
        (-5.0..3600.0).contains(&age),
        "round_trip: published_at {:?} is not recent",
        r.published_at
    );
    let events = observer.0.lock().unwrap().clone();
    assert_eq!(
        events,
        [
            format!("manifest {}", r.manifest_ref),
            format!("current {}", r.manifest_ref)
        ],
        "round_trip: observer"
    );

    let current = store
        .load_current()
        .await
        .unwrap()
        .expect("round_trip: pointer after publish");
    assert_eq!(
        (current.manifest_ref.as_str(), current.run_id.as_str()),
        (r.manifest_ref.as_str(), "rt1")
    );
    let m = store.load_manifest(&r.manifest_ref).await.unwrap();
    assert_eq!(m.build, build, "round_trip: build row");
    assert_eq!(m.shards, shards, "round_trip: shard rows");
    assert!(m.shard(2).is_empty(), "round_trip: absent shard is empty");
}

/// Newest first with a limit; rollback to an older manifest and back.
pub async fn history_and_rollback(target: &dyn ConformanceTarget) {
    let store = target.fresh().await;
    let r1 = publish(&store, "h1").await;
    let r2 = publish(&store, "h2").await;
    let r3 = publish(&store, "h3").await;
    let listed = store.list_manifests(2).await.unwrap();
    let ids: Vec<&str> = listed.iter().map(|m| m.run_id.as_str()).collect();
    assert_eq!(ids, ["h3", "h2"], "history: newest first, limited");
    assert_eq!(listed[0].manifest_ref, r3.manifest_ref, "history: refs");
    assert_eq!(
        store.list_manifests(10).await.unwrap().len(),
        3,
        "history: all"
    );
    assert!(
        listed[0].published_at >= listed[1].published_at,
        "history: order by time"
    );

    store.set_current(&r1.manifest_ref).await.unwrap();
    let cur = store.load_current().await.unwrap().unwrap();
    assert_eq!(
        (cur.manifest_ref.as_str(), cur.run_id.as_str()),
        (r1.manifest_ref.as_str(), "h1"),
        "rollback"
    );
    assert_eq!(
        store
            .load_manifest(&cur.manifest_ref)
            .await
            .unwrap()
            .build
            .run_id,
        "h1"
    );
    store.set_current(&r3.manifest_ref).await.unwrap();
    assert_eq!(
        store.load_current().await.unwrap().unwrap().run_id,
        "h3",
        "roll forward"
    );
    // History is unchanged by pointer moves.
    assert_eq!(
        store.list_manifests(10).await.unwrap().len(),
        3,
        "history after rollback"
    );
    let _ = r2;
}

/// Unknown refs are errors for load_manifest and set_current, and the pointer stays put.
pub async fn unknown_refs(target: &dyn ConformanceTarget) {
    let store = target.fresh().await;
    let r = publish(&store, "u1").await;
    let bogus = r.manifest_ref.replace("u1", "nope");
    let err = store.load_manifest(&bogus).await.unwrap_err();
    assert!(
        matches!(
            err.kind(),
            ErrorKind::ManifestStore | ErrorKind::ManifestParse
        ),
        "unknown ref: {err}"
    );
    let err = store.set_current(&bogus).await.unwrap_err();
    assert!(
        matches!(
            err.kind(),
            ErrorKind::ManifestStore | ErrorKind::ManifestParse | ErrorKind::ConfigValidation
        ),
        "set_current unknown: {err}"
    );
    assert_eq!(
        store.load_current().await.unwrap().unwrap().manifest_ref,
        r.manifest_ref,
        "pointer kept"
    );
}

/// A manifest corrupted behind the store's back loads as ManifestParse.
pub async fn corrupt_manifest(target: &dyn ConformanceTarget) {
    let store = target.fresh().await;
    let r = publish(&store, "c1").await;
    target.corrupt(&store, &r.manifest_ref).await;
    let err = store.load_manifest(&r.manifest_ref).await.unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::ManifestParse,
        "corrupt manifest: {err}"
    );
}

/// Several tasks publish at once: all land, and the pointer names one of them.
pub async fn concurrent_publishes(target: &dyn ConformanceTarget) {
    let store = target.fresh().await;
    let mut tasks = Vec::new();
    for i in 0..6 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let (build, shards) = sample_snapshot(&format!("cc{i}"), "s3://bucket/conformance");
            store.publish(&build, &shards, &NoopPublishObserver).await
        }));
    }
    let mut refs = Vec::new();
    for t in tasks {
        refs.push(
            t.await
                .unwrap()
                .unwrap_or_else(|e| panic!("concurrent publish: {e}")),
        );
    }
    let listed = store.list_manifests(100).await.unwrap();
    for r in &refs {
        assert!(
            listed.iter().any(|m| m.manifest_ref == r.manifest_ref),
            "concurrent: {} listed",
            r.run_id
        );
        assert_eq!(
            store
                .load_manifest(&r.manifest_ref)
                .await
                .unwrap()
                .build
                .run_id,
            r.run_id
        );
    }
    let cur = store.load_current().await.unwrap().unwrap();
    assert!(
        refs.iter().any(|r| r.manifest_ref == cur.manifest_ref),
        "concurrent: pointer on one of them"
    );
}

/// An unreachable backend fails with a retryable store error.
pub async fn unavailable_backend(target: &dyn ConformanceTarget) {
    let Some(store) = target.unavailable().await else {
        return;
    };
    let err = store.load_current().await.unwrap_err();
    assert!(err.is_retryable(), "unavailable: {err}");
    assert!(
        matches!(
            err.kind(),
            ErrorKind::ManifestStore | ErrorKind::S3Transient
        ),
        "unavailable: {err}"
    );
    let (build, shards) = sample_snapshot("x1", "s3://bucket/conformance");
    let err = store
        .publish(&build, &shards, &NoopPublishObserver)
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "unavailable publish: {err}");
}

/// A name unique on this machine (process id, time, counter), for test prefixes and tables.
pub fn unique_name(name: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{name}-{}-{}-{}",
        std::process::id(),
        Timestamp::now().unix_micros(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Whether server-backed tests must run (`CI=true` or `SHARDYFUSION_IT=1`, as set by
/// `cargo xtask it`): then a missing server fails the test instead of skipping it.
pub fn servers_required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
        || std::env::var("SHARDYFUSION_IT").is_ok_and(|v| v == "1")
}

/// The value of a server variable exported by `cargo xtask it`, or `None` outside it; panics
/// when servers are required and it is missing.
pub fn server_env(var: &str) -> Option<String> {
    let v = std::env::var(var).ok().filter(|s| !s.is_empty());
    if v.is_none() {
        assert!(
            !servers_required(),
            "{var} is not set: run the tests through `cargo xtask it`"
        );
        eprintln!("{var} not set; this server-backed check did not run (use `cargo xtask it`)");
    }
    v
}

/// The S3-compatible server of `cargo xtask it`: `(endpoint, bucket)`.
pub fn s3_test_server() -> Option<(String, String)> {
    let endpoint = server_env("SHARDYFUSION_S3_ENDPOINT")?;
    Some((
        endpoint,
        std::env::var("SHARDYFUSION_S3_BUCKET").unwrap_or_else(|_| "shardyfusion-it".to_owned()),
    ))
}
