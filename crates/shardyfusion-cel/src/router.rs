//! Routing with a CEL expression: direct mode (the result is the shard id) and categorical
//! mode (the result is looked up in `routing_values`), plus the write-side derivations of
//! `num_dbs` and inferred routing values.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use shardyfusion_core::{
    CelColumnType, Error, ErrorKind, KeyRef, ManifestSharding, Result, RoutingValue, ShardingSpec,
    ShardingStrategy, sort_routing_values, validate_routing_values,
};

use crate::expr::{CelExpression, CelResult, RoutingContext};

/// The outcome of routing one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// The key belongs to this shard.
    Shard(u32),
    /// Categorical mode: the token is not one of the snapshot's routing values. Writers fail
    /// with `ShardAssignment`; readers answer "absent".
    UnknownToken(CelResult),
}

impl Route {
    /// The shard, or a `ShardAssignment` error for an unknown token.
    pub fn into_shard(self) -> Result<u32> {
        match self {
            Route::Shard(id) => Ok(id),
            Route::UnknownToken(token) => Err(unknown_token(&token)),
        }
    }
}

fn unknown_token(token: &CelResult) -> Error {
    Error::new(
        ErrorKind::ShardAssignment,
        format!("Categorical CEL routing token {token} is not present in this snapshot."),
    )
}

#[derive(Debug, Clone)]
enum Mode {
    /// `num_dbs` is `None` while the writer is still discovering ids.
    Direct {
        num_dbs: Option<u32>,
    },
    Categorical {
        index: HashMap<RoutingValue, u32>,
    },
}

/// A CEL router: a compiled expression plus its mode.
#[derive(Debug, Clone)]
pub struct CelRouter {
    expr: CelExpression,
    mode: Mode,
}

impl CelRouter {
    /// Direct mode: the result is the shard id. With `num_dbs` given, ids outside
    /// `[0, num_dbs)` are `ShardAssignment` errors; with `None` any id ≥ 0 is returned.
    pub fn direct(expr: CelExpression, num_dbs: Option<u32>) -> Self {
        CelRouter {
            expr,
            mode: Mode::Direct { num_dbs },
        }
    }

    /// Categorical mode: `db_id` is the index of the exact match in `routing_values`.
    pub fn categorical(expr: CelExpression, routing_values: &[RoutingValue]) -> Result<Self> {
        validate_routing_values(routing_values)?;
        let index = routing_values
            .iter()
            .enumerate()
            .map(|(i, v)| (v.clone(), u32::try_from(i).unwrap_or(u32::MAX)))
            .collect();
        Ok(CelRouter {
            expr,
            mode: Mode::Categorical { index },
        })
    }

    /// The router of a loaded manifest (readers).
    pub fn from_manifest(sharding: &ManifestSharding, num_dbs: u32) -> Result<Self> {
        if sharding.strategy != ShardingStrategy::Cel {
            return Err(Error::config("the manifest uses HASH sharding, not CEL"));
        }
        let expr_src = sharding.cel_expr.as_deref().unwrap_or_default();
        let columns = sharding.cel_columns.clone().unwrap_or_default();
        let expr = CelExpression::compile(expr_src, &columns)?;
        match &sharding.routing_values {
            Some(values) => CelRouter::categorical(expr, values),
            None => Ok(CelRouter::direct(expr, Some(num_dbs))),
        }
    }

    /// The router of a write-side spec with explicit routing values or direct mode (inferred
    /// values must be resolved first with [`infer_routing_values`]).
    pub fn from_spec(spec: &ShardingSpec) -> Result<Self> {
        spec.validate()?;
        let expr = CelExpression::compile(
            spec.cel_expr.as_deref().unwrap_or_default(),
            &spec.cel_columns,
        )?;
        match &spec.routing_values {
            Some(values) => CelRouter::categorical(expr, values),
            None => Ok(CelRouter::direct(expr, None)),
        }
    }

    /// The compiled expression.
    pub fn expression(&self) -> &CelExpression {
        &self.expr
    }

    /// `num_dbs` implied by the mode: categorical `max(1, len)`, direct as configured.
    pub fn num_dbs(&self) -> Option<u32> {
        match &self.mode {
            Mode::Direct { num_dbs } => *num_dbs,
            Mode::Categorical { index } => {
                Some(u32::try_from(index.len().max(1)).unwrap_or(u32::MAX))
            }
        }
    }

    /// Route a key: with a routing context the context decides (every key of the call goes to
    /// the shard it yields); without one the router must be key-only.
    pub fn route(&self, key: KeyRef<'_>, ctx: Option<&RoutingContext>) -> Result<Route> {
        let result = match ctx {
            Some(ctx) => self.expr.evaluate(ctx)?,
            None => self.expr.evaluate_key(key)?,
        };
        self.resolve(result)
    }

    /// Route one record by its column values.
    pub fn route_context(&self, ctx: &RoutingContext) -> Result<Route> {
        let result = self.expr.evaluate(ctx)?;
        self.resolve(result)
    }

    /// Turn an evaluation result into a route.
    pub fn resolve(&self, result: CelResult) -> Result<Route> {
        match &self.mode {
            Mode::Categorical { index } => {
                // Move the token into the lookup key (no clone per row); give it back on a miss.
                let (key, was_uint) = match result {
                    CelResult::Int(i) => (RoutingValue::Int(i), false),
                    CelResult::Uint(u) => match i64::try_from(u) {
                        Ok(i) => (RoutingValue::Int(i), true),
                        Err(_) => return Ok(Route::UnknownToken(CelResult::Uint(u))),
                    },
                    CelResult::Str(s) => (RoutingValue::Str(s), false),
                    // Manifests cannot hold bytes tokens, so bytes results never match.
                    CelResult::Bytes(b) => return Ok(Route::UnknownToken(CelResult::Bytes(b))),
                };
                Ok(match index.get(&key) {
                    Some(id) => Route::Shard(*id),
                    None => Route::UnknownToken(match key {
                        // Non-negative: it came from a u64 that fit an i64.
                        RoutingValue::Int(i) if was_uint => CelResult::Uint(i as u64),
                        RoutingValue::Int(i) => CelResult::Int(i),
                        RoutingValue::Str(s) => CelResult::Str(s),
                    }),
                })
            }
            Mode::Direct { num_dbs } => {
                let id = direct_id(&result)?;
                let limit = num_dbs.map(i64::from).unwrap_or(i64::from(u32::MAX) + 1);
                if id < 0 || id >= limit {
                    return Err(Error::new(
                        ErrorKind::ShardAssignment,
                        match num_dbs {
                            Some(n) => format!(
                                "CEL expression {:?} produced shard id {id}, outside [0, {n})",
                                self.expr.source()
                            ),
                            None => format!(
                                "CEL expression {:?} produced negative or too large shard id {id}",
                                self.expr.source()
                            ),
                        },
                    ));
                }
                Ok(Route::Shard(u32::try_from(id).unwrap_or(u32::MAX)))
            }
        }
    }
}

/// The integer a direct-mode result stands for: int, uint, or a string/bytes of an optional
/// `-` and ASCII digits.
pub fn direct_id(result: &CelResult) -> Result<i64> {
    let bad = || {
        Error::new(
            ErrorKind::ShardAssignment,
            format!("CEL direct routing result {result} is not a shard id"),
        )
    };
    match result {
        CelResult::Int(i) => Ok(*i),
        CelResult::Uint(u) => i64::try_from(*u).map_err(|_| bad()),
        CelResult::Str(s) => parse_decimal(s.as_bytes()).ok_or_else(bad),
        CelResult::Bytes(b) => parse_decimal(b).ok_or_else(bad),
    }
}

fn parse_decimal(b: &[u8]) -> Option<i64> {
    let digits = b.strip_prefix(b"-").unwrap_or(b);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(b).ok()?.parse().ok()
}

/// `num_dbs` of a direct-mode write from the distinct ids produced: none → 1; otherwise the ids
/// must be exactly `{0, …, max}`.
///
/// ```
/// use shardyfusion_cel::discover_direct_num_dbs;
/// assert_eq!(discover_direct_num_dbs([0, 1, 2, 1]).unwrap(), 3);
/// assert_eq!(discover_direct_num_dbs([]).unwrap(), 1);
/// assert!(discover_direct_num_dbs([0, 2]).is_err());
/// ```
pub fn discover_direct_num_dbs(ids: impl IntoIterator<Item = i64>) -> Result<u32> {
    let distinct: BTreeSet<i64> = ids.into_iter().collect();
    let (Some(&min), Some(&max)) = (distinct.first(), distinct.last()) else {
        return Ok(1);
    };
    let count = distinct.len() as i64;
    if min != 0 || max + 1 != count || max >= i64::from(u32::MAX) {
        return Err(Error::new(
            ErrorKind::ShardAssignment,
            format!(
                "CEL expression produced non-consecutive shard IDs: distinct count={count}, min={min}, max+1={}. \
                 CEL expressions must produce consecutive 0-based IDs (e.g. shard_hash(key) % Nu).",
                max.saturating_add(1)
            ),
        ));
    }
    Ok(u32::try_from(count).unwrap_or(u32::MAX))
}

/// Categorical routing values inferred from evaluation results: deduplicated, validated
/// (homogeneous; bytes are rejected because manifests cannot hold them), sorted (integers
/// numerically, strings by code point).
pub fn infer_routing_values(
    results: impl IntoIterator<Item = CelResult>,
) -> Result<Vec<RoutingValue>> {
    let mut set = BTreeSet::new();
    for r in results {
        set.insert(match r {
            CelResult::Int(i) => RoutingValue::Int(i),
            CelResult::Uint(u) => RoutingValue::Int(i64::try_from(u).map_err(|_| {
                Error::config(format!("inferred routing value {u}u does not fit a signed 64-bit integer"))
            })?),
            CelResult::Str(s) => RoutingValue::Str(s),
            CelResult::Bytes(b) => {
                return Err(Error::config(format!(
                    "inferred routing value b'{}' is bytes; routing values must be integers or strings",
                    b.escape_ascii()
                )));
            }
        });
    }
    let mut values: Vec<RoutingValue> = set.into_iter().collect();
    validate_routing_values(&values)?;
    sort_routing_values(&mut values);
    Ok(values)
}

/// A column of [`cel_sharding_by_columns`]: a name and its type (string by default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CelColumn {
    /// Column name.
    pub name: String,
    /// Column type.
    pub ty: CelColumnType,
}

impl CelColumn {
    /// A column of the given type.
    pub fn new(name: impl Into<String>, ty: CelColumnType) -> Self {
        CelColumn {
            name: name.into(),
            ty,
        }
    }
}

impl From<&str> for CelColumn {
    fn from(name: &str) -> Self {
        CelColumn::new(name, CelColumnType::String)
    }
}

/// Build a CEL sharding spec directly: expression, column types by name, optional categorical
/// routing values. The expression is compiled to check it.
///
/// ```
/// use shardyfusion_cel::cel_sharding;
/// let spec = cel_sharding("region", [("region", "string")], Some(vec!["eu".into(), "us".into()])).unwrap();
/// assert_eq!(spec.categorical_num_dbs(), Some(2));
/// assert!(cel_sharding("x", [("x", "float")], None).is_err());
/// ```
pub fn cel_sharding<'a>(
    expr: &str,
    columns: impl IntoIterator<Item = (&'a str, &'a str)>,
    routing_values: Option<Vec<RoutingValue>>,
) -> Result<ShardingSpec> {
    let mut cols = BTreeMap::new();
    for (name, ty) in columns {
        let ty: CelColumnType = ty
            .parse()
            .map_err(|e: Error| Error::config(format!("{} for column {name:?}", e.message())))?;
        cols.insert(name.to_owned(), ty);
    }
    let mut spec = ShardingSpec::cel(expr, cols);
    spec.routing_values = routing_values;
    spec.validate()?;
    CelExpression::compile(expr, &spec.cel_columns)?;
    Ok(spec)
}

/// Build a CEL spec that routes by one or more columns: with `num_shards = N` the expression is
/// `shard_hash(<inner>) % Nu` (direct mode), without it `<inner>` with inferred categorical
/// values. Several columns are joined with ` + "SEP" + `; non-string columns are wrapped in
/// `string(…)`.
///
/// ```
/// use shardyfusion_cel::{cel_sharding_by_columns, CelColumn};
/// use shardyfusion_core::CelColumnType;
/// let spec = cel_sharding_by_columns(&["region".into(), CelColumn::new("tier", CelColumnType::Int)], Some(8), ":").unwrap();
/// assert_eq!(spec.cel_expr.as_deref(), Some(r#"shard_hash(region + ":" + string(tier)) % 8u"#));
/// ```
pub fn cel_sharding_by_columns(
    columns: &[CelColumn],
    num_shards: Option<u32>,
    separator: &str,
) -> Result<ShardingSpec> {
    if columns.is_empty() {
        return Err(Error::config(
            "cel_sharding_by_columns requires at least one column",
        ));
    }
    if num_shards == Some(0) {
        return Err(Error::config("num_shards must be >= 1; got 0"));
    }
    let inner = match columns {
        [one] if !matches!(one.ty, CelColumnType::Double | CelColumnType::Bool) => one.name.clone(),
        [one] => format!("string({})", one.name),
        many => {
            let sep = format!(" + {} + ", shardyfusion_core::pyjson::quote(separator));
            many.iter()
                .map(|c| {
                    if c.ty == CelColumnType::String {
                        c.name.clone()
                    } else {
                        format!("string({})", c.name)
                    }
                })
                .collect::<Vec<_>>()
                .join(&sep)
        }
    };
    let cols: BTreeMap<String, CelColumnType> =
        columns.iter().map(|c| (c.name.clone(), c.ty)).collect();
    if cols.len() != columns.len() {
        return Err(Error::config(
            "cel_sharding_by_columns got the same column twice",
        ));
    }
    let spec = match num_shards {
        Some(n) => ShardingSpec::cel(format!("shard_hash({inner}) % {n}u"), cols),
        None => ShardingSpec::cel(inner, cols).infer_routing_values(),
    };
    spec.validate()?;
    CelExpression::compile(
        spec.cel_expr.as_deref().unwrap_or_default(),
        &spec.cel_columns,
    )?;
    Ok(spec)
}
