//! The SQLite store's guards on real files: unreadable columns, concurrent writers from separate handles.

use std::sync::Arc;

use shardyfusion_core::{ErrorKind, ManifestStore, NoopPublishObserver};
use shardyfusion_store_conformance::sample_snapshot;
use shardyfusion_store_sqlite::SqliteManifestStore;

use crate::scratch;

/// Values a foreign writer (or a hand edit) can leave in the file are `ManifestParse` errors
/// naming the column, never a panic or a truncated number.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_columns_are_parse_errors_naming_the_column() {
    let dir = scratch();
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("cols.db");
    let store = SqliteManifestStore::new(&path);
    let (build, shards) = sample_snapshot("r1", "file:///data/snap");
    store
        .publish(&build, &shards, &NoopPublishObserver)
        .await
        .unwrap();
    let cases = [
        (
            "row_count",
            "UPDATE shardyfusion_manifests_shards SET row_count = 'many' WHERE db_id = 0",
        ),
        (
            "row_count",
            "UPDATE shardyfusion_manifests_shards SET row_count = -5 WHERE db_id = 0",
        ),
        (
            "db_id",
            "UPDATE shardyfusion_manifests_shards SET db_id = 4294967296 WHERE db_id = 0",
        ),
        (
            "attempt",
            "UPDATE shardyfusion_manifests_shards SET attempt = 1.5 WHERE db_id = 0",
        ),
        (
            "num_dbs",
            "UPDATE shardyfusion_manifests_builds SET num_dbs = 4294967300",
        ),
        (
            "num_dbs",
            "UPDATE shardyfusion_manifests_builds SET num_dbs = X'00'",
        ),
        (
            "created_at",
            "UPDATE shardyfusion_manifests_builds SET created_at = 'yesterday'",
        ),
        (
            "writer_info",
            "UPDATE shardyfusion_manifests_shards SET writer_info = '[1]' WHERE db_id = 0",
        ),
    ];
    for (column, sql) in cases {
        // Each case edits its own copy of the good file.
        let copy = dir.join(format!("case-{}.db", sql.len()));
        let _ = std::fs::remove_file(&copy);
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute("VACUUM INTO ?1", [copy.to_str().unwrap()])
            .unwrap();
        rusqlite::Connection::open(&copy)
            .unwrap()
            .execute_batch(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let err = SqliteManifestStore::new(&copy)
            .load_manifest("r1")
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ManifestParse, "{sql}: {err}");
        assert!(err.message().contains(column), "{sql}: {err}");
    }
    assert_eq!(store.load_manifest("r1").await.unwrap().shards, shards);
    std::fs::remove_dir_all(dir).unwrap();
}

/// Writers on separate handles (separate connections) serialize: every publish lands, each
/// pointer row is newer than the one before it, and the pointer names the last writer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_on_separate_handles_never_lose_a_pointer_update() {
    let dir = scratch();
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("race.db");
    SqliteManifestStore::new(&path)
        .list_manifests(1)
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store: Arc<dyn ManifestStore> = Arc::new(SqliteManifestStore::new(&path));
        tasks.push(tokio::spawn(async move {
            let (build, shards) = sample_snapshot(&format!("w{i}"), "file:///data/snap");
            store.publish(&build, &shards, &NoopPublishObserver).await?;
            // A rollback racing the other publishes.
            store.set_current("w0").await.or_else(|e| {
                if e.kind() == ErrorKind::ManifestParse {
                    Ok(()) // w0 not published yet
                } else {
                    Err(e)
                }
            })
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let conn = rusqlite::Connection::open(&path).unwrap();
    let mut stmt = conn
        .prepare("SELECT updated_at, manifest_ref FROM shardyfusion_pointer ORDER BY id")
        .unwrap();
    let rows: Vec<(String, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(rows.len() >= 8, "{rows:?}");
    for pair in rows.windows(2) {
        assert!(
            pair[0].0 < pair[1].0,
            "pointer rows in commit order: {rows:?}"
        );
    }
    let store = SqliteManifestStore::new(&path);
    let current = store.load_current().await.unwrap().unwrap();
    assert_eq!(
        current.run_id,
        rows.last().unwrap().1,
        "the last writer wins"
    );
    assert_eq!(store.list_manifests(100).await.unwrap().len(), 8);
    std::fs::remove_dir_all(dir).unwrap();
}
