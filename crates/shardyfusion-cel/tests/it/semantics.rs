//! Routing semantics beyond the golden vectors: strict typing, runtime errors, key-only mode,
//! agreement with HASH routing.

use proptest::prelude::*;
use shardyfusion_cel::{CelExpression, CelRouter, CelValue, Route, routing_context};
use shardyfusion_core::{
    CelColumnType, ErrorKind, HashRouter, KeyRef, ManifestSharding, ShardingStrategy,
};

fn cols(pairs: &[(&str, CelColumnType)]) -> std::collections::BTreeMap<String, CelColumnType> {
    pairs.iter().map(|(k, t)| ((*k).to_owned(), *t)).collect()
}

#[test]
fn strict_typing_rejects_what_cel_cpp_rejects() {
    let c = cols(&[
        ("key", CelColumnType::Int),
        ("r", CelColumnType::String),
        ("f", CelColumnType::Bool),
    ]);
    for (expr, needle) in [
        ("shard_hash(key) % 4", "'_%_' applied to '(uint, int)'"),
        ("key + 1u", "'_+_' applied to '(int, uint)'"),
        ("key > 5", "returns bool"),
        ("double(key) / 2.0", "returns double"),
        ("f ? 1 : 2u", "'_?_:_'"),
        ("key ? 1 : 2", "'_?_:_' applied to '(int, int, int)'"),
        ("r.size() + [1][0]", "list literals"),
        ("r in ['a']", "list literals"),
        ("x.y", "field selection"),
        ("y + 1", "undeclared reference to 'y'"),
        ("r.shard_hash()", "method-call syntax"),
        ("b'a' + b'b'", "'_+_' applied to '(bytes, bytes)'"),
        ("nope(key)", "found no matching overload for 'nope'"),
        ("!!f ? 1 : 2", "repeated '!'"),
        ("(key", "unclosed"),
        ("'abc", "unterminated"),
        ("", "empty"),
        ("key +", "Failed to compile"),
    ] {
        let err = CelExpression::compile(expr, &c).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ConfigValidation, "{expr}");
        assert!(err.message().contains(needle), "{expr}: {err}");
    }
    for ok in [
        "shard_hash(key) % 4u",
        "int(shard_hash(r + \":\" + string(key)) % 3u)",
        "f ? r : 'x'",
        "size(r) > 2 && !f ? 1 : 0",
        "r.size()",
        "-key",
        "key - -1 + 0",
    ] {
        let res = CelExpression::compile(ok, &c);
        if ok == "key - -1 + 0" {
            assert!(res.is_err(), "repeated unary minus is refused");
        } else {
            res.unwrap();
        }
    }
}

#[test]
fn runtime_errors_are_errors_not_values() {
    let c = cols(&[
        ("key", CelColumnType::Int),
        ("u", CelColumnType::Uint),
        ("b", CelColumnType::Bytes),
    ]);
    let ctx = |k: i64, u: u64, b: &[u8]| {
        routing_context([
            ("key", CelValue::Int(k)),
            ("u", CelValue::Uint(u)),
            ("b", CelValue::Bytes(b.to_vec())),
        ])
    };
    for (expr, ctx) in [
        ("key / 0", ctx(1, 0, b"")),
        ("key % 0", ctx(1, 0, b"")),
        ("key + 1", ctx(i64::MAX, 0, b"")),
        ("-key", ctx(i64::MIN, 0, b"")),
        ("u - 1u", ctx(0, 0, b"")),
        ("shard_hash(u)", ctx(0, 1 << 63, b"")),
        ("size(string(b))", ctx(0, 0, &[0xff, 0xfe])),
        ("int(double(key) * 1e30)", ctx(5, 0, b"")),
    ] {
        let e = CelExpression::compile(expr, &c).unwrap();
        let err = e.evaluate(&ctx).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ShardAssignment, "{expr}: {err}");
        assert!(err.message().contains(expr), "{err}");
    }
}

#[test]
fn binding_errors_are_config_errors() {
    let c = cols(&[("key", CelColumnType::Int), ("u", CelColumnType::Uint)]);
    let e = CelExpression::compile("key + int(u)", &c).unwrap();
    let err = e
        .evaluate(&routing_context([("key", CelValue::Int(1))]))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConfigValidation);
    assert!(err.message().contains("\"u\""), "{err}");
    let err = e
        .evaluate(&routing_context([
            ("key", CelValue::Int(1)),
            ("u", CelValue::Int(-3)),
        ]))
        .unwrap_err();
    assert!(err.message().contains("negative value -3"), "{err}");
    let err = e
        .evaluate(&routing_context([
            ("key", CelValue::from("1")),
            ("u", CelValue::Int(3)),
        ]))
        .unwrap_err();
    assert!(err.message().contains("declared int"), "{err}");
    // Non-negative ints bind to uint columns.
    assert!(
        e.evaluate(&routing_context([
            ("key", CelValue::Int(1)),
            ("u", CelValue::Int(3))
        ]))
        .is_ok()
    );
}

#[test]
fn key_only_mode_binds_the_key() {
    let router = CelRouter::direct(
        CelExpression::compile(
            "shard_hash(key) % 8u",
            &cols(&[("key", CelColumnType::String)]),
        )
        .unwrap(),
        Some(8),
    );
    let hash = HashRouter::new(8).unwrap();
    assert_eq!(
        router.route(KeyRef::Str("user:1"), None).unwrap(),
        Route::Shard(hash.db_id(KeyRef::Str("user:1")))
    );
    assert_eq!(
        router.route(KeyRef::Bytes(b"user:1"), None).unwrap(),
        Route::Shard(hash.db_id(KeyRef::Str("user:1")))
    );
    assert_eq!(
        router.route(KeyRef::Int(1), None).unwrap_err().kind(),
        ErrorKind::ConfigValidation
    );
    let uint_key = CelExpression::compile("key", &cols(&[("key", CelColumnType::Uint)])).unwrap();
    assert!(uint_key.evaluate_key(KeyRef::Int(-1)).is_err());
}

#[test]
fn direct_mode_range_is_checked_against_num_dbs() {
    let e = CelExpression::compile("key", &cols(&[("key", CelColumnType::Int)])).unwrap();
    let r = CelRouter::direct(e, Some(4));
    assert_eq!(r.route(KeyRef::Int(3), None).unwrap(), Route::Shard(3));
    let err = r.route(KeyRef::Int(4), None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ShardAssignment);
    assert!(err.message().contains("outside [0, 4)"), "{err}");
}

#[test]
fn router_from_manifest() {
    let m = ManifestSharding {
        strategy: ShardingStrategy::Cel,
        cel_expr: Some("region".into()),
        cel_columns: Some(cols(&[("region", CelColumnType::String)])),
        routing_values: Some(vec!["ap".into(), "eu".into()]),
    };
    let r = CelRouter::from_manifest(&m, 2).unwrap();
    let ctx = routing_context([("region", CelValue::from("eu"))]);
    assert_eq!(
        r.route(KeyRef::Int(7), Some(&ctx)).unwrap(),
        Route::Shard(1)
    );
    assert!(CelRouter::from_manifest(&ManifestSharding::hash(), 2).is_err());
}

#[test]
fn compiled_expression_is_shared_across_threads() {
    let e = CelExpression::compile(
        "shard_hash(key) % 16u",
        &cols(&[("key", CelColumnType::Int)]),
    )
    .unwrap();
    let hash = HashRouter::new(16).unwrap();
    std::thread::scope(|s| {
        for t in 0..2i64 {
            let e = e.clone();
            s.spawn(move || {
                for k in (t * 1000)..(t * 1000 + 500) {
                    let got = e.evaluate_key(KeyRef::Int(k)).unwrap();
                    assert_eq!(
                        got,
                        shardyfusion_cel::CelResult::Uint(u64::from(hash.db_id(KeyRef::Int(k))))
                    );
                }
            });
        }
    });
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn shard_hash_mod_n_equals_hash_routing(i in any::<i64>(), s in ".{0,24}", b in proptest::collection::vec(any::<u8>(), 0..24), n in 1u32..2000) {
        let hash = HashRouter::new(n).unwrap();
        let src = format!("shard_hash(x) % {n}u");
        for (ty, v, k) in [
            (CelColumnType::Int, CelValue::Int(i), KeyRef::Int(i)),
            (CelColumnType::String, CelValue::Str(s.clone()), KeyRef::Str(&s)),
            (CelColumnType::Bytes, CelValue::Bytes(b.clone()), KeyRef::Bytes(&b)),
        ] {
            let e = CelExpression::compile(&src, &cols(&[("x", ty)])).unwrap();
            let got = e.evaluate(&routing_context([("x", v)])).unwrap();
            prop_assert_eq!(got, shardyfusion_cel::CelResult::Uint(u64::from(hash.db_id(k))));
        }
        if i >= 0 {
            let e = CelExpression::compile(&src, &cols(&[("x", CelColumnType::Uint)])).unwrap();
            let got = e.evaluate(&routing_context([("x", CelValue::Uint(i as u64))])).unwrap();
            prop_assert_eq!(got, shardyfusion_cel::CelResult::Uint(u64::from(hash.db_id(KeyRef::Int(i)))));
        }
    }
}

#[test]
fn by_columns_spec_table_and_separator_escaping() {
    use shardyfusion_cel::{CelColumn, cel_sharding_by_columns};
    let int = |n: &str| CelColumn::new(n, CelColumnType::Int);
    let cases: [(Vec<CelColumn>, Option<u32>, &str, &str); 6] = [
        (
            vec!["region".into()],
            Some(10),
            ":",
            "shard_hash(region) % 10u",
        ),
        (vec![int("tier")], Some(4), ":", "shard_hash(tier) % 4u"),
        (
            vec!["region".into(), int("tier")],
            Some(8),
            ":",
            r#"shard_hash(region + ":" + string(tier)) % 8u"#,
        ),
        (vec!["a".into(), "b".into()], None, "\"", r#"a + "\"" + b"#),
        (
            vec!["a".into(), "b".into()],
            None,
            "é\n",
            r#"a + "\u00e9\n" + b"#,
        ),
        (
            vec![CelColumn::new("d", CelColumnType::Double)],
            None,
            ":",
            "string(d)",
        ),
    ];
    for (cols, n, sep, want) in cases {
        let spec = cel_sharding_by_columns(&cols, n, sep).unwrap();
        assert_eq!(spec.cel_expr.as_deref(), Some(want));
        assert_eq!(spec.infer_routing_values_from_data, n.is_none());
    }
    // The separator is a real CEL string literal: evaluation sees the raw character.
    let spec = cel_sharding_by_columns(&["a".into(), "b".into()], None, "\"").unwrap();
    let e = CelExpression::compile(spec.cel_expr.as_deref().unwrap(), &spec.cel_columns).unwrap();
    let got = e
        .evaluate(&routing_context([
            ("a", CelValue::from("x")),
            ("b", CelValue::from("y")),
        ]))
        .unwrap();
    assert_eq!(got, shardyfusion_cel::CelResult::Str("x\"y".into()));
    // SPEC 6.11: ("region", ("tier", int), 8) routes ("eu", 3) to 2.
    let spec = cel_sharding_by_columns(&["region".into(), int("tier")], Some(8), ":").unwrap();
    let r = CelRouter::from_spec(&spec).unwrap();
    let ctx = routing_context([("region", CelValue::from("eu")), ("tier", CelValue::Int(3))]);
    assert_eq!(r.route_context(&ctx).unwrap(), Route::Shard(2));
    assert!(cel_sharding_by_columns(&["a".into(), "a".into()], Some(2), ":").is_err());
}

/// Regressions from the `cel_eval` fuzz target: inputs the parser panics on (an operator with
/// no operand, control characters) are compile errors, never a crash of the caller.
#[test]
fn parser_traps_found_by_fuzzing_are_compile_errors() {
    let columns = cols(&[("raw", CelColumnType::Bytes), ("key", CelColumnType::Int)]);
    for expr in ["raw*", "\u{7} + 1", "key + \u{1}"] {
        let err = CelExpression::compile(expr, &columns).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ConfigValidation, "{expr:?}: {err}");
    }
}
