//! Every golden key-encoding vector of `key_encoding.json` (writer encoder and reader lookup).

use shardyfusion_core::{ErrorKind, Key, KeyEncoding, KeyRef};

use crate::{fixture, hex, unhex};

/// Parse a golden key. Integers beyond i64 come back as `Err(u128 value)`.
fn key_of(case: &serde_json::Value) -> Option<Result<Key, i128>> {
    let k = &case["key"];
    Some(match case["key_type"].as_str()? {
        "int" => {
            let v: i128 = case["key_decimal"].as_str()?.parse().ok()?;
            i64::try_from(v).map(Key::Int).map_err(|_| v)
        }
        "str" => Ok(Key::Str(k.as_str()?.to_owned())),
        "bytes" => Ok(Key::Bytes(unhex(k.as_str()?))),
        // float, NoneType, bytearray, bool: not representable as a Rust logical key.
        _ => return None,
    })
}

#[test]
fn encoding_names() {
    let golden = fixture("key_encoding.json");
    let names: Vec<_> = golden["supported_encodings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let ours: Vec<_> = KeyEncoding::ALL.iter().map(|e| e.as_str()).collect();
    assert_eq!(names, ours);
    assert_eq!(golden["default_encoding"], KeyEncoding::default().as_str());
    for (call, case) in golden["from_value_errors"].as_object().unwrap() {
        if let Some(name) = call
            .strip_prefix("KeyEncoding.from_value('")
            .and_then(|s| s.strip_suffix("')"))
        {
            let err = name.parse::<KeyEncoding>().unwrap_err();
            assert_eq!(err.message(), case["message"].as_str().unwrap());
        }
    }
}

#[test]
fn valid_cases_encode_byte_for_byte() {
    let golden = fixture("key_encoding.json");
    let mut checked = 0;
    for (name, enc) in golden["encodings"].as_object().unwrap() {
        let encoding: KeyEncoding = name.parse().unwrap();
        for case in enc["cases"].as_array().unwrap() {
            let key = key_of(case).expect("valid cases have representable types");
            match key {
                Ok(key) => {
                    let stored = encoding.encode(key.as_key_ref()).unwrap();
                    assert_eq!(
                        hex(&stored),
                        case["encoded_hex"].as_str().unwrap(),
                        "{name} {key}"
                    );
                    let lookup = encoding.normalize_lookup_key(key.as_key_ref()).unwrap();
                    let looked = encoding.encode(lookup).unwrap();
                    assert_eq!(
                        hex(&looked),
                        case["reader_lookup_encoded_hex"].as_str().unwrap()
                    );
                }
                Err(big) => {
                    // Python's u64be accepts 2^63..2^64-1 but cannot route them; Rust rejects
                    // them up front (SPEC 5.4).
                    assert_eq!(name, "u64be");
                    let err = Key::from_u64(u64::try_from(big).unwrap()).unwrap_err();
                    assert_eq!(err.kind(), ErrorKind::ConfigValidation);
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 40, "{checked}");
}

#[test]
fn error_cases_are_config_errors() {
    let golden = fixture("key_encoding.json");
    let mut checked = 0;
    for (name, enc) in golden["encodings"].as_object().unwrap() {
        let encoding: KeyEncoding = name.parse().unwrap();
        for case in enc["errors"].as_array().unwrap() {
            let Some(key) = key_of(case) else { continue };
            let Ok(key) = key else { continue }; // beyond i64: not constructible
            let kref = key.as_key_ref();
            assert_eq!(case["writer_encoder"]["ok"], false);
            let err = encoding.encode(kref).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::ConfigValidation, "{name} {kref}");
            let reader = &case["reader_lookup_encoder"];
            match (reader["ok"].as_bool().unwrap(), kref) {
                (true, KeyRef::Bytes(_)) => {
                    // Python passes pre-encoded bytes through unchanged; Rust decodes them to the
                    // integer they encode, which stores the same bytes (and routes correctly).
                    let lookup = encoding.normalize_lookup_key(kref).unwrap();
                    assert!(matches!(lookup, KeyRef::Int(_)));
                    assert_eq!(
                        hex(&encoding.encode(lookup).unwrap()),
                        reader["result"].as_str().unwrap()
                    );
                }
                (false, _) => {
                    let err = encoding
                        .normalize_lookup_key(kref)
                        .and_then(|k| encoding.encode(k))
                        .unwrap_err();
                    assert_eq!(err.kind(), ErrorKind::ConfigValidation, "{name} {kref}");
                }
                (true, other) => panic!("unexpected reader success for {other}"),
            }
            checked += 1;
        }
    }
    assert!(checked >= 10, "{checked}");
}
