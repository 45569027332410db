//! Every snapshot written by the Python implementation reads back byte for byte.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;
use shardyfusion_cel::{CelValue, RoutingContext};
use shardyfusion_core::{Key, KeyRef, ManifestStore};
use shardyfusion_reader_async::{AsyncShardedReader, ReaderOptions};
use shardyfusion_storage::StorageResolver;
use shardyfusion_storage::object_store::ObjectStore;
use shardyfusion_storage::object_store::local::LocalFileSystem;

use crate::store_for;

fn fixture(name: &str) -> (Value, StorageResolver, Arc<dyn ManifestStore>) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let expected: Value =
        serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
    // The manifests name s3://sf-compat-head/...: serve that bucket from the local copy.
    let bucket: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(dir.join("s3/sf-compat-head")).unwrap());
    let resolver = StorageResolver::builder()
        .bucket_override("sf-compat-head", bucket)
        .build();
    let store = store_for(expected["s3"]["s3_prefix"].as_str().unwrap(), &resolver);
    (expected, resolver, store)
}

fn key_of(v: &Value) -> Key {
    match v["key_type"].as_str().unwrap() {
        "int" => Key::Int(v["key_decimal"].as_str().unwrap().parse().unwrap()),
        "str" => Key::Str(v["key"].as_str().unwrap().to_owned()),
        other => panic!("key type {other}"),
    }
}

fn ctx_of(v: &Value) -> Option<RoutingContext> {
    v.get("routing_context").map(|c| {
        c.as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), CelValue::Str(v.as_str().unwrap().to_owned())))
            .collect()
    })
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn key_json(k: &Option<Key>) -> Value {
    match k {
        None => Value::Null,
        Some(Key::Int(i)) => (*i).into(),
        Some(Key::Str(s)) => s.clone().into(),
        Some(Key::Bytes(_)) => panic!("bytes"),
    }
}

async fn check_pairs(reader: &AsyncShardedReader, pairs: &Value) -> usize {
    let mut n = 0;
    for p in pairs.as_array().unwrap() {
        let key = key_of(p);
        let ctx = ctx_of(p);
        let got = reader
            .get_with_context(key.as_key_ref(), ctx.as_ref())
            .await
            .unwrap();
        assert_eq!(
            got.as_deref(),
            Some(&unhex(p["value_hex"].as_str().unwrap())[..]),
            "{p}"
        );
        if let Some(id) = p.get("db_id").and_then(Value::as_u64) {
            assert_eq!(
                u64::from(reader.route_key(key.as_key_ref(), ctx.as_ref()).unwrap()),
                id
            );
        }
        n += 1;
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_snapshots_read_back_byte_for_byte() {
    for name in [
        "hash_int_u64be",
        "cel_categorical",
        "empty_shards",
        "two_publishes",
    ] {
        let (expected, _resolver, store) = fixture(name);
        let reader = AsyncShardedReader::open(
            store.clone(),
            ReaderOptions::default().with_storage(_resolver.clone()),
        )
        .await
        .unwrap();
        let n = check_pairs(&reader, &expected["pairs"]).await;
        assert_eq!(n as u64, expected["num_pairs"].as_u64().unwrap(), "{name}");
        // Absent keys (some with an unknown categorical token) are misses.
        for a in expected["absent_keys"].as_array().unwrap() {
            let key = key_of(a);
            assert_eq!(
                reader
                    .get_with_context(key.as_key_ref(), ctx_of(a).as_ref())
                    .await
                    .unwrap(),
                None,
                "{name} {a}"
            );
        }
        // multi_get agrees, in input order.
        let keys: Vec<Key> = expected["pairs"]
            .as_array()
            .unwrap()
            .iter()
            .take(50)
            .map(key_of)
            .collect();
        if expected["pairs"][0].get("routing_context").is_none() {
            let refs: Vec<KeyRef<'_>> = keys.iter().map(Key::as_key_ref).collect();
            let got = reader.multi_get(&refs).await.unwrap();
            for ((k, v), p) in got.iter().zip(expected["pairs"].as_array().unwrap()) {
                assert_eq!(k, &key_of(p));
                assert_eq!(
                    v.as_deref(),
                    Some(&unhex(p["value_hex"].as_str().unwrap())[..])
                );
            }
        }
        // snapshot_info and shard_details as the Python reader reported them.
        let info = reader.snapshot_info().unwrap();
        let want = &expected["reader"]["snapshot_info"];
        assert_eq!(info.run_id, want["run_id"].as_str().unwrap());
        assert_eq!(u64::from(info.num_dbs), want["num_dbs"].as_u64().unwrap());
        assert_eq!(info.sharding.as_str(), want["sharding"].as_str().unwrap());
        assert_eq!(info.manifest_ref, want["manifest_ref"].as_str().unwrap());
        assert_eq!(info.row_count, want["row_count"].as_u64().unwrap());
        assert_eq!(
            info.key_encoding.as_str(),
            want["key_encoding"].as_str().unwrap()
        );
        assert_eq!(
            info.hash_algorithm,
            want["hash_algorithm"].as_str().unwrap()
        );
        let details: Vec<Value> = reader
            .shard_details()
            .unwrap()
            .iter()
            .map(|d| serde_json::json!({"db_id": d.db_id, "row_count": d.row_count, "min_key": key_json(&d.min_key), "max_key": key_json(&d.max_key), "db_url": d.db_url}))
            .collect();
        assert_eq!(
            Value::Array(details),
            expected["reader"]["shard_details"],
            "{name}"
        );
        reader.close();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_publishes_history_and_a_reader_pinned_to_the_older_manifest() {
    let (expected, resolver, store) = fixture("two_publishes");
    let history = store.list_manifests(10).await.unwrap();
    assert_eq!(history.len(), 2);
    let run1 = &expected["runs"][0];
    let older = run1["build_result"]["manifest_ref"].as_str().unwrap();
    assert_eq!(history[1].manifest_ref, older, "newest first");
    let pinned = AsyncShardedReader::open_pinned(
        store,
        older,
        ReaderOptions::default().with_storage(resolver),
    )
    .await
    .unwrap();
    assert_eq!(pinned.snapshot_info().unwrap().num_dbs, 4);
    let n = check_pairs(&pinned, &run1["pairs"]).await;
    assert_eq!(n, 300);
    assert!(
        !pinned.refresh().await.unwrap(),
        "a pinned reader never moves"
    );
}
