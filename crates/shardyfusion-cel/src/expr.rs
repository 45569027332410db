//! Compiled, type-checked CEL expressions and their evaluation on the `cel-interpreter` runtime.

use std::collections::BTreeMap;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use cel_interpreter::extractors::This;
use cel_interpreter::{Context, ExecutionError, FunctionContext, Value};
use cel_parser::ast::IdedExpr;
use shardyfusion_core::pyjson::cel_double_to_string;
use shardyfusion_core::{CelColumnType, Error, ErrorKind, KeyRef, Result, xxh3_digest};

use crate::check::{Ty, check, prescan, rewrite_int_negation};

/// A value bound to a routing column.
#[derive(Debug, Clone, PartialEq)]
pub enum CelValue {
    /// `int`
    Int(i64),
    /// `uint`
    Uint(u64),
    /// `double`
    Double(f64),
    /// `bool`
    Bool(bool),
    /// `string`
    Str(String),
    /// `bytes`
    Bytes(Vec<u8>),
}

impl CelValue {
    fn type_name(&self) -> &'static str {
        match self {
            CelValue::Int(_) => "int",
            CelValue::Uint(_) => "uint",
            CelValue::Double(_) => "double",
            CelValue::Bool(_) => "bool",
            CelValue::Str(_) => "string",
            CelValue::Bytes(_) => "bytes",
        }
    }
}

impl From<i64> for CelValue {
    fn from(v: i64) -> Self {
        CelValue::Int(v)
    }
}
impl From<u64> for CelValue {
    fn from(v: u64) -> Self {
        CelValue::Uint(v)
    }
}
impl From<f64> for CelValue {
    fn from(v: f64) -> Self {
        CelValue::Double(v)
    }
}
impl From<bool> for CelValue {
    fn from(v: bool) -> Self {
        CelValue::Bool(v)
    }
}
impl From<&str> for CelValue {
    fn from(v: &str) -> Self {
        CelValue::Str(v.to_owned())
    }
}
impl From<String> for CelValue {
    fn from(v: String) -> Self {
        CelValue::Str(v)
    }
}
impl From<Vec<u8>> for CelValue {
    fn from(v: Vec<u8>) -> Self {
        CelValue::Bytes(v)
    }
}

/// Column values for routing one record (or one lookup): column name → value.
pub type RoutingContext = BTreeMap<String, CelValue>;

/// Build a [`RoutingContext`] from pairs.
///
/// ```
/// use shardyfusion_cel::{routing_context, CelValue};
/// let ctx = routing_context([("region", CelValue::from("eu")), ("tier", 3i64.into())]);
/// assert_eq!(ctx.len(), 2);
/// ```
pub fn routing_context<K: Into<String>>(
    pairs: impl IntoIterator<Item = (K, CelValue)>,
) -> RoutingContext {
    pairs.into_iter().map(|(k, v)| (k.into(), v)).collect()
}

/// What an expression evaluated to: a routing token or a shard id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CelResult {
    /// An `int` result.
    Int(i64),
    /// A `uint` result.
    Uint(u64),
    /// A `string` result.
    Str(String),
    /// A `bytes` result.
    Bytes(Vec<u8>),
}

impl fmt::Display for CelResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CelResult::Int(i) => write!(f, "{i}"),
            CelResult::Uint(u) => write!(f, "{u}u"),
            CelResult::Str(s) => write!(f, "'{s}'"),
            CelResult::Bytes(b) => write!(f, "b'{}'", b.escape_ascii()),
        }
    }
}

/// A compiled and type-checked routing expression. Compile once, evaluate many times; cheap to
/// clone and safe to share across threads.
#[derive(Clone)]
pub struct CelExpression {
    inner: Arc<Inner>,
}

struct Inner {
    source: String,
    columns: BTreeMap<String, CelColumnType>,
    ast: IdedExpr,
    result: Ty,
    root: Context<'static>,
}

impl fmt::Debug for CelExpression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CelExpression")
            .field("source", &self.inner.source)
            .field("columns", &self.inner.columns)
            .field("result", &self.inner.result.name())
            .finish()
    }
}

fn compile_error(expr: &str, why: impl fmt::Display) -> Error {
    Error::config(format!("Failed to compile CEL expression {expr:?}: {why}"))
}

impl CelExpression {
    /// Parse and type-check `expr` against the declared column types.
    ///
    /// ```
    /// use shardyfusion_cel::CelExpression;
    /// use shardyfusion_core::CelColumnType;
    /// let cols = [("key".to_owned(), CelColumnType::Int)].into();
    /// assert!(CelExpression::compile("shard_hash(key) % 4u", &cols).is_ok());
    /// // CEL is strict: uint % int has no overload.
    /// let err = CelExpression::compile("shard_hash(key) % 4", &cols).unwrap_err();
    /// assert!(err.message().contains("'_%_' applied to '(uint, int)'"));
    /// ```
    pub fn compile(expr: &str, columns: &BTreeMap<String, CelColumnType>) -> Result<CelExpression> {
        if expr.trim().is_empty() {
            return Err(compile_error(expr, "the expression is empty"));
        }
        if columns.is_empty() {
            return Err(compile_error(expr, "no columns are declared"));
        }
        prescan(expr).map_err(|why| compile_error(expr, why))?;
        // The parser panics on some malformed input; contain it and report a compile error.
        let parsed = catch_unwind(AssertUnwindSafe(|| {
            cel_parser::Parser::default()
                .parse(expr)
                .map_err(|e| e.to_string())
        }));
        let mut ast = match parsed {
            Ok(Ok(ast)) => ast,
            Ok(Err(msg)) => return Err(compile_error(expr, msg.trim())),
            Err(_) => return Err(compile_error(expr, "syntax error")),
        };
        let result = check(&ast, columns).map_err(|why| compile_error(expr, why))?;
        if !matches!(result, Ty::Int | Ty::Uint | Ty::String | Ty::Bytes) {
            return Err(Error::config(format!(
                "CEL expression must return int, uint, string or bytes; {expr:?} returns {}",
                result.name()
            )));
        }
        rewrite_int_negation(&mut ast, columns);
        Ok(CelExpression {
            inner: Arc::new(Inner {
                source: expr.to_owned(),
                columns: columns.clone(),
                ast,
                result,
                root: root_context(),
            }),
        })
    }

    /// The expression text.
    pub fn source(&self) -> &str {
        &self.inner.source
    }

    /// The declared columns.
    pub fn columns(&self) -> &BTreeMap<String, CelColumnType> {
        &self.inner.columns
    }

    /// Whether the only column is `key` (the key alone routes).
    pub fn is_key_only(&self) -> bool {
        self.inner.columns.len() == 1 && self.inner.columns.contains_key("key")
    }

    /// Evaluate with the given column values. Missing or mistyped values are `ConfigValidation`;
    /// runtime failures (division by zero, overflow, `shard_hash` of a uint ≥ 2^63, invalid UTF-8
    /// in `string(bytes)`) are `ShardAssignment`.
    pub fn evaluate(&self, ctx: &RoutingContext) -> Result<CelResult> {
        let mut scope = self.inner.root.new_inner_scope();
        for (name, ty) in &self.inner.columns {
            let value = ctx.get(name).ok_or_else(|| {
                Error::config(format!(
                    "CEL routing context has no value for declared column {name:?} (expression {:?})",
                    self.inner.source
                ))
            })?;
            scope.add_variable_from_value(name.as_str(), bind(name, *ty, value)?);
        }
        self.run(&scope)
    }

    /// Evaluate in key-only mode: the key is bound as `key` (Int as int or uint per the
    /// declaration, Str as string, Bytes as bytes; strings and UTF-8 bytes convert).
    pub fn evaluate_key(&self, key: KeyRef<'_>) -> Result<CelResult> {
        let Some(ty) = self
            .inner
            .columns
            .get("key")
            .copied()
            .filter(|_| self.is_key_only())
        else {
            return Err(Error::config(
                "Multi-column CEL sharding requires routing_context; pass the record's column values",
            ));
        };
        let value = match key {
            KeyRef::Int(i) => CelValue::Int(i),
            KeyRef::Str(s) => CelValue::Str(s.to_owned()),
            KeyRef::Bytes(b) => CelValue::Bytes(b.to_vec()),
        };
        let value = match (ty, value) {
            (CelColumnType::String, CelValue::Bytes(b)) => {
                CelValue::Str(String::from_utf8(b).map_err(|_| {
                    Error::config(format!(
                        "key {key} is not valid UTF-8 for the string CEL column 'key'"
                    ))
                })?)
            }
            (CelColumnType::Bytes, CelValue::Str(s)) => CelValue::Bytes(s.into_bytes()),
            (_, v) => v,
        };
        let mut scope = self.inner.root.new_inner_scope();
        scope.add_variable_from_value("key", bind("key", ty, &value)?);
        self.run(&scope)
    }

    fn run(&self, scope: &Context<'_>) -> Result<CelResult> {
        let value = scope.resolve(&self.inner.ast).map_err(|e| {
            Error::new(
                ErrorKind::ShardAssignment,
                format!(
                    "CEL evaluation of {:?} failed: {}",
                    self.inner.source,
                    describe(&e)
                ),
            )
        })?;
        match value {
            Value::Int(i) => Ok(CelResult::Int(i)),
            Value::UInt(u) => Ok(CelResult::Uint(u)),
            Value::String(s) => Ok(CelResult::Str(Arc::unwrap_or_clone(s))),
            Value::Bytes(b) => Ok(CelResult::Bytes(Arc::unwrap_or_clone(b))),
            other => Err(Error::config(format!(
                "CEL expression must return int, uint, string or bytes; {:?} returned {:?}",
                self.inner.source,
                other.type_of()
            ))),
        }
    }
}

fn describe(e: &ExecutionError) -> String {
    match e {
        ExecutionError::FunctionError { function, message } => format!("{function}: {message}"),
        other => format!("{other:?}"),
    }
}

fn bind(name: &str, ty: CelColumnType, value: &CelValue) -> Result<Value> {
    let mismatch = || {
        Error::config(format!(
            "CEL column {name:?} is declared {ty} but the routing context holds {} {value:?}",
            value.type_name()
        ))
    };
    Ok(match (ty, value) {
        (CelColumnType::Int, CelValue::Int(i)) => Value::Int(*i),
        (CelColumnType::Int, CelValue::Uint(u)) => {
            Value::Int(i64::try_from(*u).map_err(|_| mismatch())?)
        }
        (CelColumnType::Uint, CelValue::Uint(u)) => Value::UInt(*u),
        (CelColumnType::Uint, CelValue::Int(i)) => {
            Value::UInt(u64::try_from(*i).map_err(|_| {
                Error::config(format!(
                    "CEL column {name:?} is declared uint but got the negative value {i}"
                ))
            })?)
        }
        (CelColumnType::Double, CelValue::Double(f)) => Value::Float(*f),
        (CelColumnType::Bool, CelValue::Bool(b)) => Value::Bool(*b),
        (CelColumnType::String, CelValue::Str(s)) => Value::String(Arc::new(s.clone())),
        (CelColumnType::Bytes, CelValue::Bytes(b)) => Value::Bytes(Arc::new(b.clone())),
        _ => return Err(mismatch()),
    })
}

/// The root context: the interpreter's builtins with `shard_hash` added and `string`/`size`
/// replaced by cel-cpp-compatible versions.
fn root_context() -> Context<'static> {
    let mut ctx = Context::default();
    ctx.add_function("shard_hash", shard_hash);
    ctx.add_function("string", cel_string);
    ctx.add_function("size", cel_size);
    ctx
}

/// `shard_hash(x)`: xxh3_64 of the canonical bytes, exactly as HASH routing hashes a key.
fn shard_hash(ftx: &FunctionContext<'_>, v: Value) -> std::result::Result<u64, ExecutionError> {
    match v {
        Value::Int(i) => Ok(xxh3_digest(KeyRef::Int(i))),
        Value::UInt(u) => match i64::try_from(u) {
            Ok(i) => Ok(xxh3_digest(KeyRef::Int(i))),
            Err(_) => Err(ftx.error(format!(
                "uint {u} is out of range for hashing (must be <= 9223372036854775807)"
            ))),
        },
        Value::String(s) => Ok(xxh3_digest(KeyRef::Str(&s))),
        Value::Bytes(b) => Ok(xxh3_digest(KeyRef::Bytes(&b))),
        other => Err(ftx.error(format!("no overload for {:?}", other.type_of()))),
    }
}

/// `string(x)` with cel-cpp's formatting (doubles, bools; invalid UTF-8 is an error).
fn cel_string(
    ftx: &FunctionContext<'_>,
    This(v): This<Value>,
) -> std::result::Result<Arc<String>, ExecutionError> {
    Ok(Arc::new(match v {
        Value::Int(i) => i.to_string(),
        Value::UInt(u) => u.to_string(),
        Value::Float(f) => cel_double_to_string(f),
        Value::Bool(b) => b.to_string(),
        Value::String(s) => return Ok(s),
        Value::Bytes(b) => {
            String::from_utf8(b.to_vec()).map_err(|_| ftx.error("invalid UTF-8 in bytes"))?
        }
        other => return Err(ftx.error(format!("no overload for {:?}", other.type_of()))),
    }))
}

/// `size(x)`: code points of a string, length of bytes.
fn cel_size(
    ftx: &FunctionContext<'_>,
    This(v): This<Value>,
) -> std::result::Result<i64, ExecutionError> {
    let n = match v {
        Value::String(s) => s.chars().count(),
        Value::Bytes(b) => b.len(),
        other => return Err(ftx.error(format!("no overload for {:?}", other.type_of()))),
    };
    i64::try_from(n).map_err(|_| ftx.error("size overflow"))
}
