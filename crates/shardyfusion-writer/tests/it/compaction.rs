//! Each shard ends as one sorted run: many small memtable flushes are compacted at close, the
//! SSTs they replaced are deleted, and every key still reads back; with compaction off the
//! same build leaves many L0 SSTs (so the first half can fail).

use std::collections::HashSet;

use futures::StreamExt as _;
use shardyfusion_core::{Key, KeyRef, WriteConfig, WriteOptions};
use shardyfusion_storage::StorageResolver;
use shardyfusion_writer::{ShardedWriter, SlateDbOptions};
use slatedb::admin::Admin;

use crate::{Shards, store_for, unique};

/// Memtables of 1 KiB per shard, no shared budget: a hundred rows flush several L0 SSTs.
pub(crate) fn tiny_memtables() -> SlateDbOptions {
    let mut o = SlateDbOptions::default().with_memtable_budget(None);
    o.l0_sst_size_bytes = 1 << 10;
    o.max_unflushed_bytes = 64 << 10;
    o
}

/// (L0 SSTs, sorted runs, SST objects not named by the manifest) of each shard.
async fn tables(
    r: &shardyfusion_writer::BuildResult,
    resolver: &StorageResolver,
) -> Vec<(usize, usize, usize)> {
    let mut out = Vec::new();
    for s in &r.winners {
        let loc = resolver.resolve(s.db_url.as_deref().unwrap()).unwrap();
        let m = Admin::builder(loc.path.clone(), loc.store.clone())
            .build()
            .read_manifest(None)
            .await
            .unwrap()
            .unwrap();
        let live: HashSet<String> = m
            .compacted()
            .iter()
            .flat_map(|r| r.sst_views())
            .chain(m.l0().iter())
            .map(|v| format!("{}.sst", v.sst.id.value()))
            .collect();
        let objects: Vec<_> = loc
            .store
            .list(Some(&loc.path.clone().join("compacted")))
            .map(|m| m.unwrap().location.filename().unwrap().to_owned())
            .collect()
            .await;
        let orphans = objects.iter().filter(|o| !live.contains(*o)).count();
        out.push((m.l0().len(), m.compacted().len(), orphans));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_end_as_one_sorted_run() {
    let dir = std::env::temp_dir().join(unique("sf-compact"));
    let resolver = StorageResolver::default();
    let keys: Vec<i64> = (0..3000).collect();
    let value = |k: i64| format!("value-{k:08}-{}", "x".repeat(40)).into_bytes();
    let mut results = Vec::new();
    for compact in [false, true] {
        let prefix = dir.join(format!("compact-{compact}"));
        let prefix = prefix.to_str().unwrap();
        let config = WriteConfig::builder(prefix)
            .num_dbs(3)
            .manifest_store(store_for(prefix, &resolver))
            .build()
            .unwrap();
        let r = ShardedWriter::new(config)
            .unwrap()
            .with_slatedb_options(tiny_memtables().with_compaction(compact))
            .write(
                &keys,
                |k| Key::Int(**k),
                |k| value(**k),
                &WriteOptions::default(),
            )
            .await
            .unwrap();
        let t = tables(&r, &resolver).await;
        let m = store_for(prefix, &resolver)
            .load_manifest(&r.manifest_ref.manifest_ref)
            .await
            .unwrap();
        let shards = Shards::open(m, &resolver).await;
        for k in &keys {
            assert_eq!(
                shards.get(KeyRef::Int(*k)).await,
                Some(value(*k)),
                "key {k}"
            );
        }
        shards.close().await;
        results.push(t);
    }
    let (flushed, compacted) = (&results[0], &results[1]);
    assert_eq!(flushed.len(), 3);
    assert!(
        flushed.iter().all(|&(l0, runs, _)| l0 > 4 && runs == 0),
        "without compaction every shard has many L0 SSTs: {flushed:?}"
    );
    assert!(
        compacted.iter().all(|&t| t == (0, 1, 0)),
        "one sorted run per shard and no SST left behind: {compacted:?}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}
