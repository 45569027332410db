//! Every validation rule of SPEC 4.10 and 3.5 is a ManifestParse error that says what is
//! wrong; mutated bytes never panic.

use proptest::prelude::*;
use rusqlite::Connection;
use shardyfusion_core::ErrorKind;
use shardyfusion_manifest::{LazyManifest, build_manifest, parse_manifest, pointer_from_json};

use crate::sample;

fn valid_image() -> Vec<u8> {
    let (build, shards) = sample();
    build_manifest(&build, &shards).unwrap()
}

/// Apply SQL to a copy of a valid image and return the new image.
fn mutate(sql: &str) -> Vec<u8> {
    let image = valid_image();
    let mut conn = Connection::open_in_memory().unwrap();
    conn.deserialize_read_exact(
        rusqlite::MAIN_DB,
        std::io::Cursor::new(&image[..]),
        image.len(),
        false,
    )
    .unwrap();
    conn.execute_batch(sql).unwrap();
    conn.serialize(rusqlite::MAIN_DB).unwrap().to_vec()
}

#[track_caller]
fn rejects(image: &[u8], needle: &str) {
    let err = parse_manifest(image).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ManifestParse, "{err}");
    assert!(
        err.message().contains(needle),
        "{:?} should contain {needle:?}",
        err.message()
    );
    if let Ok(lazy) = LazyManifest::open(image) {
        // The lazy reader may defer row checks, but must fail when the row is read.
        assert!(
            (0..lazy.build().num_dbs).any(|id| lazy.get_shard(id).is_err()),
            "{needle}"
        );
    }
}

#[test]
fn each_rule() {
    rejects(b"not sqlite at all", "expected SQLite");
    rejects(&valid_image()[..100], "malformed");
    rejects(&mutate("DROP TABLE shards"), "shards");
    rejects(
        &mutate("ALTER TABLE build_meta DROP COLUMN key_col"),
        "key_col",
    );
    rejects(&mutate("DELETE FROM build_meta"), "no row");
    rejects(
        &mutate("UPDATE build_meta SET num_dbs = 'two'"),
        "num_dbs must be an INTEGER",
    );
    rejects(
        &mutate("UPDATE build_meta SET sharding = '{bad'"),
        "not valid JSON",
    );
    rejects(
        &mutate("UPDATE build_meta SET created_at = 'yesterday'"),
        "\"yesterday\"",
    );
    rejects(
        &mutate("UPDATE shards SET row_count = -1 WHERE db_id = 0"),
        "row_count must be >= 0, got -1",
    );
    rejects(
        &mutate("UPDATE shards SET attempt = -2 WHERE db_id = 0"),
        "attempt must be >= 0",
    );
    rejects(
        &mutate("UPDATE shards SET db_bytes = -2 WHERE db_id = 0"),
        "db_bytes must be >= 0",
    );
    rejects(
        &mutate("UPDATE shards SET db_id = -1 WHERE db_id = 0"),
        "db_id",
    );
    rejects(
        &mutate("UPDATE build_meta SET format_version = 3"),
        "format_version 3",
    );
    rejects(&mutate("UPDATE build_meta SET num_dbs = 0"), "num_dbs");
    rejects(
        &mutate("UPDATE build_meta SET key_encoding = 'u16be'"),
        "'u16be'",
    );
    rejects(
        &mutate(
            r#"UPDATE build_meta SET sharding = '{"hash_algorithm": "xxh3_64", "boundaries": [1]}'"#,
        ),
        "boundaries",
    );
    rejects(
        &mutate("UPDATE build_meta SET num_dbs = 1"),
        "2 shard rows but num_dbs is 1",
    );
    rejects(
        &mutate("UPDATE build_meta SET num_dbs = 3; UPDATE shards SET db_id = 5 WHERE db_id = 1"),
        "outside [0, 3)",
    );
    rejects(
        &mutate(
            r#"UPDATE build_meta SET num_dbs = 2, sharding = '{"cel_columns": {"r": "string"}, "cel_expr": "r", "hash_algorithm": "xxh3_64", "routing_values": ["a", "b", "c"], "strategy": "cel"}'"#,
        ),
        "routing_values has 3 entries",
    );
    rejects(
        &mutate("UPDATE shards SET min_key = '[1]' WHERE db_id = 0"),
        "integer or a string",
    );
    rejects(
        &mutate("UPDATE shards SET writer_info = '{\"attempt\": \"x\"}' WHERE db_id = 0"),
        "attempt must be an integer",
    );
}

#[test]
fn duplicate_ids_are_rejected() {
    // The shards table has db_id as primary key; a duplicate can only come from another writer
    // whose table lacks it.
    let image = mutate(
        "ALTER TABLE shards RENAME TO s_old; CREATE TABLE shards AS SELECT * FROM s_old; DROP TABLE s_old; \
         INSERT INTO shards SELECT * FROM shards WHERE db_id = 0; UPDATE build_meta SET num_dbs = 3",
    );
    rejects(&image, "duplicate shard db_id 0");
}

#[test]
fn tolerated_variations() {
    // Extra columns, NULL custom / writer_info / db_url (Python-only details) are accepted.
    let image = mutate(
        "ALTER TABLE build_meta ADD COLUMN extra TEXT; UPDATE build_meta SET custom = ''; \
         UPDATE shards SET writer_info = '', db_url = NULL WHERE db_id = 1",
    );
    let m = parse_manifest(&image).unwrap();
    assert!(m.build.custom.is_empty());
    assert!(m.shard(1).is_empty());
}

#[test]
fn pointer_rules() {
    let ok = br#"{"manifest_content_type":"application/x-sqlite3","manifest_ref":"s3://b/p/m","run_id":"r","updated_at":"2026-01-01 00:00:00+00:00","extra":1}"#;
    let p = pointer_from_json(ok).unwrap();
    assert_eq!(p.format_version, 1);
    for (text, needle) in [
        (&b"not json"[..], "not valid JSON"),
        (b"[]", "expected a JSON object"),
        (br#"{"manifest_ref":"m","run_id":"r","updated_at":"2026-01-01T00:00:00Z"}"#, "manifest_content_type"),
        (br#"{"manifest_content_type":"x","run_id":"r","updated_at":"2026-01-01T00:00:00Z"}"#, "manifest_ref"),
        (br#"{"manifest_content_type":"x","manifest_ref":"m","updated_at":"2026-01-01T00:00:00Z"}"#, "run_id"),
        (br#"{"manifest_content_type":"x","manifest_ref":"m","run_id":"r"}"#, "updated_at"),
        (br#"{"manifest_content_type":"x","manifest_ref":5,"run_id":"r","updated_at":"2026-01-01T00:00:00Z"}"#, "manifest_ref must be a string"),
        (br#"{"manifest_content_type":"x","manifest_ref":"m","run_id":"r","updated_at":"soon"}"#, "soon"),
        (br#"{"format_version":"1","manifest_content_type":"x","manifest_ref":"m","run_id":"r","updated_at":"2026-01-01T00:00:00Z"}"#, "format_version"),
    ] {
        let err = pointer_from_json(text).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ManifestParse);
        assert!(err.message().starts_with("CURRENT pointer validation failed"), "{err}");
        assert!(err.message().contains(needle), "{err}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn mutated_manifests_never_panic(flips in proptest::collection::vec((0usize..12288, any::<u8>()), 1..8), cut in 0usize..12289) {
        let mut image = valid_image();
        for (at, byte) in flips {
            if at < image.len() {
                image[at] = byte;
            }
        }
        image.truncate(cut.max(1));
        // Either a valid parse or a ManifestParse error: never a panic, never another kind.
        match parse_manifest(&image) {
            Ok(m) => prop_assert!(m.build.num_dbs > 0),
            Err(e) => prop_assert_eq!(e.kind(), ErrorKind::ManifestParse),
        }
        if let Ok(lazy) = LazyManifest::open(&image) {
            for id in 0..lazy.build().num_dbs.min(4) {
                let _ = lazy.get_shard(id);
            }
        }
    }

    #[test]
    fn mutated_pointers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300), s in ".{0,200}") {
        for input in [&bytes[..], s.as_bytes()] {
            if let Err(e) = pointer_from_json(input) {
                prop_assert_eq!(e.kind(), ErrorKind::ManifestParse);
            }
        }
    }
}
