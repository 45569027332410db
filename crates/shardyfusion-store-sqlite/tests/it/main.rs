//! Integration tests of shardyfusion-store-sqlite: the shared conformance suite on real files,
//! sharing one file between store handles, and the guards on unreadable columns and racing writers.

#![allow(clippy::unwrap_used)]

mod guards;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use shardyfusion_core::{ManifestStore, NoopPublishObserver};
use shardyfusion_store_conformance::{ConformanceTarget, run_all, sample_snapshot};
use shardyfusion_store_sqlite::SqliteManifestStore;

/// A fresh scratch directory path.
pub(crate) fn scratch() -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    std::env::temp_dir().join(format!(
        "sf-sqlite-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

struct FileTarget {
    dir: PathBuf,
    made: std::sync::Mutex<Vec<PathBuf>>,
}

#[async_trait]
impl ConformanceTarget for FileTarget {
    async fn fresh(&self) -> Arc<dyn ManifestStore> {
        let mut made = self.made.lock().unwrap();
        let path = self.dir.join(format!("m{}.db", made.len()));
        made.push(path.clone());
        Arc::new(SqliteManifestStore::new(path))
    }
    async fn corrupt(&self, _store: &Arc<dyn ManifestStore>, manifest_ref: &str) {
        let path = self.made.lock().unwrap().last().unwrap().clone();
        let conn = rusqlite::Connection::open(path).unwrap();
        let n = conn
            .execute(
                "UPDATE shardyfusion_manifests_builds SET sharding = '{not json' WHERE run_id = ?1",
                [manifest_ref],
            )
            .unwrap();
        assert_eq!(n, 1);
    }
    async fn unavailable(&self) -> Option<Arc<dyn ManifestStore>> {
        // A file under a path that cannot be created (not even by root).
        Some(Arc::new(SqliteManifestStore::new(
            "/proc/shardyfusion-no-such-dir/manifests.db",
        )))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_sqlite_file() {
    let dir = scratch();
    std::fs::create_dir_all(&dir).unwrap();
    run_all(&FileTarget {
        dir: dir.clone(),
        made: Default::default(),
    })
    .await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_handles_share_one_file_and_custom_tables() {
    let dir = scratch();
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("shared.db");
    let a = SqliteManifestStore::new(&path)
        .with_tables("team_a", "team_a_ptr")
        .unwrap();
    let b = SqliteManifestStore::new(&path)
        .with_tables("team_a", "team_a_ptr")
        .unwrap();
    let (build, shards) = sample_snapshot("s1", "file:///data/snap");
    a.publish(&build, &shards, &NoopPublishObserver)
        .await
        .unwrap();
    assert_eq!(b.load_current().await.unwrap().unwrap().run_id, "s1");
    assert_eq!(b.load_manifest("s1").await.unwrap().shards, shards);
    let journal: String = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(journal, "wal");
    assert!(
        SqliteManifestStore::new(&path)
            .with_tables("a-b", "p")
            .is_err()
    );
    std::fs::remove_dir_all(dir).unwrap();
}
