//! Integration tests of shardyfusion-cel: the golden CEL vectors written by the Python
//! implementation, and routing semantics.

#![allow(clippy::unwrap_used)]

mod golden;
mod semantics;

use std::collections::BTreeMap;

use serde_json::Value;
use shardyfusion_cel::{CelResult, CelValue, RoutingContext};
use shardyfusion_core::CelColumnType;

pub(crate) fn fixture() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/cel.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

pub(crate) fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

pub(crate) fn columns(v: &Value) -> BTreeMap<String, CelColumnType> {
    v.as_object()
        .unwrap()
        .iter()
        .map(|(k, t)| (k.clone(), t.as_str().unwrap().parse().unwrap()))
        .collect()
}

/// A fixture value as the declared column type expects it.
pub(crate) fn cel_value(ty: CelColumnType, v: &Value) -> CelValue {
    match ty {
        CelColumnType::Int => CelValue::Int(v.as_i64().unwrap()),
        CelColumnType::Uint => CelValue::Uint(
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                .unwrap(),
        ),
        CelColumnType::Double => CelValue::Double(v.as_f64().unwrap()),
        CelColumnType::Bool => CelValue::Bool(v.as_bool().unwrap()),
        CelColumnType::String => CelValue::Str(v.as_str().unwrap().to_owned()),
        CelColumnType::Bytes => CelValue::Bytes(unhex(v["bytes_hex"].as_str().unwrap())),
    }
}

pub(crate) fn context(cols: &BTreeMap<String, CelColumnType>, ctx: &Value) -> RoutingContext {
    ctx.as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), cel_value(cols[k], v)))
        .collect()
}

/// The fixture's form of a result: ints as numbers, strings, bytes as `{"bytes_hex"}`.
pub(crate) fn result_json(r: &CelResult) -> Value {
    match r {
        CelResult::Int(i) => (*i).into(),
        CelResult::Uint(u) => (*u).into(),
        CelResult::Str(s) => s.clone().into(),
        CelResult::Bytes(b) => {
            serde_json::json!({"bytes_hex": b.iter().map(|x| format!("{x:02x}")).collect::<String>()})
        }
    }
}

/// Python returns CEL runtime errors as string values such as `OUT_OF_RANGE: …`; Rust must
/// return errors instead (SPEC 14.2).
pub(crate) fn is_python_error_string(v: &Value) -> bool {
    v.as_str().is_some_and(|s| {
        s.split_once(": ").is_some_and(|(code, _)| {
            !code.is_empty() && code.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
        })
    })
}
