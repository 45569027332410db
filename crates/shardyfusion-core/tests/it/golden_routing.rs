//! Every golden routing vector of `routing.json` (written by the Python implementation).

use shardyfusion_core::{
    ErrorKind, HashRouter, Key, KeyRef, check_hash_algorithm, hash_db_id, xxh3_digest,
};

use crate::{fixture, hex, unhex};

/// The logical key of a golden case, or `None` when Rust cannot even represent it as a key
/// (then the case must be an integer outside i64, which `Key::from_u64` rejects).
fn case_key(case: &serde_json::Value) -> Key {
    match case["key_type"].as_str().unwrap() {
        "int" => Key::Int(case["key_decimal"].as_str().unwrap().parse().unwrap()),
        "str" => Key::Str(case["key"].as_str().unwrap().to_owned()),
        "bytes" => Key::Bytes(unhex(case["key"].as_str().unwrap())),
        other => panic!("unknown key_type {other}"),
    }
}

#[test]
fn every_golden_case_routes_exactly_like_python() {
    let golden = fixture("routing.json");
    let cases = golden["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 234);
    let mut checked = 0;
    for case in cases {
        let key = case_key(case);
        let kref = key.as_key_ref();
        assert_eq!(
            hex(&key.canonical_bytes()),
            case["canonical_bytes_hex"].as_str().unwrap(),
            "{kref}"
        );
        let digest: u64 = case["xxh3_64"].as_str().unwrap().parse().unwrap();
        assert_eq!(xxh3_digest(kref), digest, "digest of {kref}");
        assert_eq!(
            format!("{digest:016x}"),
            case["xxh3_64_hex"].as_str().unwrap()
        );
        for (n, want) in case["db_ids"].as_object().unwrap() {
            let n: u32 = n.parse().unwrap();
            let router = HashRouter::new(n).unwrap();
            assert_eq!(
                u64::from(router.db_id(kref)),
                want.as_u64().unwrap(),
                "{kref} % {n}"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 234 * 9);
}

#[test]
fn integers_outside_i64_are_rejected() {
    let golden = fixture("routing.json");
    let mut seen = 0;
    for case in golden["invalid_inputs"].as_array().unwrap() {
        let repr = case["python_repr"].as_str().unwrap();
        // Rust's key type cannot hold floats, None, lists or memoryviews at all; the integers
        // that fit in u64 come in through Key::from_u64 and must be rejected there.
        if let Ok(v) = repr.parse::<u64>() {
            let err = Key::from_u64(v).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::ConfigValidation);
            assert!(err.message().contains(repr), "{err}");
            assert!(case["canonical_bytes"]["ok"] == false);
            seen += 1;
        }
    }
    assert_eq!(seen, 2, "2^63 and 2^64-1");
}

#[test]
fn num_dbs_edge_cases() {
    let golden = fixture("routing.json");
    let edges = &golden["num_dbs_edge_cases"];
    assert_eq!(edges["xxh3_db_id(1, 0)"]["ok"], false);
    assert_eq!(
        hash_db_id(KeyRef::Int(1), 0).unwrap_err().kind(),
        ErrorKind::ConfigValidation
    );
    for (name, case) in edges.as_object().unwrap() {
        if let Some(algo) = name
            .strip_prefix("hash_db_id(1, 8, '")
            .and_then(|s| s.strip_suffix("')"))
        {
            assert_eq!(
                check_hash_algorithm(algo).is_ok(),
                case["ok"] == true,
                "{name}"
            );
        }
    }
    assert_eq!(hash_db_id(KeyRef::Bytes(b"anything"), 1).unwrap(), 0);
}

#[test]
fn spec_extra_vector() {
    assert_eq!(xxh3_digest(KeyRef::Str("eu:3")), 11259148546011499122);
    assert_eq!(hash_db_id(KeyRef::Str("eu:3"), 8).unwrap(), 2);
}
