//! `multi_get` with large shard groups (read in chunks by several tasks) agrees with `get`.

use shardyfusion_core::{Key, KeyRef};
use shardyfusion_reader_async::{AsyncShardedReader, ReaderOptions};

use crate::{publish, store_for, unique};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_get_of_large_groups_matches_gets_in_input_order() {
    let prefix = format!("memory://{}/snap", unique("lookups"));
    let store = store_for(&prefix, &shardyfusion_storage::StorageResolver::default());
    let keys: Vec<i64> = (0..3000).collect();
    publish(&store, &prefix, 2, 4, &keys).await;
    let reader = AsyncShardedReader::open(store, ReaderOptions::default())
        .await
        .unwrap();
    // ~350 keys a shard (many chunks each), descending, with misses and repeats mixed in.
    let mut query: Vec<i64> = (0..700).map(|i| 2999 - 4 * i).collect();
    query.extend((0..50).map(|i| 10_000 + i)); // absent
    query.extend((0..50).map(|i| 2999 - 8 * i)); // repeats of earlier keys
    let refs: Vec<KeyRef<'_>> = query.iter().map(|k| KeyRef::Int(*k)).collect();
    let got = reader.multi_get(&refs).await.unwrap();
    assert_eq!(got.len(), 750, "one entry per distinct key");
    for ((k, v), want) in got.iter().zip(&query) {
        assert_eq!(k, &Key::Int(*want), "first-occurrence input order");
        let single = reader.get(KeyRef::Int(*want)).await.unwrap();
        assert_eq!(v, &single, "key {want}");
        if *want < 3000 {
            assert_eq!(v.as_deref(), Some(format!("g4-{want}").as_bytes()));
        } else {
            assert_eq!(v, &None);
        }
    }
    reader.close();
}
