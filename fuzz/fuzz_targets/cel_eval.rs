//! A CEL routing expression from a user: compile it over a fixed set of typed columns and, when
//! it compiles, evaluate it on values taken from the input. Errors are fine; panics that reach
//! the caller, hangs and runaway memory are not.
//!
//! The CEL parser (cel-parser on antlr4rust) panics on some malformed input (`raw*`: an
//! operator with no operand); `CelExpression::compile` contains those panics and returns a
//! compile error. libFuzzer's panic hook would abort on the contained panic too, so this target
//! replaces it with a silent one: a panic that escapes `compile`/`evaluate` still unwinds into
//! libfuzzer-sys, which aborts, and is reported as a crash.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use shardyfusion_cel::{CelExpression, CelValue, RoutingContext};
use shardyfusion_core::CelColumnType;

static QUIET_HOOK: std::sync::Once = std::sync::Once::new();

fuzz_target!(|data: &[u8]| {
    QUIET_HOOK.call_once(|| std::panic::set_hook(Box::new(|_| {})));
    // The first 8 bytes feed the column values, the rest is the expression.
    let (seed, expr) = data.split_at(data.len().min(8));
    let Ok(expr) = std::str::from_utf8(expr) else {
        return;
    };
    let mut n = [0u8; 8];
    n[..seed.len()].copy_from_slice(seed);
    let n = i64::from_le_bytes(n);
    let columns: BTreeMap<String, CelColumnType> = [
        ("key", CelColumnType::Int),
        ("u", CelColumnType::Uint),
        ("region", CelColumnType::String),
        ("raw", CelColumnType::Bytes),
        ("score", CelColumnType::Double),
        ("flag", CelColumnType::Bool),
    ]
    .into_iter()
    .map(|(k, t)| (k.to_owned(), t))
    .collect();
    let Ok(compiled) = CelExpression::compile(expr, &columns) else {
        return;
    };
    let ctx: RoutingContext = [
        ("key", CelValue::Int(n)),
        ("u", CelValue::Uint(n as u64)),
        ("region", CelValue::Str(format!("r{}", n % 7))),
        ("raw", CelValue::Bytes(seed.to_vec())),
        ("score", CelValue::Double(n as f64 / 3.0)),
        ("flag", CelValue::Bool(n % 2 == 0)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let _ = compiled.evaluate(&ctx);
});
