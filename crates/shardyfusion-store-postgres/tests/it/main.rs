//! Integration tests of shardyfusion-store-postgres against the real PostgreSQL server of
//! `cargo xtask it` (`DATABASE_URL`): the shared conformance suite, the stored rows, and the
//! guards on skewed pointer clocks, unreadable columns and racing writers.

#![allow(clippy::unwrap_used)]

mod guards;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use shardyfusion_core::{ErrorKind, ManifestStore, NoopPublishObserver};
use shardyfusion_store_conformance::{ConformanceTarget, run_all, sample_snapshot};
use shardyfusion_store_postgres::{PostgresManifestStore, PostgresOptions};

/// The server from `cargo xtask it`.
pub(crate) fn database_url() -> Option<String> {
    shardyfusion_store_conformance::server_env("DATABASE_URL")
}

/// A table base name unique to this test run.
pub(crate) fn table_base() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "sf_it_{}_{}_{}",
        std::process::id(),
        shardyfusion_core::Timestamp::now().unix_micros() % 1_000_000_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Drop the tables a test made (the blocking client runs off the async workers).
pub(crate) async fn drop_tables(url: &str, bases: &[String]) {
    let (url, bases) = (url.to_owned(), bases.to_vec());
    tokio::task::spawn_blocking(move || {
        let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        for b in bases {
            c.batch_execute(&format!("DROP TABLE IF EXISTS {b}_shards; DROP TABLE IF EXISTS {b}_builds; DROP TABLE IF EXISTS {b}_ptr;"))
                .unwrap();
        }
    })
    .await
    .unwrap();
}

struct PgTarget {
    url: String,
    made: std::sync::Mutex<Vec<String>>,
}

#[async_trait]
impl ConformanceTarget for PgTarget {
    async fn fresh(&self) -> Arc<dyn ManifestStore> {
        let base = table_base();
        self.made.lock().unwrap().push(base.clone());
        Arc::new(
            PostgresManifestStore::new(
                &self.url,
                PostgresOptions::with_tables(&base, format!("{base}_ptr")),
            )
            .unwrap(),
        )
    }
    async fn corrupt(&self, store: &Arc<dyn ManifestStore>, manifest_ref: &str) {
        let base = self.made.lock().unwrap().last().unwrap().clone();
        let _ = store;
        let (url, r) = (self.url.clone(), manifest_ref.to_owned());
        tokio::task::spawn_blocking(move || {
            let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
            let n = c
                .execute(&format!(r#"UPDATE {base}_builds SET sharding = '{{"hash_algorithm": "md5"}}' WHERE run_id = $1"#), &[&r])
                .unwrap();
            assert_eq!(n, 1);
        })
        .await
        .unwrap();
    }
    async fn unavailable(&self) -> Option<Arc<dyn ManifestStore>> {
        Some(Arc::new(
            PostgresManifestStore::new(
                "postgres://postgres@127.0.0.1:1/postgres",
                PostgresOptions::default(),
            )
            .unwrap(),
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_postgres() {
    let Some(url) = database_url() else { return };
    let target = PgTarget {
        url: url.clone(),
        made: Default::default(),
    };
    run_all(&target).await;
    let made = target.made.lock().unwrap().clone();
    drop_tables(&url, &made).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_follow_the_spec_schema() {
    let Some(url) = database_url() else { return };
    let base = table_base();
    let store = PostgresManifestStore::new(
        &url,
        PostgresOptions::with_tables(&base, format!("{base}_ptr")),
    )
    .unwrap();
    let (build, shards) = sample_snapshot("pg1", "s3://b/p");
    let r = store
        .publish(&build, &shards, &NoopPublishObserver)
        .await
        .unwrap();
    assert_eq!(
        r.manifest_ref, "pg1",
        "the ref of a database store is the run id"
    );
    let (u, b) = (url.clone(), base.clone());
    let (sharding, min_key, ptr): (String, String, String) =
        tokio::task::spawn_blocking(move || {
            let mut c = postgres::Client::connect(&u, postgres::NoTls).unwrap();
            let row = c
                .query_one(
                    &format!("SELECT sharding::text FROM {b}_builds WHERE run_id = 'pg1'"),
                    &[],
                )
                .unwrap();
            let k = c
                .query_one(
                    &format!(
                        "SELECT max_key::text FROM {b}_shards WHERE run_id = 'pg1' AND db_id = 1"
                    ),
                    &[],
                )
                .unwrap();
            let p = c
                .query_one(&format!("SELECT manifest_ref FROM {b}_ptr"), &[])
                .unwrap();
            (row.get(0), k.get(0), p.get(0))
        })
        .await
        .unwrap();
    assert!(sharding.contains(r#""strategy": "hash""#), "{sharding}");
    assert_eq!(min_key, r#""k1""#, "JSONB string keys stay strings");
    assert_eq!(ptr, "pg1");
    // Row counts are 32-bit in this schema.
    let (big, mut big_shards) = sample_snapshot("pg2", "s3://b/p");
    big_shards[0].row_count = 1 << 31;
    let err = store
        .publish(&big, &big_shards, &NoopPublishObserver)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ManifestBuild);
    drop_tables(&url, &[base]).await;
}
