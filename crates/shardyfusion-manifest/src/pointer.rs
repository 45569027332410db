//! The `_CURRENT` pointer JSON: sorted keys, compact separators, ASCII-escaped, no newline.

use serde_json::{Value, json};
use shardyfusion_core::pyjson::{JsonStyle, to_string};
use shardyfusion_core::{CurrentPointer, Error, Result, Timestamp};

/// Serialize a pointer byte-exactly.
///
/// ```
/// use shardyfusion_core::{CurrentPointer, Timestamp};
/// use shardyfusion_manifest::{pointer_from_json, pointer_to_json};
/// let p = CurrentPointer::new("s3://b/p/manifests/x/manifest", "abc", Timestamp::parse("2026-11-24T06:53:30.808441Z").unwrap());
/// let text = pointer_to_json(&p);
/// assert_eq!(text, r#"{"format_version":1,"manifest_content_type":"application/x-sqlite3","manifest_ref":"s3://b/p/manifests/x/manifest","run_id":"abc","updated_at":"2026-11-24T06:53:30.808441Z"}"#);
/// assert_eq!(pointer_from_json(text.as_bytes()).unwrap(), p);
/// ```
pub fn pointer_to_json(p: &CurrentPointer) -> String {
    let v = json!({
        "format_version": p.format_version,
        "manifest_content_type": p.manifest_content_type,
        "manifest_ref": p.manifest_ref,
        "run_id": p.run_id,
        "updated_at": p.updated_at.to_iso(),
    });
    to_string(&v, JsonStyle::Compact)
}

fn invalid(why: impl std::fmt::Display) -> Error {
    Error::manifest_parse(format!("CURRENT pointer validation failed: {why}"))
}

/// Parse a pointer: required `manifest_content_type`, `manifest_ref`, `run_id`, `updated_at`;
/// optional integer `format_version` (default 1); unknown keys ignored.
pub fn pointer_from_json(bytes: &[u8]) -> Result<CurrentPointer> {
    let v: Value =
        serde_json::from_slice(bytes).map_err(|e| invalid(format!("not valid JSON ({e})")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| invalid(format!("expected a JSON object, got {v}")))?;
    let text = |k: &str| -> Result<String> {
        match obj.get(k) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(other) => Err(invalid(format!("{k} must be a string, got {other}"))),
            None => Err(invalid(format!("missing field {k:?}"))),
        }
    };
    let format_version = match obj.get("format_version") {
        None | Some(Value::Null) => 1,
        Some(Value::Number(n)) if n.is_i64() => n.as_i64().unwrap_or(1),
        Some(other) => {
            return Err(invalid(format!(
                "format_version must be an integer, got {other}"
            )));
        }
    };
    let updated_at = text("updated_at")?;
    Ok(CurrentPointer {
        format_version,
        manifest_content_type: text("manifest_content_type")?,
        manifest_ref: text("manifest_ref")?,
        run_id: text("run_id")?,
        updated_at: Timestamp::parse(&updated_at).map_err(|e| invalid(e.message()))?,
    })
}
