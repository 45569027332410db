//! Every group of `cel.json`.

use serde_json::Value;
use shardyfusion_cel::{
    CelColumn, CelExpression, CelResult, CelRouter, Route, cel_sharding, cel_sharding_by_columns,
    discover_direct_num_dbs, infer_routing_values,
};
use shardyfusion_core::{CelColumnType, ErrorKind, KeyRef, RoutingValue, xxh3_digest};

use crate::{columns, context, fixture, is_python_error_string, result_json, unhex};

fn routing_values(v: &Value) -> Option<Vec<RoutingValue>> {
    v.as_array()?
        .iter()
        .map(|x| match x {
            Value::String(s) => Some(RoutingValue::Str(s.clone())),
            Value::Number(n) => Some(RoutingValue::Int(n.as_i64()?)),
            _ => None, // bytes tokens: not representable (SPEC 6.7)
        })
        .collect()
}

#[test]
fn direct_mode() {
    let g = fixture();
    let mut rows = 0;
    for case in g["direct_mode"].as_array().unwrap() {
        let expr_src = case["expr"].as_str().unwrap();
        let cols = columns(&case["columns"]);
        let compiled = CelExpression::compile(expr_src, &cols);
        for row in case["rows"].as_array().unwrap() {
            rows += 1;
            let eval = &row["evaluate"];
            if eval["ok"] == false {
                // Python rejects bool/double results at evaluation; Rust's type checker rejects
                // them at compile time, with the same error kind.
                let err = compiled.as_ref().unwrap_err();
                assert_eq!(err.kind(), ErrorKind::ConfigValidation, "{expr_src}");
                assert!(
                    err.message()
                        .contains("must return int, uint, string or bytes"),
                    "{err}"
                );
                continue;
            }
            let compiled = compiled.as_ref().unwrap();
            let ctx = context(&cols, &row["context"]);
            let got = compiled.evaluate(&ctx);
            if is_python_error_string(&eval["result"]) {
                assert_eq!(
                    got.unwrap_err().kind(),
                    ErrorKind::ShardAssignment,
                    "{expr_src} {ctx:?}"
                );
                continue;
            }
            let got = got.unwrap();
            let has_nul = ctx.values().any(|v| match v {
                shardyfusion_cel::CelValue::Bytes(b) => b.contains(&0),
                shardyfusion_cel::CelValue::Str(s) => s.contains('\0'),
                _ => false,
            });
            if has_nul {
                // Python's runtime truncates at NUL (runtime_quirks.nul_truncation); Rust hashes
                // the whole value, so it must agree with HASH routing of the full bytes instead.
                let Some(shardyfusion_cel::CelValue::Bytes(b)) = ctx.get("key") else {
                    panic!("{ctx:?}")
                };
                assert_eq!(expr_src, "shard_hash(key) % 8u");
                assert_eq!(got, CelResult::Uint(xxh3_digest(KeyRef::Bytes(b)) % 8));
                continue;
            }
            assert_eq!(result_json(&got), eval["result"], "{expr_src} {ctx:?}");
            let router = CelRouter::direct(compiled.clone(), None);
            let routed = router.route_context(&ctx);
            match row["db_id"]["result"].as_i64() {
                Some(id) if id >= 0 => assert_eq!(routed.unwrap(), Route::Shard(id as u32)),
                // Negative ids (Python passes them through) and non-numeric strings are
                // ShardAssignment errors in Rust.
                _ => assert_eq!(
                    routed.unwrap_err().kind(),
                    ErrorKind::ShardAssignment,
                    "{expr_src} {ctx:?}"
                ),
            }
        }
    }
    assert!(rows >= 60, "{rows}");
}

#[test]
fn categorical_mode() {
    let g = fixture();
    let mut rows = 0;
    for case in g["categorical_mode"].as_array().unwrap() {
        let expr_src = case["expr"].as_str().unwrap();
        let cols = columns(&case["columns"]);
        let compiled = CelExpression::compile(expr_src, &cols).unwrap();
        let Some(values) = routing_values(&case["routing_values"]) else {
            // Bytes routing values: Rust writers must reject them (SPEC 6.7) and the type cannot
            // hold them. Evaluation must still agree.
            for row in case["rows"].as_array().unwrap() {
                let got = compiled.evaluate(&context(&cols, &row["context"])).unwrap();
                assert_eq!(result_json(&got), row["evaluate"]["result"]);
                rows += 1;
            }
            continue;
        };
        let router = CelRouter::categorical(compiled, &values).unwrap();
        assert_eq!(
            router.num_dbs(),
            Some(case["num_dbs"].as_u64().unwrap() as u32)
        );
        for row in case["rows"].as_array().unwrap() {
            rows += 1;
            let ctx = context(&cols, &row["context"]);
            let got = router.expression().evaluate(&ctx).unwrap();
            assert_eq!(result_json(&got), row["evaluate"]["result"]);
            let route = router.route_context(&ctx).unwrap();
            match row["db_id"]["result"].as_u64() {
                Some(id) => assert_eq!(route, Route::Shard(id as u32)),
                None => {
                    assert_eq!(row["db_id"]["exception_type"], "UnknownRoutingTokenError");
                    let Route::UnknownToken(tok) = &route else {
                        panic!("{route:?}")
                    };
                    let err = route.clone().into_shard().unwrap_err();
                    assert_eq!(err.kind(), ErrorKind::ShardAssignment);
                    assert!(
                        err.message().contains("is not present in this snapshot"),
                        "{err}"
                    );
                    assert_eq!(tok, &got);
                }
            }
        }
    }
    assert!(rows >= 15, "{rows}");
}

/// Parse `cel_sharding_by_columns('a', CelColumn('b', CelType.INT), separator='|', num_shards=8)`.
fn parse_call(call: &str) -> (Vec<CelColumn>, Option<u32>, String) {
    let body = call.split_once('(').unwrap().1;
    let body = &body[..body.rfind(')').unwrap()];
    let mut cols = Vec::new();
    let (mut n, mut sep) = (None, ":".to_owned());
    let mut rest = body.trim();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("CelColumn('") {
            let (name, r) = r.split_once("', CelType.").unwrap();
            let (ty, r) = r.split_once(')').unwrap();
            cols.push(CelColumn::new(name, ty.to_lowercase().parse().unwrap()));
            rest = r;
        } else if let Some(r) = rest.strip_prefix('\'') {
            let (name, r) = r.split_once('\'').unwrap();
            cols.push(name.into());
            rest = r;
        } else if let Some(r) = rest.strip_prefix("num_shards=") {
            let end = r.find(',').unwrap_or(r.len());
            n = Some(r[..end].trim().parse().unwrap());
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix("separator='") {
            let (s, r) = r.split_once('\'').unwrap();
            sep = s.to_owned();
            rest = r;
        } else {
            panic!("cannot parse {rest:?} in {call}");
        }
        rest = rest.trim_start_matches([',', ' ']);
    }
    (cols, n, sep)
}

#[test]
fn by_columns() {
    let g = fixture();
    let cases = g["by_columns"].as_array().unwrap();
    assert_eq!(cases.len(), 10);
    for case in cases {
        let call = case["call"].as_str().unwrap();
        let call = call.split("  #").next().unwrap();
        let (cols, n, sep) = parse_call(call);
        let spec = cel_sharding_by_columns(&cols, n, &sep).unwrap();
        let want = &case["spec"];
        assert_eq!(
            spec.cel_expr.as_deref(),
            want["cel_expr"].as_str(),
            "{call}"
        );
        assert_eq!(spec.cel_columns, columns(&want["cel_columns"]), "{call}");
        assert_eq!(
            spec.infer_routing_values_from_data,
            want["infer_routing_values_from_data"] == true
        );
        assert!(spec.routing_values.is_none());
        let expr =
            CelExpression::compile(spec.cel_expr.as_deref().unwrap(), &spec.cel_columns).unwrap();
        let mut results = Vec::new();
        for row in case["rows"].as_array().unwrap() {
            let ctx = context(&spec.cel_columns, &row["context"]);
            let got = expr.evaluate(&ctx).unwrap();
            assert_eq!(
                result_json(&got),
                row["evaluate"]["result"],
                "{call} {ctx:?}"
            );
            if let Some(id) = row["db_id"]["result"].as_u64() {
                let router = CelRouter::direct(expr.clone(), n);
                assert_eq!(router.route_context(&ctx).unwrap(), Route::Shard(id as u32));
            }
            results.push(got);
        }
        if let Some(inferred) = case.get("inferred_routing_values_for_sample_rows") {
            let values = infer_routing_values(results.clone()).unwrap();
            assert_eq!(Some(values.clone()), routing_values(inferred), "{call}");
            let router = CelRouter::categorical(expr.clone(), &values).unwrap();
            let ids: Vec<u64> = results
                .into_iter()
                .map(|r| u64::from(router.resolve(r).unwrap().into_shard().unwrap()))
                .collect();
            let want: Vec<u64> = case["db_ids_for_sample_rows"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap())
                .collect();
            assert_eq!(ids, want, "{call}");
        }
    }
}

#[test]
fn shard_hash_values() {
    let g = fixture();
    for case in g["shard_hash"].as_array().unwrap() {
        let ty: CelColumnType = case["cel_type"].as_str().unwrap().parse().unwrap();
        let cols = [("x".to_owned(), ty)].into();
        let expr = CelExpression::compile("shard_hash(x)", &cols).unwrap();
        let value = crate::cel_value(ty, &case["value"]);
        let got = expr.evaluate(&[("x".to_owned(), value.clone())].into());
        let want = &case["shard_hash"]["result"];
        if is_python_error_string(want) {
            let err = got.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::ShardAssignment);
            assert!(err.message().contains("out of range"), "{err}");
            continue;
        }
        let got = got.unwrap();
        match &value {
            // Python's CEL runtime truncates variables at the first NUL; Rust hashes the whole
            // value (SPEC 14, runtime_quirks.nul_truncation).
            shardyfusion_cel::CelValue::Bytes(b) if b.contains(&0) => {
                assert_eq!(got, CelResult::Uint(xxh3_digest(KeyRef::Bytes(b))));
            }
            _ => assert_eq!(
                got,
                CelResult::Uint(want.as_str().unwrap().parse().unwrap()),
                "{case}"
            ),
        }
    }
}

#[test]
fn runtime_quirks_are_not_copied() {
    let g = fixture();
    let q = &g["runtime_quirks"];
    for case in q["nul_truncation"]["cases"].as_array().unwrap() {
        let cols = columns(&case["columns"]);
        let expr = CelExpression::compile(case["expr"].as_str().unwrap(), &cols).unwrap();
        let ctx = context(&cols, &case["context"]);
        let got = expr.evaluate(&ctx).unwrap();
        // Rust hashes/returns the whole value, NUL bytes included.
        let full = match ctx.get("key") {
            Some(shardyfusion_cel::CelValue::Bytes(b)) => b.clone(),
            Some(shardyfusion_cel::CelValue::Str(s)) => s.as_bytes().to_vec(),
            _ => b"a\0b".to_vec(), // the literal case
        };
        match got {
            CelResult::Uint(h) => assert_eq!(h, xxh3_digest(KeyRef::Bytes(&full))),
            CelResult::Bytes(b) => assert_eq!(b, full),
            CelResult::Str(s) => assert_eq!(s.as_bytes(), &full[..]),
            CelResult::Int(_) => panic!("unexpected"),
        }
    }
    for case in q["errors_returned_as_string_values"]["cases"]
        .as_array()
        .unwrap()
    {
        let cols = columns(&case["columns"]);
        let expr = CelExpression::compile(case["expr"].as_str().unwrap(), &cols).unwrap();
        let raw = case["context"].as_object().unwrap();
        let err = match raw.get("key") {
            None => expr.evaluate(&Default::default()).unwrap_err(),
            Some(Value::String(s)) => expr
                .evaluate(&[("key".to_owned(), shardyfusion_cel::CelValue::Str(s.clone()))].into())
                .unwrap_err(),
            Some(_) => expr
                .evaluate(&context(&cols, &case["context"]))
                .unwrap_err(),
        };
        let msg = case["evaluate"]["result"].as_str().unwrap();
        let want = if msg.starts_with("UNKNOWN") || msg.contains("Unexpected value type") {
            ErrorKind::ConfigValidation // binding errors
        } else {
            ErrorKind::ShardAssignment // runtime errors
        };
        assert_eq!(err.kind(), want, "{msg}: {err}");
    }
}

#[test]
fn string_conversions() {
    let g = fixture();
    for case in g["string_conversions"]["cases"].as_array().unwrap() {
        let ty: CelColumnType = case["cel_type"].as_str().unwrap().parse().unwrap();
        let cols = [("x".to_owned(), ty)].into();
        let expr = CelExpression::compile("string(x)", &cols).unwrap();
        let got = expr
            .evaluate(&[("x".to_owned(), crate::cel_value(ty, &case["value"]))].into())
            .unwrap();
        assert_eq!(
            got,
            CelResult::Str(case["string(x)"].as_str().unwrap().to_owned()),
            "{case}"
        );
    }
}

#[test]
fn inferred_values_and_discovery() {
    let g = fixture();
    for case in g["inferred_routing_values"].as_array().unwrap() {
        let (tokens, ok) = match (case.get("tokens"), case.get("tokens_mixed")) {
            (Some(t), _) => (t, true),
            (_, Some(t)) => (t, false),
            _ => continue,
        };
        let results: Vec<CelResult> = tokens
            .as_array()
            .unwrap()
            .iter()
            .map(|t| match t {
                Value::String(s) => CelResult::Str(s.clone()),
                other => CelResult::Int(other.as_i64().unwrap()),
            })
            .collect();
        let got = infer_routing_values(results);
        if ok {
            assert_eq!(Some(got.unwrap()), routing_values(&case["result"]));
        } else {
            assert_eq!(got.unwrap_err().kind(), ErrorKind::ConfigValidation);
        }
    }
    assert!(infer_routing_values([CelResult::Bytes(b"x".to_vec())]).is_err());
    for case in g["discover_cel_num_dbs"].as_array().unwrap() {
        let ids: Vec<i64> = case["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        let got = discover_direct_num_dbs(ids);
        match case["result"]["result"].as_u64() {
            Some(n) => assert_eq!(u64::from(got.unwrap()), n),
            None => {
                let err = got.unwrap_err();
                assert_eq!(err.kind(), ErrorKind::ShardAssignment);
                assert!(err.message().contains("non-consecutive shard IDs"), "{err}");
            }
        }
    }
    assert_eq!(
        discover_direct_num_dbs([1, 2]).unwrap_err().kind(),
        ErrorKind::ShardAssignment
    );
    assert_eq!(
        discover_direct_num_dbs([-1, 0]).unwrap_err().kind(),
        ErrorKind::ShardAssignment
    );
}

#[test]
fn builder_errors() {
    let g = fixture();
    let e = &g["by_columns_errors"];
    let err = cel_sharding_by_columns(&[], Some(1), ":").unwrap_err();
    assert_eq!(
        err.message(),
        e["cel_sharding_by_columns()"]["message"].as_str().unwrap()
    );
    let err = cel_sharding_by_columns(&["a".into()], Some(0), ":").unwrap_err();
    assert_eq!(
        err.message(),
        e["cel_sharding_by_columns('a', num_shards=0)"]["message"]
            .as_str()
            .unwrap()
    );
    let err = cel_sharding("x", [("x", "float")], None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConfigValidation);
    assert!(
        err.message()
            .contains("Unsupported CEL column type: \"float\""),
        "{err}"
    );
    assert!(err.message().contains("for column \"x\""), "{err}");
}

#[test]
fn error_cases() {
    let g = fixture();
    let whats: Vec<&str> = g["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["what"].as_str().unwrap())
        .collect();
    let int_key = [("key".to_owned(), CelColumnType::Int)].into();
    let str_key = [("key".to_owned(), CelColumnType::String)].into();

    assert!(whats.contains(&"compile error: 'key +' "));
    let err = CelExpression::compile("key +", &int_key).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConfigValidation);
    assert!(
        err.message()
            .starts_with("Failed to compile CEL expression \"key +\""),
        "{err}"
    );

    let err = CelExpression::compile("foo % 2", &int_key).unwrap_err();
    assert!(
        err.message().contains("undeclared reference to 'foo'"),
        "{err}"
    );

    let err = CelExpression::compile("key % 2", &str_key).unwrap_err();
    assert!(
        err.message()
            .contains("found no matching overload for '_%_' applied to '(string, int)'"),
        "{err}"
    );

    let expr = CelExpression::compile("key % 0", &int_key).unwrap();
    let err = expr
        .evaluate(&[("key".to_owned(), 5i64.into())].into())
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ShardAssignment);

    let spec = cel_sharding(
        "key",
        [("key", "string")],
        Some(vec!["eu".into(), "eu".into()]),
    );
    assert_eq!(spec.unwrap_err().kind(), ErrorKind::ConfigValidation);
    let spec = cel_sharding(
        "key",
        [("key", "string")],
        Some(vec!["eu".into(), 1.into()]),
    );
    assert_eq!(spec.unwrap_err().kind(), ErrorKind::ConfigValidation);

    let two = [
        ("a".to_owned(), CelColumnType::String),
        ("b".to_owned(), CelColumnType::String),
    ]
    .into();
    let router = CelRouter::direct(
        CelExpression::compile("size(a + b)", &two).unwrap(),
        Some(100),
    );
    let err = router.route(KeyRef::Str("k"), None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConfigValidation);
    assert!(err.message().contains("requires routing_context"), "{err}");

    let router = CelRouter::categorical(
        CelExpression::compile("key", &str_key).unwrap(),
        &["eu".into()],
    )
    .unwrap();
    let err = router
        .route(KeyRef::Str("zz"), None)
        .unwrap()
        .into_shard()
        .unwrap_err();
    assert_eq!(
        err.message(),
        "Categorical CEL routing token 'zz' is not present in this snapshot."
    );
    let _ = unhex("");
}
