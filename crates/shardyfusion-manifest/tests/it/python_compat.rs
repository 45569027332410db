//! The Python-written snapshots parse into exactly the facts of their `expected.json`, and a
//! Rust-built image has the schema and column texts a Python reader parses.

use rusqlite::Connection;
use serde_json::Value;
use shardyfusion_core::{Key, ShardingStrategy, Timestamp};
use shardyfusion_manifest::{
    LazyManifest, build_manifest, parse_manifest, pointer_from_json, pointer_to_json,
};

use crate::{fixtures, sample};

fn key_json(k: &Option<Key>) -> Value {
    match k {
        None => Value::Null,
        Some(Key::Int(i)) => (*i).into(),
        Some(Key::Str(s)) => s.clone().into(),
        Some(Key::Bytes(_)) => panic!("manifests never hold byte keys"),
    }
}

fn manifest_file(dir: &std::path::Path, manifest_ref: &str) -> Vec<u8> {
    let name = manifest_ref.rsplit('/').nth(1).unwrap();
    std::fs::read(dir.join("manifests").join(name)).unwrap()
}

#[test]
fn python_snapshots_parse_into_their_expected_facts() {
    let mut checked = 0;
    for entry in std::fs::read_dir(fixtures()).unwrap() {
        let dir = entry.unwrap().path();
        let expected: Value =
            serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();

        // The pointer: parsed facts, and Rust writes the same bytes back.
        let raw = std::fs::read(dir.join("_CURRENT")).unwrap();
        assert_eq!(
            raw,
            expected["current_pointer_raw"].as_str().unwrap().as_bytes()
        );
        let pointer = pointer_from_json(&raw).unwrap();
        let want = &expected["current_pointer"];
        assert_eq!(pointer.manifest_ref, want["manifest_ref"].as_str().unwrap());
        assert_eq!(pointer.run_id, want["run_id"].as_str().unwrap());
        assert_eq!(
            pointer.updated_at,
            Timestamp::parse(want["updated_at"].as_str().unwrap()).unwrap()
        );
        assert_eq!(
            pointer_to_json(&pointer).as_bytes(),
            &raw[..],
            "pointer bytes of {}",
            dir.display()
        );

        // Every manifest parses; its run id matches the listing.
        for m in expected["manifests"].as_array().unwrap() {
            let bytes = manifest_file(&dir, m["ref"].as_str().unwrap());
            assert_eq!(bytes.len() as u64, m["payload_bytes"].as_u64().unwrap());
            let parsed = parse_manifest(&bytes).unwrap();
            assert_eq!(parsed.build.run_id, m["run_id"].as_str().unwrap());
        }

        // The current manifest: snapshot_info and shard_details exactly as the Python reader.
        let info = &expected["reader"]["snapshot_info"];
        let parsed = parse_manifest(&manifest_file(&dir, &pointer.manifest_ref)).unwrap();
        let b = &parsed.build;
        assert_eq!(b.run_id, info["run_id"].as_str().unwrap());
        assert_eq!(u64::from(b.num_dbs), info["num_dbs"].as_u64().unwrap());
        assert_eq!(
            b.sharding.strategy.as_str(),
            info["sharding"].as_str().unwrap()
        );
        assert_eq!(
            b.sharding.hash_algorithm(),
            info["hash_algorithm"].as_str().unwrap()
        );
        assert_eq!(
            b.key_encoding.as_str(),
            info["key_encoding"].as_str().unwrap()
        );
        assert_eq!(
            b.created_at,
            Timestamp::parse(info["created_at"].as_str().unwrap()).unwrap()
        );
        assert_eq!(parsed.row_count(), info["row_count"].as_u64().unwrap());
        assert_eq!(b.s3_prefix, expected["s3"]["s3_prefix"].as_str().unwrap());
        let details: Vec<Value> = parsed
            .dense_shards()
            .iter()
            .map(|s| {
                serde_json::json!({
                    "db_id": s.db_id, "row_count": s.row_count, "min_key": key_json(&s.min_key),
                    "max_key": key_json(&s.max_key), "db_url": s.db_url,
                })
            })
            .collect();
        assert_eq!(
            Value::Array(details),
            expected["reader"]["shard_details"],
            "{}",
            dir.display()
        );
        if b.sharding.strategy == ShardingStrategy::Cel {
            let values = b.sharding.routing_values.as_ref().unwrap();
            assert_eq!(u64::from(b.num_dbs), values.len().max(1) as u64);
        }

        // The lazy lookup agrees with the eager parse for every id.
        let lazy = LazyManifest::open(&manifest_file(&dir, &pointer.manifest_ref)).unwrap();
        for id in 0..b.num_dbs {
            assert_eq!(lazy.get_shard(id).unwrap(), parsed.shard(id));
        }
        assert!(lazy.get_shard(b.num_dbs).is_err());
        checked += 1;
    }
    assert_eq!(checked, 4);
}

#[test]
fn two_publishes_older_manifest_has_run_one_facts() {
    let dir = fixtures().join("two_publishes");
    let expected: Value =
        serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
    let run1 = &expected["runs"][0];
    let parsed = parse_manifest(&manifest_file(
        &dir,
        run1["build_result"]["manifest_ref"].as_str().unwrap(),
    ))
    .unwrap();
    assert_eq!(parsed.build.num_dbs, 4);
    assert_eq!(
        parsed.row_count(),
        run1["build_result"]["rows_written"].as_u64().unwrap()
    );
}

fn schema_sql(image: &[u8]) -> Vec<(String, String)> {
    let mut conn = Connection::open_in_memory().unwrap();
    conn.deserialize_read_exact(
        rusqlite::MAIN_DB,
        std::io::Cursor::new(image),
        image.len(),
        true,
    )
    .unwrap();
    let mut stmt = conn
        .prepare("SELECT type || ' ' || name, sql FROM sqlite_master ORDER BY name")
        .unwrap();
    stmt.query_map([], |r| {
        Ok((
            r.get(0)?,
            r.get::<_, Option<String>>(1)?.unwrap_or_default(),
        ))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

#[test]
fn rust_image_matches_the_python_schema_and_container() {
    let dir = fixtures().join("hash_int_u64be/manifests");
    let python = std::fs::read(
        std::fs::read_dir(&dir)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path(),
    )
    .unwrap();
    let (build, shards) = sample();
    let ours = build_manifest(&build, &shards).unwrap();
    // Same tables, same CREATE text, nothing else (no indexes).
    assert_eq!(schema_sql(&ours), schema_sql(&python));
    assert_eq!(schema_sql(&ours).len(), 2, "exactly the two tables");
    // Rollback-journal (non-WAL) image, page size 4096, same size as Python's 2-shard image.
    assert_eq!(&ours[..16], b"SQLite format 3\0");
    assert_eq!((ours[18], ours[19]), (1, 1));
    assert_eq!(u16::from_be_bytes([ours[16], ours[17]]), 4096);
    assert_eq!(ours.len(), 12288);
    assert_eq!(&ours[60..64], &[0, 0, 0, 0], "user_version 0");
    assert_eq!(
        u32::from_be_bytes([ours[56], ours[57], ours[58], ours[59]]),
        1,
        "UTF-8 text encoding"
    );
}

#[test]
fn rust_image_column_texts_are_what_python_parses() {
    let (mut build, shards) = sample();
    build.custom = serde_json::json!({"team": "ml", "ratio": 1e20})
        .as_object()
        .unwrap()
        .clone();
    let image = build_manifest(&build, &shards).unwrap();
    let mut conn = Connection::open_in_memory().unwrap();
    conn.deserialize_read_exact(
        rusqlite::MAIN_DB,
        std::io::Cursor::new(&image[..]),
        image.len(),
        true,
    )
    .unwrap();
    let row: (
        String,
        String,
        i64,
        String,
        String,
        String,
        String,
        String,
        i64,
        String,
        String,
    ) = conn
        .query_row("SELECT * FROM build_meta", [], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
                r.get(8)?,
                r.get(9)?,
                r.get(10)?,
            ))
        })
        .unwrap();
    assert_eq!(row.0, "abc");
    assert_eq!(row.1, "2026-03-14T10:30:00.123456Z");
    assert_eq!(row.2, 2);
    assert_eq!(row.3, "s3://bucket/prefix/", "prefix kept exactly as given");
    assert_eq!(row.4, "_key");
    assert_eq!(
        row.5,
        r#"{"cel_columns": null, "cel_expr": null, "hash_algorithm": "xxh3_64", "routing_values": null, "strategy": "hash"}"#
    );
    assert_eq!(
        (row.6.as_str(), row.7.as_str(), row.8, row.9.as_str()),
        ("db={db_id:05d}", "shards", 4, "u64be")
    );
    assert_eq!(row.10, r#"{"ratio": 1e+20, "team": "ml"}"#);
    let types: String = conn
        .query_row("SELECT typeof(db_id)||typeof(attempt)||typeof(row_count)||typeof(db_bytes)||typeof(min_key) FROM shards LIMIT 1", [], |r| r.get(0))
        .unwrap();
    assert_eq!(types, "integerintegerintegerintegertext");
    let (min, wi): (String, String) = conn
        .query_row(
            "SELECT min_key, writer_info FROM shards WHERE db_id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(min, "1");
    assert_eq!(
        wi,
        r#"{"attempt": 0, "duration_ms": 12, "stage_id": null, "task_attempt_id": null}"#
    );
    // Round trip.
    let parsed = parse_manifest(&image).unwrap();
    assert_eq!(parsed.build, build);
    assert_eq!(parsed.shards, shards);
}

#[test]
fn byte_keys_are_stored_as_text_or_null_and_empty_shards_are_left_out() {
    let (build, mut shards) = sample();
    shards[0].min_key = Some(Key::Bytes(b"abc".to_vec()));
    shards[0].max_key = Some(Key::Bytes(vec![0xff, 0x00]));
    shards[1].db_url = None; // empty shard: not written
    let parsed = parse_manifest(&build_manifest(&build, &shards).unwrap()).unwrap();
    assert_eq!(parsed.shards.len(), 1);
    assert_eq!(parsed.shards[0].min_key, Some(Key::Str("abc".into())));
    assert_eq!(parsed.shards[0].max_key, None);
    assert!(parsed.shard(1).is_empty());
}
