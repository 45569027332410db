//! JSON column codecs of the manifest model, shared by every manifest representation (the v4
//! SQLite image, the PostgreSQL and SQLite-file stores): sharding JSON, `writer_info`, min/max
//! keys, custom fields; and the validation rules every loaded manifest must pass.
//!
//! Writers emit Python's spaced, sorted, ASCII-escaped style byte for byte; readers accept any
//! valid JSON. Every read failure is `ManifestParse` with a message that says what is wrong.

use std::collections::{BTreeMap, HashSet};

use serde_json::{Map, Value, json};

use crate::error::{Error, Result};
use crate::key::{HASH_ALGORITHM, Key};
use crate::model::{CustomFields, ManifestSharding, ParsedManifest, WriterInfo};
use crate::pyjson::{JsonStyle, to_string};
use crate::sharding::{CelColumnType, RoutingValue, ShardingStrategy, validate_routing_values};

fn parse_err(what: &str, why: impl std::fmt::Display) -> Error {
    Error::manifest_parse(format!("invalid {what}: {why}"))
}

fn parse_json(what: &str, text: &str) -> Result<Value> {
    serde_json::from_str(text)
        .map_err(|e| parse_err(what, format!("not valid JSON ({e}): {text:?}")))
}

/// The `sharding` column: all five keys, nulls included, spaced style.
///
/// ```
/// use shardyfusion_core::{codec, ManifestSharding};
/// assert_eq!(
///     codec::sharding_to_json(&ManifestSharding::hash()),
///     r#"{"cel_columns": null, "cel_expr": null, "hash_algorithm": "xxh3_64", "routing_values": null, "strategy": "hash"}"#
/// );
/// ```
pub fn sharding_to_json(s: &ManifestSharding) -> String {
    let cols = s.cel_columns.as_ref().map(|c| {
        Value::Object(
            c.iter()
                .map(|(k, t)| (k.clone(), Value::String(t.as_str().to_owned())))
                .collect(),
        )
    });
    let values = s.routing_values.as_ref().map(|v| {
        Value::Array(
            v.iter()
                .map(|r| match r {
                    RoutingValue::Int(i) => json!(i),
                    RoutingValue::Str(s) => json!(s),
                })
                .collect(),
        )
    });
    let v = json!({
        "cel_columns": cols,
        "cel_expr": s.cel_expr,
        "hash_algorithm": HASH_ALGORITHM,
        "routing_values": values,
        "strategy": s.strategy.as_str(),
    });
    to_string(&v, JsonStyle::Spaced)
}

/// Parse and validate the `sharding` column (SPEC 4.6).
pub fn sharding_from_json(text: &str) -> Result<ManifestSharding> {
    let what = "sharding JSON";
    let v = parse_json(what, text)?;
    let obj = v
        .as_object()
        .ok_or_else(|| parse_err(what, format!("expected an object, got {text:?}")))?;
    for k in obj.keys() {
        if !matches!(
            k.as_str(),
            "cel_columns" | "cel_expr" | "hash_algorithm" | "routing_values" | "strategy"
        ) {
            return Err(parse_err(what, format!("unknown key {k:?}")));
        }
    }
    match obj.get("hash_algorithm") {
        Some(Value::String(h)) if h == HASH_ALGORITHM => {}
        other => {
            return Err(parse_err(
                what,
                format!("hash_algorithm must be \"xxh3_64\", got {other:?}"),
            ));
        }
    }
    let strategy = match obj.get("strategy") {
        None | Some(Value::Null) => ShardingStrategy::Hash,
        Some(Value::String(s)) if s == "hash" => ShardingStrategy::Hash,
        Some(Value::String(s)) if s == "cel" => ShardingStrategy::Cel,
        Some(other) => {
            return Err(parse_err(
                what,
                format!("strategy must be \"hash\" or \"cel\", got {other}"),
            ));
        }
    };
    let cel_expr = match obj.get("cel_expr") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            return Err(parse_err(
                what,
                format!("cel_expr must be a string, got {other}"),
            ));
        }
    };
    let cel_columns = match obj.get("cel_columns") {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => {
            let mut cols = BTreeMap::new();
            for (k, t) in m {
                let ty: CelColumnType = t
                    .as_str()
                    .ok_or_else(|| {
                        parse_err(
                            what,
                            format!("cel_columns[{k:?}] must be a type name, got {t}"),
                        )
                    })?
                    .parse()
                    .map_err(|e: Error| parse_err(what, e.message()))?;
                cols.insert(k.clone(), ty);
            }
            Some(cols)
        }
        Some(other) => {
            return Err(parse_err(
                what,
                format!("cel_columns must be an object, got {other}"),
            ));
        }
    };
    let routing_values = match obj.get("routing_values") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => Some(routing_values_from_json(items)?),
        Some(other) => {
            return Err(parse_err(
                what,
                format!("routing_values must be a list, got {other}"),
            ));
        }
    };
    match strategy {
        ShardingStrategy::Cel => {
            if cel_expr.as_deref().is_none_or(str::is_empty) {
                return Err(parse_err(
                    what,
                    "CEL sharding requires a non-empty cel_expr",
                ));
            }
            if cel_columns.as_ref().is_none_or(BTreeMap::is_empty) {
                return Err(parse_err(
                    what,
                    "CEL sharding requires non-empty cel_columns",
                ));
            }
        }
        ShardingStrategy::Hash => {
            if cel_expr.is_some() || cel_columns.is_some() || routing_values.is_some() {
                return Err(parse_err(
                    what,
                    "HASH sharding must not carry cel_expr, cel_columns or routing_values",
                ));
            }
        }
    }
    Ok(ManifestSharding {
        strategy,
        cel_expr,
        cel_columns,
        routing_values,
    })
}

fn routing_values_from_json(items: &[Value]) -> Result<Vec<RoutingValue>> {
    let what = "sharding JSON";
    let values = items
        .iter()
        .map(|v| match v {
            Value::String(s) => Ok(RoutingValue::Str(s.clone())),
            Value::Number(n) if n.is_i64() => Ok(RoutingValue::Int(n.as_i64().unwrap_or_default())),
            other => Err(parse_err(
                what,
                format!("routing_values may hold only integers or strings, got {other}"),
            )),
        })
        .collect::<Result<Vec<_>>>()?;
    validate_routing_values(&values).map_err(|e| parse_err(what, e.message()))?;
    Ok(values)
}

/// The `writer_info` column (spaced style, sorted keys).
pub fn writer_info_to_json(w: &WriterInfo) -> String {
    let v = json!({
        "attempt": w.attempt,
        "duration_ms": w.duration_ms,
        "stage_id": w.stage_id,
        "task_attempt_id": w.task_attempt_id,
    });
    to_string(&v, JsonStyle::Spaced)
}

/// Parse `writer_info`: NULL or `''` → defaults; missing keys default; unknown keys ignored.
pub fn writer_info_from_json(text: Option<&str>) -> Result<WriterInfo> {
    let what = "writer_info JSON";
    let Some(text) = text.filter(|t| !t.is_empty()) else {
        return Ok(WriterInfo::default());
    };
    let v = parse_json(what, text)?;
    let obj = v
        .as_object()
        .ok_or_else(|| parse_err(what, format!("expected an object, got {text:?}")))?;
    let int = |k: &str| -> Result<Option<i64>> {
        match obj.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) if n.is_i64() => Ok(n.as_i64()),
            Some(other) => Err(parse_err(
                what,
                format!("{k} must be an integer, got {other}"),
            )),
        }
    };
    Ok(WriterInfo {
        attempt: int("attempt")?.unwrap_or(0),
        duration_ms: int("duration_ms")?.unwrap_or(0),
        stage_id: int("stage_id")?,
        task_attempt_id: int("task_attempt_id")?,
    })
}

/// The JSON of a min/max key: integers as numbers, strings as strings, byte keys as the string
/// of their UTF-8 text, or `None` (SQL NULL) when the bytes are not UTF-8.
pub fn key_to_json(key: &Key) -> Option<String> {
    let v = match key {
        Key::Int(i) => json!(i),
        Key::Str(s) => json!(s),
        Key::Bytes(b) => json!(std::str::from_utf8(b).ok()?),
    };
    Some(to_string(&v, JsonStyle::Spaced))
}

/// Parse a min/max key: JSON numbers are integer keys, JSON strings are string keys.
pub fn key_from_json(text: &str) -> Result<Key> {
    let what = "min/max key JSON";
    match parse_json(what, text)? {
        Value::Number(n) if n.is_i64() => Ok(Key::Int(n.as_i64().unwrap_or_default())),
        Value::String(s) => Ok(Key::Str(s)),
        other => Err(parse_err(
            what,
            format!("expected an integer or a string, got {other}"),
        )),
    }
}

/// The `custom` column (spaced style, sorted keys).
pub fn custom_to_json(custom: &CustomFields) -> String {
    to_string(&Value::Object(custom.clone()), JsonStyle::Spaced)
}

/// Parse `custom`: NULL or `''` → `{}`; anything but an object is an error.
pub fn custom_from_json(text: Option<&str>) -> Result<CustomFields> {
    let Some(text) = text.filter(|t| !t.is_empty()) else {
        return Ok(Map::new());
    };
    match parse_json("custom JSON", text)? {
        Value::Object(m) => Ok(m),
        other => Err(parse_err(
            "custom JSON",
            format!("expected an object, got {other}"),
        )),
    }
}

/// Refuse manifests that need features outside this library's scope (SPEC 4.9):
/// a `vector` object without a truthy `unified`, a `vector.kv_backend` other than `slatedb`, or
/// a `sqlite_sidecar`. These are `ConfigValidation` errors.
pub fn check_custom_supported(custom: &CustomFields) -> Result<()> {
    if custom.contains_key("sqlite_sidecar") {
        return Err(Error::config(
            "manifest uses the SQLite KV backend (custom.sqlite_sidecar), which this library does not read",
        ));
    }
    if let Some(Value::Object(vector)) = custom.get("vector") {
        let truthy = match vector.get("unified") {
            Some(Value::Bool(b)) => *b,
            Some(Value::Number(n)) => n.as_f64() != Some(0.0),
            Some(Value::String(s)) => !s.is_empty(),
            Some(Value::Array(a)) => !a.is_empty(),
            Some(Value::Object(o)) => !o.is_empty(),
            _ => false,
        };
        if !truthy {
            return Err(Error::config(
                "manifest is a vector snapshot (custom.vector without unified), which this library does not read",
            ));
        }
        if let Some(b) = vector.get("kv_backend")
            && b != "slatedb"
        {
            return Err(Error::config(format!(
                "manifest custom.vector.kv_backend is {b}, only \"slatedb\" is supported"
            )));
        }
    }
    Ok(())
}

/// The cross-row rules of SPEC 4.10 (9–12) plus the per-value ones the model can express:
/// `format_version` 4, `num_dbs` > 0, at most `num_dbs` rows, unique ids in range, categorical
/// `num_dbs` matching the routing values.
pub fn validate_manifest(m: &ParsedManifest) -> Result<()> {
    let b = &m.build;
    if b.format_version != crate::model::FORMAT_VERSION {
        return Err(Error::manifest_parse(format!(
            "unsupported manifest format_version {} (expected 4)",
            b.format_version
        )));
    }
    if b.num_dbs == 0 {
        return Err(Error::manifest_parse("num_dbs must be > 0, got 0"));
    }
    if m.shards.len() > b.num_dbs as usize {
        return Err(Error::manifest_parse(format!(
            "manifest has {} shard rows but num_dbs is {}",
            m.shards.len(),
            b.num_dbs
        )));
    }
    let mut seen = HashSet::with_capacity(m.shards.len());
    for s in &m.shards {
        if s.db_id >= b.num_dbs {
            return Err(Error::manifest_parse(format!(
                "shard db_id {} is outside [0, {})",
                s.db_id, b.num_dbs
            )));
        }
        if !seen.insert(s.db_id) {
            return Err(Error::manifest_parse(format!(
                "duplicate shard db_id {}",
                s.db_id
            )));
        }
    }
    if let Some(values) = &b.sharding.routing_values {
        let want = values.len().max(1);
        if b.num_dbs as usize != want {
            return Err(Error::manifest_parse(format!(
                "num_dbs is {} but routing_values has {} entries (expected num_dbs = {want})",
                b.num_dbs,
                values.len()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn sharding_round_trip_and_exact_text() {
        let cat = ManifestSharding {
            strategy: ShardingStrategy::Cel,
            cel_expr: Some("region".into()),
            cel_columns: Some([("region".to_owned(), CelColumnType::String)].into()),
            routing_values: Some(vec!["ap".into(), "eu".into(), "us".into()]),
        };
        let text = sharding_to_json(&cat);
        assert_eq!(
            text,
            r#"{"cel_columns": {"region": "string"}, "cel_expr": "region", "hash_algorithm": "xxh3_64", "routing_values": ["ap", "eu", "us"], "strategy": "cel"}"#
        );
        assert_eq!(sharding_from_json(&text).unwrap(), cat);
        assert_eq!(
            sharding_from_json(&sharding_to_json(&ManifestSharding::hash())).unwrap(),
            ManifestSharding::hash()
        );
        assert_eq!(
            sharding_from_json(r#"{"hash_algorithm":"xxh3_64"}"#).unwrap(),
            ManifestSharding::hash()
        );
    }

    #[test]
    fn sharding_read_rules() {
        for (text, needle) in [
            (
                r#"{"hash_algorithm": "xxh3_64", "boundaries": []}"#,
                "unknown key \"boundaries\"",
            ),
            (r#"{"strategy": "hash"}"#, "hash_algorithm"),
            (r#"{"hash_algorithm": null}"#, "hash_algorithm"),
            (r#"{"hash_algorithm": "md5"}"#, "md5"),
            (
                r#"{"hash_algorithm": "xxh3_64", "strategy": "range"}"#,
                "range",
            ),
            (
                r#"{"hash_algorithm": "xxh3_64", "strategy": "cel", "cel_columns": {"a": "int"}}"#,
                "cel_expr",
            ),
            (
                r#"{"hash_algorithm": "xxh3_64", "strategy": "cel", "cel_expr": "a"}"#,
                "cel_columns",
            ),
            (r#"{"hash_algorithm": "xxh3_64", "cel_expr": "a"}"#, "HASH"),
            (
                r#"{"hash_algorithm": "xxh3_64", "strategy": "cel", "cel_expr": "a", "cel_columns": {"a": "int"}, "routing_values": [1, "x"]}"#,
                "mixed",
            ),
            (
                r#"{"hash_algorithm": "xxh3_64", "strategy": "cel", "cel_expr": "a", "cel_columns": {"a": "int"}, "routing_values": [true]}"#,
                "true",
            ),
            (
                r#"{"hash_algorithm": "xxh3_64", "strategy": "cel", "cel_expr": "a", "cel_columns": {"a": "int"}, "routing_values": [1.5]}"#,
                "1.5",
            ),
            (
                r#"{"hash_algorithm": "xxh3_64", "strategy": "cel", "cel_expr": "a", "cel_columns": {"a": "int"}, "routing_values": [null]}"#,
                "null",
            ),
            (
                r#"{"hash_algorithm": "xxh3_64", "strategy": "cel", "cel_expr": "a", "cel_columns": {"a": "float"}}"#,
                "float",
            ),
            ("[1]", "expected an object"),
            ("{", "not valid JSON"),
        ] {
            let err = sharding_from_json(text).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::ManifestParse, "{text}");
            assert!(err.message().contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn writer_info_and_keys() {
        let w = WriterInfo {
            attempt: 1,
            duration_ms: 25,
            stage_id: None,
            task_attempt_id: None,
        };
        let text = writer_info_to_json(&w);
        assert_eq!(
            text,
            r#"{"attempt": 1, "duration_ms": 25, "stage_id": null, "task_attempt_id": null}"#
        );
        assert_eq!(writer_info_from_json(Some(&text)).unwrap(), w);
        assert_eq!(writer_info_from_json(None).unwrap(), WriterInfo::default());
        assert_eq!(
            writer_info_from_json(Some("")).unwrap(),
            WriterInfo::default()
        );
        let py = writer_info_from_json(Some(
            r#"{"stage_id": 3, "task_attempt_id": 9, "extra": "x"}"#,
        ))
        .unwrap();
        assert_eq!(
            (py.stage_id, py.task_attempt_id, py.attempt),
            (Some(3), Some(9), 0)
        );
        assert!(writer_info_from_json(Some(r#"{"attempt": "one"}"#)).is_err());

        assert_eq!(key_to_json(&Key::Int(99)).as_deref(), Some("99"));
        assert_eq!(
            key_to_json(&Key::Str("é".into())).as_deref(),
            Some(r#""\u00e9""#)
        );
        assert_eq!(
            key_to_json(&Key::Bytes(b"ab".to_vec())).as_deref(),
            Some(r#""ab""#)
        );
        assert_eq!(key_to_json(&Key::Bytes(vec![0xff])), None);
        assert_eq!(key_from_json("-5").unwrap(), Key::Int(-5));
        assert_eq!(key_from_json(r#""a""#).unwrap(), Key::Str("a".into()));
        assert_eq!(
            key_from_json("[1]").unwrap_err().kind(),
            ErrorKind::ManifestParse
        );
    }

    #[test]
    fn custom_fields() {
        assert!(custom_from_json(None).unwrap().is_empty());
        assert!(custom_from_json(Some("")).unwrap().is_empty());
        let c = custom_from_json(Some(r#"{"b": 1.0, "a": [1e20]}"#)).unwrap();
        assert_eq!(custom_to_json(&c), r#"{"a": [1e+20], "b": 1.0}"#);
        assert!(custom_from_json(Some("3")).is_err());
        let bad = |t: &str| check_custom_supported(&custom_from_json(Some(t)).unwrap());
        assert_eq!(
            bad(r#"{"sqlite_sidecar": {}}"#).unwrap_err().kind(),
            ErrorKind::ConfigValidation
        );
        assert!(bad(r#"{"vector": {"dim": 3}}"#).is_err());
        assert!(bad(r#"{"vector": {"unified": true, "kv_backend": "sqlite"}}"#).is_err());
        assert!(bad(r#"{"vector": {"unified": true, "kv_backend": "slatedb"}}"#).is_ok());
        assert!(bad(r#"{"team": "ml"}"#).is_ok());
    }
}
