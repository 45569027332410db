//! Sharding specifications: HASH routing by key, or CEL routing by expression.
//!
//! The CEL engine itself lives in `shardyfusion-cel`; this module only holds and validates the
//! data a spec is made of, so that config validation and manifests need no CEL dependency.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// How keys are assigned to shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ShardingStrategy {
    /// `xxh3_64(canonical_bytes(key)) % num_dbs`.
    #[default]
    Hash,
    /// A CEL expression over the key and/or routing columns.
    Cel,
}

impl ShardingStrategy {
    /// The name written in manifests (`hash` or `cel`).
    pub const fn as_str(self) -> &'static str {
        match self {
            ShardingStrategy::Hash => "hash",
            ShardingStrategy::Cel => "cel",
        }
    }
}

impl fmt::Display for ShardingStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The declared type of a CEL routing column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CelColumnType {
    /// Signed 64-bit integer.
    Int,
    /// Unsigned 64-bit integer.
    Uint,
    /// UTF-8 string.
    String,
    /// Byte string.
    Bytes,
    /// 64-bit float.
    Double,
    /// Boolean.
    Bool,
}

impl CelColumnType {
    /// Every column type.
    pub const ALL: [CelColumnType; 6] = [
        CelColumnType::Int,
        CelColumnType::Uint,
        CelColumnType::String,
        CelColumnType::Bytes,
        CelColumnType::Double,
        CelColumnType::Bool,
    ];

    /// The CEL type name (`int`, `uint`, `string`, `bytes`, `double`, `bool`).
    pub const fn as_str(self) -> &'static str {
        match self {
            CelColumnType::Int => "int",
            CelColumnType::Uint => "uint",
            CelColumnType::String => "string",
            CelColumnType::Bytes => "bytes",
            CelColumnType::Double => "double",
            CelColumnType::Bool => "bool",
        }
    }
}

impl fmt::Display for CelColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CelColumnType {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        CelColumnType::ALL.into_iter().find(|t| t.as_str() == s).ok_or_else(|| {
            Error::config(format!(
                "Unsupported CEL column type: {s:?}. Allowed: int, uint, string, bytes, double, bool"
            ))
        })
    }
}

/// One categorical routing value: all values of a spec are integers, or all are strings.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RoutingValue {
    /// An integer token.
    Int(i64),
    /// A string token.
    Str(String),
}

impl fmt::Display for RoutingValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RoutingValue::Int(i) => write!(f, "{i}"),
            RoutingValue::Str(s) => write!(f, "{s:?}"),
        }
    }
}

impl From<i64> for RoutingValue {
    fn from(v: i64) -> Self {
        RoutingValue::Int(v)
    }
}
impl From<i32> for RoutingValue {
    fn from(v: i32) -> Self {
        RoutingValue::Int(v.into())
    }
}
impl From<&str> for RoutingValue {
    fn from(v: &str) -> Self {
        RoutingValue::Str(v.to_owned())
    }
}
impl From<String> for RoutingValue {
    fn from(v: String) -> Self {
        RoutingValue::Str(v)
    }
}

/// Check categorical routing values: homogeneous (all integers or all strings) and unique. An
/// empty list is allowed. (Nulls, booleans, floats and bytes cannot be expressed as
/// [`RoutingValue`]s; manifest parsing rejects them before calling this.)
pub fn validate_routing_values(values: &[RoutingValue]) -> Result<()> {
    if let Some(first) = values.first() {
        let is_int = matches!(first, RoutingValue::Int(_));
        if let Some(odd) = values
            .iter()
            .find(|v| matches!(v, RoutingValue::Int(_)) != is_int)
        {
            return Err(Error::config(format!(
                "routing_values must be all integers or all strings; {first} and {odd} are mixed"
            )));
        }
    }
    let mut seen = HashSet::with_capacity(values.len());
    for v in values {
        if !seen.insert(v) {
            return Err(Error::config(format!(
                "routing_values must be unique; {v} appears twice"
            )));
        }
    }
    Ok(())
}

/// Sort inferred categorical values: integers numerically, strings by code point.
pub fn sort_routing_values(values: &mut [RoutingValue]) {
    values.sort();
}

/// A sharding specification, built with [`ShardingSpec::hash`] or [`ShardingSpec::cel`].
///
/// ```
/// use shardyfusion_core::{CelColumnType, ShardingSpec};
/// let spec = ShardingSpec::cel("region", [("region", CelColumnType::String)])
///     .with_routing_values(["eu", "us", "ap"]);
/// assert!(spec.validate().is_ok());
/// assert_eq!(spec.categorical_num_dbs(), Some(3));
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct ShardingSpec {
    /// HASH or CEL.
    pub strategy: ShardingStrategy,
    /// HASH only: derive `num_dbs` as `ceil(count / max_keys_per_shard)`.
    pub max_keys_per_shard: Option<u64>,
    /// CEL only: the expression.
    pub cel_expr: Option<String>,
    /// CEL only: declared column types.
    pub cel_columns: BTreeMap<String, CelColumnType>,
    /// CEL categorical mode: the token of each shard, in `db_id` order.
    pub routing_values: Option<Vec<RoutingValue>>,
    /// CEL: infer categorical values from the data (sorted, deduplicated).
    pub infer_routing_values_from_data: bool,
}

impl ShardingSpec {
    /// HASH sharding (the default).
    pub fn hash() -> Self {
        ShardingSpec::default()
    }

    /// HASH sharding with `num_dbs` derived from the input size.
    pub fn hash_with_max_keys_per_shard(max_keys_per_shard: u64) -> Self {
        ShardingSpec {
            max_keys_per_shard: Some(max_keys_per_shard),
            ..ShardingSpec::default()
        }
    }

    /// CEL sharding in direct mode (the expression yields the shard id). Add
    /// [`with_routing_values`](Self::with_routing_values) or
    /// [`infer_routing_values`](Self::infer_routing_values) for categorical mode.
    pub fn cel<K: Into<String>>(
        expr: impl Into<String>,
        columns: impl IntoIterator<Item = (K, CelColumnType)>,
    ) -> Self {
        ShardingSpec {
            strategy: ShardingStrategy::Cel,
            cel_expr: Some(expr.into()),
            cel_columns: columns.into_iter().map(|(k, t)| (k.into(), t)).collect(),
            ..ShardingSpec::default()
        }
    }

    /// Categorical mode with explicit tokens (index = `db_id`).
    #[must_use]
    pub fn with_routing_values<V: Into<RoutingValue>>(
        mut self,
        values: impl IntoIterator<Item = V>,
    ) -> Self {
        self.routing_values = Some(values.into_iter().map(Into::into).collect());
        self
    }

    /// Categorical mode with tokens inferred from the data.
    #[must_use]
    pub fn infer_routing_values(mut self) -> Self {
        self.infer_routing_values_from_data = true;
        self
    }

    /// `max(1, len(routing_values))` in categorical mode with explicit values.
    pub fn categorical_num_dbs(&self) -> Option<u32> {
        self.routing_values
            .as_ref()
            .map(|v| u32::try_from(v.len().max(1)).unwrap_or(u32::MAX))
    }

    /// Whether this spec routes with the key alone (`cel_columns` is exactly `{"key"}`).
    pub fn is_key_only(&self) -> bool {
        self.cel_columns.len() == 1 && self.cel_columns.contains_key("key")
    }

    /// Check the spec's own rules (everything except compiling the CEL expression, which the
    /// CEL crate does).
    pub fn validate(&self) -> Result<()> {
        match self.strategy {
            ShardingStrategy::Hash => {
                if self.cel_expr.is_some() || !self.cel_columns.is_empty() {
                    return Err(Error::config(
                        "HASH sharding takes no cel_expr or cel_columns; use ShardingSpec::cel",
                    ));
                }
                if self.routing_values.is_some() || self.infer_routing_values_from_data {
                    return Err(Error::config("routing_values apply to CEL sharding only"));
                }
                if self.max_keys_per_shard == Some(0) {
                    return Err(Error::config("max_keys_per_shard must be > 0, got 0"));
                }
            }
            ShardingStrategy::Cel => {
                if let Some(m) = self.max_keys_per_shard {
                    return Err(Error::config(format!(
                        "max_keys_per_shard ({m}) cannot be used with CEL sharding: the expression decides the shards"
                    )));
                }
                match self.cel_expr.as_deref() {
                    Some(e) if !e.trim().is_empty() => {}
                    other => {
                        return Err(Error::config(format!(
                            "CEL sharding needs a non-empty cel_expr, got {:?}",
                            other.unwrap_or("")
                        )));
                    }
                }
                if self.cel_columns.is_empty() {
                    return Err(Error::config(
                        "CEL sharding needs at least one entry in cel_columns",
                    ));
                }
                if let Some(bad) = self.cel_columns.keys().find(|k| !is_cel_identifier(k)) {
                    return Err(Error::config(format!(
                        "cel_columns name {bad:?} is not a valid CEL identifier"
                    )));
                }
                if let Some(values) = &self.routing_values {
                    if self.infer_routing_values_from_data {
                        return Err(Error::config(
                            "routing_values and infer_routing_values_from_data are mutually exclusive",
                        ));
                    }
                    validate_routing_values(values)?;
                }
            }
        }
        Ok(())
    }
}

fn is_cel_identifier(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn routing_value_rules() {
        validate_routing_values(&[]).unwrap();
        validate_routing_values(&["a".into(), "b".into()]).unwrap();
        let err = validate_routing_values(&[1.into(), "b".into()]).unwrap_err();
        assert!(err.message().contains("mixed"), "{err}");
        let err = validate_routing_values(&["eu".into(), "eu".into()]).unwrap_err();
        assert!(err.message().contains("\"eu\" appears twice"), "{err}");
        let mut v: Vec<RoutingValue> = vec!["b".into(), "a".into(), "é".into(), "Z".into()];
        sort_routing_values(&mut v);
        assert_eq!(
            v,
            vec!["Z".into(), "a".into(), "b".into(), "é".into()] as Vec<RoutingValue>
        );
        let mut v: Vec<RoutingValue> = vec![10.into(), (-2).into(), 3.into()];
        sort_routing_values(&mut v);
        assert_eq!(
            v,
            vec![(-2).into(), 3.into(), 10.into()] as Vec<RoutingValue>
        );
    }

    #[test]
    fn column_types() {
        for t in CelColumnType::ALL {
            assert_eq!(t.as_str().parse::<CelColumnType>().unwrap(), t);
        }
        let err = "float".parse::<CelColumnType>().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ConfigValidation);
        assert!(err.message().contains("\"float\""));
    }

    #[test]
    fn spec_rules() {
        ShardingSpec::hash().validate().unwrap();
        let e = ShardingSpec::hash_with_max_keys_per_shard(0)
            .validate()
            .unwrap_err();
        assert!(e.message().contains("got 0"));
        let e = ShardingSpec::cel("", [("k", CelColumnType::Int)])
            .validate()
            .unwrap_err();
        assert!(e.message().contains("non-empty cel_expr"));
        let e = ShardingSpec::cel::<&str>("k", []).validate().unwrap_err();
        assert!(e.message().contains("cel_columns"));
        let e = ShardingSpec::cel("k", [("1k", CelColumnType::Int)])
            .validate()
            .unwrap_err();
        assert!(e.message().contains("\"1k\""));
        let e = ShardingSpec::cel("k", [("k", CelColumnType::Int)])
            .with_routing_values([1])
            .infer_routing_values()
            .validate()
            .unwrap_err();
        assert!(e.message().contains("mutually exclusive"));
        let key_only = ShardingSpec::cel("key", [("key", CelColumnType::Int)]);
        assert!(key_only.is_key_only());
        assert_eq!(key_only.categorical_num_dbs(), None);
        assert_eq!(
            key_only
                .clone()
                .with_routing_values::<i64>([])
                .categorical_num_dbs(),
            Some(1)
        );
    }
}
