//! The PostgreSQL store's guards on the real server: pointer rows from skewed clocks, unreadable columns, racing writers.

use std::sync::Arc;

use shardyfusion_core::{ErrorKind, ManifestStore, NoopPublishObserver};
use shardyfusion_store_conformance::sample_snapshot;
use shardyfusion_store_postgres::{PostgresManifestStore, PostgresOptions};

use crate::{database_url, drop_tables, table_base};

fn store(url: &str, base: &str) -> PostgresManifestStore {
    PostgresManifestStore::new(
        url,
        PostgresOptions::with_tables(base, format!("{base}_ptr")),
    )
    .unwrap()
}

/// Run SQL on a plain connection, off the async workers.
async fn sql(url: &str, text: String) {
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        c.batch_execute(&text)
            .unwrap_or_else(|e| panic!("{text}: {e}"));
    })
    .await
    .unwrap();
}

/// A pointer row stamped in the future (another writer's skewed clock) must not hide a later
/// publish or rollback: the new row is placed after the newest one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pointer_row_from_a_skewed_clock_does_not_swallow_later_moves() {
    let Some(url) = database_url() else { return };
    let base = table_base();
    let s = store(&url, &base);
    for id in ["a", "b"] {
        let (build, shards) = sample_snapshot(id, "s3://b/p");
        s.publish(&build, &shards, &NoopPublishObserver)
            .await
            .unwrap();
    }
    sql(
        &url,
        format!("INSERT INTO {base}_ptr (updated_at, manifest_ref) VALUES (NOW() + INTERVAL '1 hour', 'a')"),
    )
    .await;
    assert_eq!(s.load_current().await.unwrap().unwrap().run_id, "a");
    let (build, shards) = sample_snapshot("c", "s3://b/p");
    s.publish(&build, &shards, &NoopPublishObserver)
        .await
        .unwrap();
    assert_eq!(
        s.load_current().await.unwrap().unwrap().run_id,
        "c",
        "publish moved the pointer"
    );
    s.set_current("b").await.unwrap();
    assert_eq!(
        s.load_current().await.unwrap().unwrap().run_id,
        "b",
        "rollback moved the pointer"
    );
    drop_tables(&url, &[base]).await;
}

/// NULLs, wrong column types and integers out of range (from a foreign writer or a changed
/// schema) are `ManifestParse` errors naming the column, never a panic or a truncation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_columns_are_parse_errors_naming_the_column() {
    let Some(url) = database_url() else { return };
    let cases = [
        (
            "num_dbs",
            "ALTER TABLE {b}_builds ALTER COLUMN num_dbs DROP NOT NULL; UPDATE {b}_builds SET num_dbs = NULL",
        ),
        (
            "row_count",
            "ALTER TABLE {b}_shards ALTER COLUMN row_count TYPE BIGINT; UPDATE {b}_shards SET row_count = -1 WHERE db_id = 0",
        ),
        (
            "db_id",
            "ALTER TABLE {b}_shards ALTER COLUMN db_id TYPE BIGINT; UPDATE {b}_shards SET db_id = 4294967296 WHERE db_id = 0",
        ),
        (
            "attempt",
            "ALTER TABLE {b}_shards ALTER COLUMN attempt TYPE TEXT; UPDATE {b}_shards SET attempt = 'x'",
        ),
        (
            "s3_prefix",
            "ALTER TABLE {b}_builds ALTER COLUMN s3_prefix DROP NOT NULL; UPDATE {b}_builds SET s3_prefix = NULL",
        ),
        (
            "created_at",
            "ALTER TABLE {b}_builds ALTER COLUMN created_at TYPE TEXT",
        ),
        ("db_bytes", "UPDATE {b}_shards SET db_bytes = -7"),
    ];
    let mut made = Vec::new();
    for (column, edit) in cases {
        let base = table_base();
        made.push(base.clone());
        let s = store(&url, &base);
        let (build, shards) = sample_snapshot("r1", "s3://b/p");
        s.publish(&build, &shards, &NoopPublishObserver)
            .await
            .unwrap();
        sql(&url, edit.replace("{b}", &base)).await;
        let err = s.load_manifest("r1").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ManifestParse, "{column}: {err}");
        assert!(err.message().contains(column), "{column}: {err}");
    }
    drop_tables(&url, &made).await;
}

/// Publishes and rollbacks from separate handles (separate connections) serialize on the
/// pointer table: all succeed, and every pointer row has its own time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_on_separate_handles_serialize() {
    let Some(url) = database_url() else { return };
    let base = table_base();
    store(&url, &base).list_manifests(1).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..6 {
        let s: Arc<dyn ManifestStore> = Arc::new(store(&url, &base));
        tasks.push(tokio::spawn(async move {
            let (build, shards) = sample_snapshot(&format!("w{i}"), "s3://b/p");
            s.publish(&build, &shards, &NoopPublishObserver).await?;
            s.set_current(&format!("w{i}")).await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let (u, b) = (url.clone(), base.clone());
    let (rows, distinct): (i64, i64) = tokio::task::spawn_blocking(move || {
        let mut c = postgres::Client::connect(&u, postgres::NoTls).unwrap();
        let r = c
            .query_one(
                &format!("SELECT count(*), count(DISTINCT updated_at) FROM {b}_ptr"),
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    })
    .await
    .unwrap();
    assert_eq!((rows, distinct), (12, 12));
    assert_eq!(
        store(&url, &base).list_manifests(100).await.unwrap().len(),
        6
    );
    drop_tables(&url, &[base]).await;
}

/// Dropping a connected store on an async worker must not run the blocking client's destructor
/// there (it owns a runtime, whose drop panics inside another runtime).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_connected_store_on_a_worker_is_safe() {
    let Some(url) = database_url() else { return };
    let base = table_base();
    let s = store(&url, &base);
    assert_eq!(s.load_current().await.unwrap(), None);
    drop(s);
    drop_tables(&url, &[base]).await;
}
