//! The JSON wire form of the engine seam: a [`BuildPlan`] goes from the driver to every task,
//! a [`ShardResult`] from a task back to the driver (engines pickle or collect small strings).

use base64::Engine as _;
use serde_json::{Map, Value, json};
use shardyfusion_core::{Error, Key, Result, RoutingValue};

use crate::engine::BuildPlan;
use crate::shard::ShardResult;

fn bad(what: &str, detail: impl std::fmt::Display) -> Error {
    Error::config(format!(
        "not a valid {what} (the JSON that write_partition and commit exchange): {detail}"
    ))
}

fn key_json(k: &Key) -> Value {
    match k {
        Key::Int(i) => json!({ "int": i }),
        Key::Str(s) => json!({ "str": s }),
        Key::Bytes(b) => json!({ "bytes": base64::engine::general_purpose::STANDARD.encode(b) }),
    }
}

fn key_of(v: &Value, what: &str) -> Result<Option<Key>> {
    if v.is_null() {
        return Ok(None);
    }
    let o = v
        .as_object()
        .ok_or_else(|| bad(what, "a key must be an object"))?;
    if let Some(i) = o.get("int") {
        return i
            .as_i64()
            .map(|i| Some(Key::Int(i)))
            .ok_or_else(|| bad(what, "an int key must be a 64-bit integer"));
    }
    if let Some(s) = o.get("str") {
        return s
            .as_str()
            .map(|s| Some(Key::Str(s.to_owned())))
            .ok_or_else(|| bad(what, "a str key must be a string"));
    }
    if let Some(b) = o.get("bytes") {
        let text = b
            .as_str()
            .ok_or_else(|| bad(what, "a bytes key must be base64 text"))?;
        return base64::engine::general_purpose::STANDARD
            .decode(text)
            .map(|b| Some(Key::Bytes(b)))
            .map_err(|e| bad(what, e));
    }
    Err(bad(what, "a key must have one of int, str, bytes"))
}

struct Fields<'a> {
    map: &'a Map<String, Value>,
    what: &'static str,
}

impl Fields<'_> {
    fn get(&self, name: &str) -> Result<&Value> {
        self.map
            .get(name)
            .ok_or_else(|| bad(self.what, format!("missing {name:?}")))
    }
    fn str(&self, name: &str) -> Result<String> {
        self.get(name)?
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| bad(self.what, format!("{name:?} must be a string")))
    }
    fn u64(&self, name: &str) -> Result<u64> {
        self.get(name)?.as_u64().ok_or_else(|| {
            bad(
                self.what,
                format!("{name:?} must be a non-negative integer"),
            )
        })
    }
    fn u32(&self, name: &str) -> Result<u32> {
        u32::try_from(self.u64(name)?)
            .map_err(|_| bad(self.what, format!("{name:?} must fit 32 bits")))
    }
    fn opt_str(&self, name: &str) -> Result<Option<String>> {
        match self.map.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_str()
                .map(|s| Some(s.to_owned()))
                .ok_or_else(|| bad(self.what, format!("{name:?} must be a string or null"))),
        }
    }
}

fn object<'a>(v: &'a Value, what: &'static str) -> Result<Fields<'a>> {
    v.as_object()
        .map(|map| Fields { map, what })
        .ok_or_else(|| bad(what, "expected a JSON object"))
}

impl BuildPlan {
    /// The plan as JSON text, for the tasks of an engine.
    pub fn to_json(&self) -> String {
        let values = self.routing_values.as_ref().map(|vs| {
            vs.iter()
                .map(|v| match v {
                    RoutingValue::Int(i) => json!(i),
                    RoutingValue::Str(s) => json!(s),
                })
                .collect::<Vec<_>>()
        });
        json!({
            "run_id": self.run_id,
            "num_dbs": self.num_dbs,
            "key_col": self.key_col,
            "routing_values": values,
            "writer_version": self.writer_version,
        })
        .to_string()
    }

    /// A plan from [`to_json`](Self::to_json) text.
    pub fn from_json(text: &str) -> Result<BuildPlan> {
        const WHAT: &str = "build plan";
        let v: Value = serde_json::from_str(text).map_err(|e| bad(WHAT, e))?;
        let f = object(&v, WHAT)?;
        let routing_values = match f.map.get("routing_values") {
            None | Some(Value::Null) => None,
            Some(Value::Array(vs)) => Some(
                vs.iter()
                    .map(|v| match v {
                        Value::Number(n) => n.as_i64().map(RoutingValue::Int).ok_or_else(|| {
                            bad(WHAT, "routing values must be 64-bit integers or strings")
                        }),
                        Value::String(s) => Ok(RoutingValue::Str(s.clone())),
                        _ => Err(bad(WHAT, "routing values must be integers or strings")),
                    })
                    .collect::<Result<Vec<_>>>()?,
            ),
            Some(_) => return Err(bad(WHAT, "\"routing_values\" must be a list or null")),
        };
        Ok(BuildPlan {
            run_id: f.str("run_id")?,
            num_dbs: f.u32("num_dbs")?,
            key_col: f.str("key_col")?,
            routing_values,
            writer_version: f.str("writer_version")?,
        })
    }
}

impl ShardResult {
    /// The result as JSON text, for a task to return to its driver.
    pub fn to_json(&self) -> String {
        json!({
            "db_id": self.db_id,
            "db_url": self.db_url,
            "attempt": self.attempt,
            "row_count": self.row_count,
            "min_key": self.min_key.as_ref().map(key_json),
            "max_key": self.max_key.as_ref().map(key_json),
            "checkpoint_id": self.checkpoint_id,
            "db_bytes": self.db_bytes,
            "duration_ms": self.duration_ms,
            "duplicate_keys": self.duplicate_keys,
            "attempt_urls": self.attempt_urls,
            "writer_version": self.writer_version,
        })
        .to_string()
    }

    /// A result from [`to_json`](Self::to_json) text.
    pub fn from_json(text: &str) -> Result<ShardResult> {
        const WHAT: &str = "shard result";
        let v: Value = serde_json::from_str(text).map_err(|e| bad(WHAT, e))?;
        let f = object(&v, WHAT)?;
        let attempt_urls = f
            .get("attempt_urls")?
            .as_array()
            .ok_or_else(|| bad(WHAT, "\"attempt_urls\" must be a list"))?
            .iter()
            .map(|u| {
                u.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| bad(WHAT, "attempt URLs must be strings"))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(ShardResult {
            db_id: f.u32("db_id")?,
            db_url: f.opt_str("db_url")?,
            attempt: f.u32("attempt")?,
            row_count: f.u64("row_count")?,
            min_key: key_of(f.get("min_key")?, WHAT)?,
            max_key: key_of(f.get("max_key")?, WHAT)?,
            checkpoint_id: f.opt_str("checkpoint_id")?,
            db_bytes: f.u64("db_bytes")?,
            duration_ms: f
                .get("duration_ms")?
                .as_i64()
                .ok_or_else(|| bad(WHAT, "\"duration_ms\" must be an integer"))?,
            duplicate_keys: f.u64("duplicate_keys")?,
            attempt_urls,
            writer_version: f.str("writer_version")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_and_results_round_trip_and_bad_json_is_named() {
        let plan = BuildPlan {
            run_id: "r1".into(),
            num_dbs: 8,
            key_col: "id".into(),
            routing_values: Some(vec![
                RoutingValue::Str("eu".into()),
                RoutingValue::Str("us".into()),
            ]),
            writer_version: "0.1.0".into(),
        };
        assert_eq!(BuildPlan::from_json(&plan.to_json()).unwrap(), plan);
        for key in [Key::Int(-3), Key::Str("k".into()), Key::Bytes(vec![0, 255])] {
            let r = ShardResult {
                db_id: 3,
                db_url: Some("s3://b/p/shards/run_id=r1/db=00003/attempt=01".into()),
                attempt: 1,
                row_count: 10,
                min_key: Some(key.clone()),
                max_key: None,
                checkpoint_id: Some("c".into()),
                db_bytes: 0,
                duration_ms: 12,
                duplicate_keys: 1,
                attempt_urls: vec!["u0".into(), "u1".into()],
                writer_version: "0.1.0".into(),
            };
            assert_eq!(ShardResult::from_json(&r.to_json()).unwrap(), r);
        }
        let e = BuildPlan::from_json(r#"{"run_id": "r"}"#).unwrap_err();
        assert!(e.message().contains("num_dbs"), "{e}");
        let e = ShardResult::from_json("[1]").unwrap_err();
        assert!(e.message().contains("shard result"), "{e}");
    }
}
