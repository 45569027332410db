//! Per-row cost of CEL routing: a compiled expression evaluated for many rows, against the
//! native HASH router on the same keys.
//!
//! Run with `cargo bench -p shardyfusion-cel --bench eval` (or `cargo xtask bench`).

use std::hint::black_box;

use criterion::{Criterion, criterion_main};
use shardyfusion_cel::{CelColumn, CelRouter, CelValue, cel_sharding_by_columns, routing_context};
use shardyfusion_core::{CelColumnType, HashRouter, KeyRef};

fn bench(c: &mut Criterion) {
    let regions = ["eu", "us", "ap", "sa"];
    let rows: Vec<_> = (0..1024i64)
        .map(|i| {
            routing_context([
                ("region", CelValue::from(regions[(i % 4) as usize])),
                ("tier", CelValue::Int(i)),
            ])
        })
        .collect();

    let spec = cel_sharding_by_columns(
        &["region".into(), CelColumn::new("tier", CelColumnType::Int)],
        Some(8),
        ":",
    )
    .expect("valid spec");
    let multi = CelRouter::from_spec(&spec).expect("compiles");
    let mut g = c.benchmark_group("route_per_row");
    g.bench_function("cel_multi_column_shard_hash", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % rows.len();
            black_box(multi.route_context(&rows[i]).expect("routes"))
        })
    });

    let key_spec =
        cel_sharding_by_columns(&[CelColumn::new("key", CelColumnType::Int)], Some(8), ":")
            .expect("valid");
    let key_only = CelRouter::from_spec(&key_spec).expect("compiles");
    g.bench_function("cel_key_only_shard_hash", |b| {
        let mut i = 0i64;
        b.iter(|| {
            i += 1;
            black_box(key_only.route(KeyRef::Int(i), None).expect("routes"))
        })
    });

    let hash = HashRouter::new(8).expect("8 shards");
    g.bench_function("native_hash_router", |b| {
        let mut i = 0i64;
        b.iter(|| {
            i += 1;
            black_box(hash.db_id(KeyRef::Int(i)))
        })
    });
    g.finish();
}

#[allow(missing_docs)]
mod group {
    criterion::criterion_group!(benches, super::bench);
}
use group::benches;
criterion_main!(benches);
