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
//! retryable error; a run id is published once (republishing is `ConfigValidation`).
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

/// Where a check's snapshots claim to live: the store's own prefix when it has one (object
/// stores only hand out URLs inside it), else a fixed S3 prefix.
pub fn prefix_of(store: &Arc<dyn ManifestStore>) -> String {
    store
        .data_root()
        .unwrap_or_else(|| "s3://bucket/conformance".to_owned())
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
    let (build, shards) = sample_snapshot(run_id, &prefix_of(store));
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
    republish_refused(target).await;
    concurrent_publishes(target).await;
    hostile_db_urls(target).await;
    unavailable_backend(target).await;
}

/// A manifest whose `db_url`s point outside the store's data (another bucket, `/etc`,
/// `file:///`) does not load: `ManifestParse` naming the URL (SPEC 15.3 trust boundary).
pub async fn hostile_db_urls(target: &dyn ConformanceTarget) {
    let store = target.fresh().await;
    let prefix = prefix_of(&store);
    for (i, hostile) in [
        "file:///etc/passwd",
        "/etc",
        "file:///",
        "s3://someone-elses-bucket/data/shards/db=00000/attempt=00",
    ]
    .into_iter()
    .enumerate()
    {
        let (build, mut shards) = sample_snapshot(&format!("hostile{i}"), &prefix);
        shards[0].db_url = Some(hostile.to_owned());
        let r = store
            .publish(&build, &shards, &NoopPublishObserver)
            .await
            .unwrap();
        let err = store.load_manifest(&r.manifest_ref).await.unwrap_err();
        assert_eq!(
            err.kind(),
            ErrorKind::ManifestParse,
            "hostile_db_urls: {hostile}: {err}"
        );
        assert!(
            err.message().contains(hostile),
            "hostile_db_urls: the error names {hostile}: {err}"
        );
    }
}

/// A run id is published once (SPEC 15.1): publishing it again, with the same or with changed
/// content, fails with `ConfigValidation` ("run id already published", naming the run id), and
/// the first manifest, the history and the pointer stay as they were, also after another run
/// became current.
pub async fn republish_refused(target: &dyn ConformanceTarget) {
    let store = target.fresh().await;
    let first = publish(&store, "rp1").await;
    let original = store.load_manifest(&first.manifest_ref).await.unwrap();
    let prefix = original.build.s3_prefix.clone();
    let again = sample_snapshot("rp1", &prefix);
    let (mut changed, mut changed_shards) = sample_snapshot("rp1", &prefix);
    changed.custom.insert("changed".into(), true.into());
    changed_shards.truncate(1);
    changed_shards[0].row_count = 1;
    let refused = |what: &str, r: shardyfusion_core::Result<ManifestRef>| {
        let err = r.expect_err(&format!("republish_refused: {what} must fail"));
        assert_eq!(
            err.kind(),
            ErrorKind::ConfigValidation,
            "republish_refused: {what}: {err}"
        );
        assert!(
            err.message().contains("run id already published") && err.message().contains("rp1"),
            "republish_refused: {what}: the message names the rule and the run id: {err}"
        );
    };
    for (what, (build, shards)) in [
        ("same content", again.clone()),
        ("changed content", (changed, changed_shards)),
    ] {
        refused(
            what,
            store.publish(&build, &shards, &NoopPublishObserver).await,
        );
        let cur = store.load_current().await.unwrap().unwrap();
        assert_eq!(
            (cur.manifest_ref.as_str(), cur.run_id.as_str()),
            (first.manifest_ref.as_str(), "rp1"),
            "republish_refused: {what}: the pointer still names the first publish"
        );
        assert_eq!(
            store.load_manifest(&first.manifest_ref).await.unwrap(),
            original,
            "republish_refused: {what}: the first manifest is unchanged"
        );
    }
    let second = publish(&store, "rp2").await;
    refused(
        "after another run",
        store
            .publish(&again.0, &again.1, &NoopPublishObserver)
            .await,
    );
    assert_eq!(
        store.load_current().await.unwrap().unwrap().manifest_ref,
        second.manifest_ref,
        "republish_refused: a refused republish does not move the pointer back"
    );
    let listed = store.list_manifests(10).await.unwrap();
    assert_eq!(
        listed.len(),
        2,
        "republish_refused: history holds each run once: {listed:?}"
    );
    assert_eq!(
        store.load_manifest(&first.manifest_ref).await.unwrap(),
        original,
        "republish_refused: the first manifest is unchanged at the end"
    );
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
    let (build, shards) = sample_snapshot("rt1", &prefix_of(&store));
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

/// Several tasks publish at once. Every manifest lands; each publish either made its manifest
/// current or failed with `PublishCurrent` (the pointer moved under it: compare-and-swap, never a
/// silent overwrite); at least one succeeded and the pointer names a successful one.
pub async fn concurrent_publishes(target: &dyn ConformanceTarget) {
    let store = target.fresh().await;
    let mut tasks = Vec::new();
    for i in 0..6 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let (build, shards) = sample_snapshot(&format!("cc{i}"), &prefix_of(&store));
            store.publish(&build, &shards, &NoopPublishObserver).await
        }));
    }
    let (mut won, mut landed) = (Vec::new(), Vec::new());
    for t in tasks {
        match t.await.unwrap() {
            Ok(r) => {
                landed.push(r.manifest_ref.clone());
                won.push(r);
            }
            Err(e) => {
                assert_eq!(
                    e.kind(),
                    ErrorKind::PublishCurrent,
                    "concurrent: a losing publish is PublishCurrent: {e}"
                );
                assert!(
                    e.message().contains("moved concurrently"),
                    "concurrent: the error says what happened: {e}"
                );
                landed.push(
                    e.manifest_ref()
                        .expect("concurrent: PublishCurrent carries the manifest ref")
                        .to_owned(),
                );
            }
        }
    }
    assert!(!won.is_empty(), "concurrent: at least one publish wins");
    let listed = store.list_manifests(100).await.unwrap();
    for r in &landed {
        assert!(
            listed.iter().any(|m| &m.manifest_ref == r),
            "concurrent: {r} listed"
        );
        store.load_manifest(r).await.unwrap();
    }
    let cur = store.load_current().await.unwrap().unwrap();
    assert!(
        won.iter().any(|r| r.manifest_ref == cur.manifest_ref),
        "concurrent: pointer on a publish that reported success"
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
    let (build, shards) = sample_snapshot("x1", &prefix_of(&store));
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

/// The identity of the S3-compatible test server: `(access key id, secret access key)` from
/// `SHARDYFUSION_S3_ACCESS_KEY_ID` / `SHARDYFUSION_S3_SECRET_ACCESS_KEY` (exported by
/// `cargo xtask it`), default `test` / `test-secret`. The server checks signatures.
pub fn s3_test_identity() -> (String, String) {
    let var = |k: &str, d: &str| {
        std::env::var(k)
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| d.to_owned())
    };
    (
        var("SHARDYFUSION_S3_ACCESS_KEY_ID", "test"),
        var("SHARDYFUSION_S3_SECRET_ACCESS_KEY", "test-secret"),
    )
}

/// The S3-compatible server of `cargo xtask it`: `(endpoint, bucket)`.
pub fn s3_test_server() -> Option<(String, String)> {
    let endpoint = server_env("SHARDYFUSION_S3_ENDPOINT")?;
    Some((
        endpoint,
        std::env::var("SHARDYFUSION_S3_BUCKET").unwrap_or_else(|_| "shardyfusion-it".to_owned()),
    ))
}
