//! Routing of a write: the router (HASH or CEL) and the plan that fixes `num_dbs` and the
//! routing values before the first row is written, from the configuration, from what the
//! caller knows up front, or from one pre-pass over a re-readable input.

use std::time::Instant;

use shardyfusion_core::{
    Error, HashRouter, KeyRef, Result, RoutingValue, ShardingSpec, ShardingStrategy, WriteConfig,
};

use crate::RoutingContext;

/// How rows reach shards.
pub(crate) enum Router {
    Hash(HashRouter),
    #[cfg(feature = "cel")]
    Cel(shardyfusion_cel::CelRouter),
}

impl Router {
    /// The shard of a key (and, for multi-column CEL, its routing context).
    pub(crate) fn route(&self, key: KeyRef<'_>, ctx: Option<&RoutingContext>) -> Result<u32> {
        match self {
            Router::Hash(h) => {
                let _ = ctx;
                Ok(h.db_id(key))
            }
            #[cfg(feature = "cel")]
            Router::Cel(c) => c.route(key, ctx)?.into_shard(),
        }
    }

    /// The HASH router, when routing is by key hash alone (the columnar fast path).
    pub(crate) fn as_hash(&self) -> Option<&HashRouter> {
        match self {
            Router::Hash(h) => Some(h),
            #[cfg(feature = "cel")]
            Router::Cel(_) => None,
        }
    }
}

/// The routing of one write, fixed before its first row.
pub(crate) struct Plan {
    pub(crate) router: Router,
    pub(crate) num_dbs: u32,
    pub(crate) routing_values: Option<Vec<RoutingValue>>,
    /// Time spent on a pre-pass over the input (0 without one).
    pub(crate) sharding_ms: u64,
}

/// What a pre-pass over a re-readable input tells the plan: the row count, and the CEL result
/// of every row (for inferred categorical values or discovered direct shard ids).
#[derive(Default)]
pub(crate) struct Survey {
    pub(crate) rows: Option<u64>,
    #[cfg(feature = "cel")]
    pub(crate) cel_results: Option<Vec<shardyfusion_cel::CelResult>>,
    pub(crate) duration_ms: u64,
}

/// What the plan needs from the input before the first row, if anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Needs {
    /// The row count (`max_keys_per_shard` without `num_dbs`).
    pub(crate) rows: bool,
    /// The CEL result of every row (inferred routing values, or direct mode without
    /// `num_dbs`).
    pub(crate) cel_results: bool,
}

/// What `config` needs to know about the input before writing, given `expected_rows` from the
/// caller.
pub(crate) fn needs(config: &WriteConfig, expected_rows: Option<u64>) -> Needs {
    let spec = config.sharding();
    match spec.strategy {
        ShardingStrategy::Hash => Needs {
            rows: config.num_dbs().is_none()
                && spec.max_keys_per_shard.is_some()
                && expected_rows.is_none(),
            cel_results: false,
        },
        ShardingStrategy::Cel => Needs {
            rows: false,
            cel_results: spec.routing_values.is_none(),
        },
    }
}

/// The CEL expression of `spec`, compiled (for evaluating rows in a pre-pass).
#[cfg(feature = "cel")]
pub(crate) fn cel_expression(spec: &ShardingSpec) -> Result<shardyfusion_cel::CelExpression> {
    shardyfusion_cel::CelExpression::compile(
        spec.cel_expr.as_deref().unwrap_or_default(),
        &spec.cel_columns,
    )
}

/// Fix the routing of a write from the configuration, the caller's `expected_rows` and what a
/// pre-pass (`survey`) found. A streaming input that cannot be surveyed gets an error that says
/// what to give instead.
pub(crate) fn plan(
    config: &WriteConfig,
    expected_rows: Option<u64>,
    survey: Survey,
) -> Result<Plan> {
    let spec: &ShardingSpec = config.sharding();
    let started = Instant::now();
    let sharding_ms = survey.duration_ms + started.elapsed().as_millis() as u64;
    match spec.strategy {
        ShardingStrategy::Hash => {
            let n = match (config.num_dbs(), spec.max_keys_per_shard) {
                (Some(n), _) => n,
                (None, Some(m)) => {
                    let count = survey.rows.or(expected_rows).ok_or_else(|| {
                        Error::config(
                            "max_keys_per_shard needs the row count before the first row: give \
                             num_dbs, or the input's row count (WriteOptions::expected_rows; \
                             Parquet footers hold it), or write a re-readable input",
                        )
                    })?;
                    u32::try_from(count.div_ceil(m).max(1)).map_err(|_| {
                        Error::config(format!(
                            "{count} rows at max_keys_per_shard {m} need more than 2^32 shards"
                        ))
                    })?
                }
                (None, None) => {
                    return Err(Error::config(
                        "HASH sharding needs num_dbs or max_keys_per_shard",
                    ));
                }
            };
            Ok(Plan {
                router: Router::Hash(HashRouter::new(n)?),
                num_dbs: n,
                routing_values: None,
                sharding_ms,
            })
        }
        #[cfg(feature = "cel")]
        ShardingStrategy::Cel => {
            use shardyfusion_cel::{
                CelRouter, direct_id, discover_direct_num_dbs, infer_routing_values,
            };
            let expr = cel_expression(spec)?;
            if let Some(values) = &spec.routing_values {
                let r = CelRouter::categorical(expr, values)?;
                let n = r.num_dbs().unwrap_or(1);
                return Ok(Plan {
                    router: Router::Cel(r),
                    num_dbs: n,
                    routing_values: Some(values.clone()),
                    sharding_ms: 0,
                });
            }
            let need = |what: &str| {
                Error::config(format!(
                    "{what} needs every row's CEL result before the first row is written: give \
                     routing_values, or write a re-readable input"
                ))
            };
            if spec.infer_routing_values_from_data {
                let tokens = survey
                    .cel_results
                    .ok_or_else(|| need("infer_routing_values_from_data"))?;
                let values = infer_routing_values(tokens)?;
                let r = CelRouter::categorical(expr, &values)?;
                let n = r.num_dbs().unwrap_or(1);
                return Ok(Plan {
                    router: Router::Cel(r),
                    num_dbs: n,
                    routing_values: Some(values),
                    sharding_ms,
                });
            }
            let results = survey
                .cel_results
                .ok_or_else(|| need("CEL direct mode (num_dbs comes from the data)"))?;
            let mut ids = std::collections::BTreeSet::new();
            for v in &results {
                ids.insert(direct_id(v)?);
            }
            let n = discover_direct_num_dbs(ids)?;
            Ok(Plan {
                router: Router::Cel(CelRouter::direct(expr, Some(n))),
                num_dbs: n,
                routing_values: None,
                sharding_ms,
            })
        }
        #[cfg(not(feature = "cel"))]
        ShardingStrategy::Cel => Err(Error::config(
            "CEL sharding needs the `cel` feature of shardyfusion-writer",
        )),
    }
}

/// The routing of a build whose shard count and routing values were fixed beforehand (an
/// engine task rebuilding its driver's plan).
pub(crate) fn fixed(
    config: &WriteConfig,
    num_dbs: u32,
    routing_values: Option<Vec<RoutingValue>>,
) -> Result<Plan> {
    let spec: &ShardingSpec = config.sharding();
    let router = match spec.strategy {
        ShardingStrategy::Hash => Router::Hash(HashRouter::new(num_dbs)?),
        #[cfg(feature = "cel")]
        ShardingStrategy::Cel => {
            use shardyfusion_cel::CelRouter;
            let expr = cel_expression(spec)?;
            match &routing_values {
                Some(values) => Router::Cel(CelRouter::categorical(expr, values)?),
                None => Router::Cel(CelRouter::direct(expr, Some(num_dbs))),
            }
        }
        #[cfg(not(feature = "cel"))]
        ShardingStrategy::Cel => {
            return Err(Error::config(
                "CEL sharding needs the `cel` feature of shardyfusion-writer",
            ));
        }
    };
    Ok(Plan {
        router,
        num_dbs,
        routing_values,
        sharding_ms: 0,
    })
}
