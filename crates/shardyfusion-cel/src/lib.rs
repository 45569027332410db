//! # shardyfusion-cel
//!
//! Route rows to shards with CEL expressions, on the `cel-interpreter` crate.
//!
//! * [`CelExpression::compile`] parses and **type-checks** an expression against declared column
//!   types with CEL's strict rules (`shard_hash(key) % 4` is rejected: it needs `% 4u`), so every
//!   expression accepted here is accepted by the Python implementation (cel-cpp).
//! * `shard_hash(x)` hashes exactly the bytes HASH routing hashes, so
//!   `shard_hash(k) % Nu` equals HASH routing for the same key and N.
//! * [`CelRouter`] routes in **direct** mode (the result is the shard id) or **categorical** mode
//!   (the result is looked up in `routing_values`; an unknown token is [`Route::UnknownToken`]).
//! * Runtime failures (division by zero, overflow, `shard_hash` of a uint ≥ 2^63, invalid UTF-8
//!   in `string(bytes)`) are `ShardAssignment` errors, never values.
//! * [`cel_sharding`] and [`cel_sharding_by_columns`] build specs; [`discover_direct_num_dbs`]
//!   and [`infer_routing_values`] derive `num_dbs` and categorical values from data.
//!
//! Layering: depends on `shardyfusion-core` only. Compile once, evaluate many times: a
//! [`CelExpression`] is `Send + Sync` and cheap to clone.
//!
//! ```
//! use shardyfusion_cel::{cel_sharding_by_columns, routing_context, CelColumn, CelRouter, Route};
//! use shardyfusion_core::{CelColumnType, KeyRef};
//!
//! let spec = cel_sharding_by_columns(&["region".into(), CelColumn::new("tier", CelColumnType::Int)], Some(8), ":")?;
//! let router = CelRouter::from_spec(&spec)?;
//! let ctx = routing_context([("region", "eu".into()), ("tier", 3i64.into())]);
//! assert_eq!(router.route(KeyRef::Int(1), Some(&ctx))?, Route::Shard(2));
//! # Ok::<(), shardyfusion_core::Error>(())
//! ```

#![deny(missing_docs)]

mod check;
mod expr;
mod router;

pub use expr::{CelExpression, CelResult, CelValue, RoutingContext, routing_context};
pub use router::{
    CelColumn, CelRouter, Route, cel_sharding, cel_sharding_by_columns, direct_id,
    discover_direct_num_dbs, infer_routing_values,
};
