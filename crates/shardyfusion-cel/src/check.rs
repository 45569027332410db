//! Static type checking of routing expressions with CEL's strict rules (no implicit numeric
//! conversions), so that every expression accepted here is accepted by cel-cpp too.
//!
//! `cel-interpreter` has no checker of its own; this walks the `cel-parser` AST it evaluates.
//! The supported subset is what routing needs: literals, declared columns, arithmetic,
//! comparisons, logic, the conditional, and the functions `string`, `int`, `uint`, `double`,
//! `bytes`, `size` and `shard_hash`.

use std::collections::BTreeMap;

use cel_parser::ast::{CallExpr, Expr, IdedExpr, operators as op};
use cel_parser::reference::Val;
use shardyfusion_core::CelColumnType;

/// A CEL type of the routing subset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ty {
    Int,
    Uint,
    Double,
    String,
    Bytes,
    Bool,
}

impl Ty {
    pub(crate) fn from_column(t: CelColumnType) -> Ty {
        match t {
            CelColumnType::Int => Ty::Int,
            CelColumnType::Uint => Ty::Uint,
            CelColumnType::String => Ty::String,
            CelColumnType::Bytes => Ty::Bytes,
            CelColumnType::Double => Ty::Double,
            CelColumnType::Bool => Ty::Bool,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Ty::Int => "int",
            Ty::Uint => "uint",
            Ty::Double => "double",
            Ty::String => "string",
            Ty::Bytes => "bytes",
            Ty::Bool => "bool",
        }
    }
}

fn op_name(func: &str) -> &str {
    match func {
        op::ADD => "_+_",
        other => other,
    }
}

/// Type-check `expr` against the declared columns, returning its result type; the error text
/// is a human-readable reason.
pub(crate) fn check(e: &IdedExpr, env: &BTreeMap<String, CelColumnType>) -> Result<Ty, String> {
    match &e.expr {
        Expr::Literal(v) => match v {
            Val::Int(_) => Ok(Ty::Int),
            Val::UInt(_) => Ok(Ty::Uint),
            Val::Double(_) => Ok(Ty::Double),
            Val::String(_) => Ok(Ty::String),
            Val::Bytes(_) => Ok(Ty::Bytes),
            Val::Boolean(_) => Ok(Ty::Bool),
            Val::Null => Err("null is not supported in routing expressions".to_owned()),
        },
        Expr::Ident(name) => env
            .get(name)
            .map(|t| Ty::from_column(*t))
            .ok_or_else(|| format!("undeclared reference to '{name}'")),
        Expr::Call(call) => check_call(call, env),
        Expr::Select(s) => Err(format!(
            "field selection '.{}' is not supported in routing expressions",
            s.field
        )),
        Expr::List(_) => Err("list literals are not supported in routing expressions".to_owned()),
        Expr::Map(_) => Err("map literals are not supported in routing expressions".to_owned()),
        Expr::Struct(s) => Err(format!(
            "message construction '{}{{…}}' is not supported",
            s.type_name
        )),
        Expr::Comprehension(_) => Err(
            "macros (all, exists, map, filter) are not supported in routing expressions".to_owned(),
        ),
        Expr::Unspecified => Err("empty expression".to_owned()),
    }
}

fn check_call(c: &CallExpr, env: &BTreeMap<String, CelColumnType>) -> Result<Ty, String> {
    use Ty::*;
    let func = c.func_name.as_str();
    let mut args: Vec<&IdedExpr> = Vec::with_capacity(c.args.len() + 1);
    match &c.target {
        None => {}
        Some(t)
            if matches!(func, "size" | "string" | "int" | "uint" | "double")
                && c.args.is_empty() =>
        {
            args.push(t)
        }
        Some(_) => return Err(format!("method-call syntax is not supported for '{func}'")),
    }
    args.extend(c.args.iter());
    let tys = args
        .iter()
        .map(|a| check(a, env))
        .collect::<Result<Vec<_>, _>>()?;
    let ok = match (func, tys.as_slice()) {
        (op::CONDITIONAL, [Bool, t, f]) if t == f => Some(*t),
        (op::LOGICAL_AND | op::LOGICAL_OR, [Bool, Bool]) | (op::LOGICAL_NOT, [Bool]) => Some(Bool),
        (op::NEGATE, [t @ (Int | Double)]) => Some(*t),
        (op::ADD, [a, b]) if a == b && matches!(a, Int | Uint | Double | String) => Some(*a),
        (op::SUBSTRACT | op::MULTIPLY | op::DIVIDE, [a, b])
            if a == b && matches!(a, Int | Uint | Double) =>
        {
            Some(*a)
        }
        (op::MODULO, [a, b]) if a == b && matches!(a, Int | Uint) => Some(*a),
        (op::EQUALS | op::NOT_EQUALS, [a, b]) if a == b => Some(Bool),
        (op::LESS | op::LESS_EQUALS | op::GREATER | op::GREATER_EQUALS, [a, b])
            if a == b && *a != Bytes && *a != Bool =>
        {
            Some(Bool)
        }
        ("string", [Int | Uint | Double | String | Bytes | Bool]) => Some(String),
        ("int", [Int | Uint | Double | String]) => Some(Int),
        ("uint", [Int | Uint | Double | String]) => Some(Uint),
        ("double", [Int | Uint | Double | String]) => Some(Double),
        ("bytes", [String | Bytes]) => Some(Bytes),
        ("size", [String | Bytes]) => Some(Int),
        ("shard_hash", [Int | Uint | String | Bytes]) => Some(Uint),
        _ => None,
    };
    ok.ok_or_else(|| {
        let names: Vec<_> = tys.iter().map(|t| t.name()).collect();
        format!(
            "found no matching overload for '{}' applied to '({})'",
            op_name(func),
            names.join(", ")
        )
    })
}

/// Rewrite integer negation `-x` into `0 - x`, so that `-(i64::MIN)` is an overflow error
/// instead of a wrapped value (the interpreter negates without a check).
pub(crate) fn rewrite_int_negation(e: &mut IdedExpr, env: &BTreeMap<String, CelColumnType>) {
    if let Expr::Call(call) = &mut e.expr {
        for a in call.args.iter_mut() {
            rewrite_int_negation(a, env);
        }
        if let Some(t) = call.target.as_mut() {
            rewrite_int_negation(t, env);
        }
        if call.func_name == op::NEGATE
            && call.args.len() == 1
            && matches!(check(&call.args[0], env), Ok(Ty::Int))
        {
            let zero = IdedExpr {
                id: e.id,
                expr: Expr::Literal(Val::Int(0)),
            };
            call.func_name = op::SUBSTRACT.to_owned();
            call.args.insert(0, zero);
        }
    }
}

/// Lexical checks done before parsing: the parser panics on unterminated literals and some
/// unbalanced input, and silently collapses repeated unary operators (`!!x` → `!x`).
pub(crate) fn prescan(src: &str) -> Result<(), String> {
    // The parser panics on control characters (found by the cel_eval fuzz target); CEL spells
    // them with escapes (`"\a"`, `"\x07"`) inside string literals.
    if let Some((at, c)) = src
        .char_indices()
        .find(|(_, c)| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    {
        return Err(format!(
            "control character U+{:04X} at offset {at}: write it as an escape inside a string literal",
            c as u32
        ));
    }
    let bytes = src.as_bytes();
    let mut depth: Vec<u8> = Vec::new();
    let mut i = 0;
    let mut last_op: Option<u8> = None;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b'\'' | b'"' => {
                let raw = i > 0 && matches!(bytes[i - 1], b'r' | b'R')
                    || i > 1
                        && matches!(bytes[i - 1], b'b' | b'B')
                        && matches!(bytes[i - 2], b'r' | b'R');
                let triple = bytes[i..].starts_with(&[c, c, c]);
                let quote_len = if triple { 3 } else { 1 };
                let mut j = i + quote_len;
                loop {
                    if j >= bytes.len() {
                        return Err(format!(
                            "unterminated string literal starting at offset {i}"
                        ));
                    }
                    if !raw && bytes[j] == b'\\' {
                        j += 2;
                        continue;
                    }
                    if !triple && bytes[j] == b'\n' {
                        return Err(format!(
                            "unterminated string literal starting at offset {i}"
                        ));
                    }
                    if bytes[j] == c && (!triple || bytes[j..].starts_with(&[c, c, c])) {
                        j += quote_len;
                        break;
                    }
                    j += 1;
                }
                i = j;
                last_op = None;
                continue;
            }
            b'(' | b'[' | b'{' => depth.push(c),
            b')' | b']' | b'}' => {
                let open = match c {
                    b')' => b'(',
                    b']' => b'[',
                    _ => b'{',
                };
                if depth.pop() != Some(open) {
                    return Err(format!("unbalanced '{}' at offset {i}", c as char));
                }
            }
            _ => {}
        }
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let is_unary_candidate = c == b'!' && bytes.get(i + 1) != Some(&b'=') || c == b'-';
        if is_unary_candidate && last_op == Some(c) {
            return Err(format!(
                "repeated '{}' operators are not supported; simplify the expression",
                c as char
            ));
        }
        last_op = if is_unary_candidate { Some(c) } else { None };
        i += 1;
    }
    if let Some(open) = depth.pop() {
        return Err(format!("unclosed '{}'", open as char));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prescan_catches_parser_traps() {
        prescan("shard_hash(region + \":\" + string(tier)) % 8u").unwrap();
        prescan("a != b && !(c)").unwrap();
        prescan("'it''s' + \"a\\\"b\" + '''x'y'''").unwrap();
        assert!(
            prescan("'unterminated")
                .unwrap_err()
                .contains("unterminated")
        );
        assert!(prescan("(1 + 2").unwrap_err().contains("unclosed"));
        // Regressions (cel_eval fuzz target): control characters panicked the parser.
        assert!(prescan("\u{7} + 1").unwrap_err().contains("U+0007"));
        assert!(
            prescan("key + \u{1}")
                .unwrap_err()
                .contains("control character")
        );
        prescan("key +\t1\r\n").unwrap();
        assert!(prescan("1 + 2)").unwrap_err().contains("unbalanced"));
        assert!(prescan("!!flag").unwrap_err().contains("repeated '!'"));
        assert!(prescan("a - -b").unwrap_err().contains("repeated '-'"));
        prescan("'--' + \"!!\"").unwrap();
    }
}
