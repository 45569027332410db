//! The engine seam (SPEC 15.6): a driver fixes a build ([`ShardedWriter::begin`]), engine tasks
//! write the shards of their partitions ([`ShardedWriter::write_partition`]) and return small
//! results, and the driver commits them ([`ShardedWriter::commit`]): winners, coverage, the
//! two-phase publish, loser cleanup and the run record.

use std::time::Instant;

use arrow_array::{RecordBatch, UInt32Array};
use futures::Stream;
use shardyfusion_core::{Error, ErrorKind, Result, RoutingValue, WriteOptions};

use crate::ValueSpec;
use crate::registry::RunRegistry;
use crate::result::BuildResult;
use crate::route;
use crate::shard::ShardResult;
use crate::writer::{ShardedWriter, Shards};

/// The version of this writer; a commit refuses results written by another version.
pub const WRITER_VERSION: &str = env!("CARGO_PKG_VERSION");

/// What every task of a build must agree on, fixed by the driver before any task runs.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct BuildPlan {
    /// The run id of the build.
    pub run_id: String,
    /// Shards of the snapshot.
    pub num_dbs: u32,
    /// The key column.
    pub key_col: String,
    /// CEL categorical routing values (fixed for the whole build).
    pub routing_values: Option<Vec<RoutingValue>>,
    /// [`WRITER_VERSION`] of the driver.
    pub writer_version: String,
}

/// A build in progress on the driver: its plan and its run record (kept alive, with its
/// heartbeat, until [`ShardedWriter::commit`] or [`ShardedWriter::abort`]).
pub struct Build {
    pub(crate) plan: BuildPlan,
    pub(crate) registry: Option<RunRegistry>,
    pub(crate) started: Instant,
    pub(crate) sharding_ms: u64,
}

impl std::fmt::Debug for Build {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Build")
            .field("plan", &self.plan)
            .finish_non_exhaustive()
    }
}

impl Build {
    /// The plan every task must be given.
    pub fn plan(&self) -> &BuildPlan {
        &self.plan
    }
}

fn skew(what: &str, theirs: &str) -> Error {
    Error::config(format!(
        "{what} comes from shardyfusion writer {theirs}, but this is {WRITER_VERSION}: install \
         the same version on the driver and on every executor"
    ))
}

impl ShardedWriter {
    /// Fix a build on the driver: its run id, shard count and routing (known up front: give
    /// `num_dbs`, `max_keys_per_shard` with [`WriteOptions::expected_rows`], or CEL
    /// `routing_values`), and start its run record.
    pub async fn begin(&self, key_col: &str, options: &WriteOptions) -> Result<Build> {
        let plan = route::plan(
            self.config(),
            options.expected_rows,
            route::Survey::default(),
        )?;
        self.begin_planned(&plan, key_col, options).await
    }

    /// Write the rows of one engine partition, read once. Every row must route to one of
    /// `shards` (one that does not is a [`ErrorKind::ShardAssignment`] error naming its key),
    /// and every shard of `shards` gets a result, empty ones included, so that the commit can
    /// check coverage. Attempt numbers are claimed (create-only) before a shard is opened, so
    /// engine retries and speculative duplicates of a task never share a shard URL.
    pub async fn write_partition<S, E>(
        &self,
        plan: &BuildPlan,
        shards: &[u32],
        batches: S,
        value: &ValueSpec,
        options: &WriteOptions,
    ) -> Result<Vec<ShardResult>>
    where
        S: Stream<Item = std::result::Result<RecordBatch, E>>,
        E: std::error::Error + Send + Sync + 'static,
    {
        if plan.writer_version != WRITER_VERSION {
            return Err(skew("the build plan", &plan.writer_version));
        }
        if let Some(&bad) = shards.iter().find(|&&s| s >= plan.num_dbs) {
            return Err(Error::new(
                ErrorKind::ShardAssignment,
                format!(
                    "partition shard {bad} is outside [0, {}) of the build",
                    plan.num_dbs
                ),
            ));
        }
        options.validate()?;
        let routing = route::fixed(self.config(), plan.num_dbs, plan.routing_values.clone())?;
        let input = self
            .open_arrow(batches, &plan.key_col, value, options)
            .await?;
        let scratch = self
            .config()
            .output()
            .local_root
            .join(format!("task={}", uuid::Uuid::new_v4().simple()));
        let target = Shards {
            run_id: &plan.run_id,
            owned: Some(shards),
            started: Instant::now(),
            scratch: &scratch,
        };
        let results = self
            .write_shards(&routing, &target, options, async |session, router| {
                input.feed(session, router, &plan.key_col).await
            })
            .await;
        let _ = tokio::fs::remove_dir_all(&scratch).await;
        Ok(results?
            .into_iter()
            .filter(|r| shards.contains(&r.db_id))
            .collect())
    }

    /// The shard of every row of `batch` under `plan`: the routing `write_partition` checks,
    /// for engines that repartition their data by shard first (a null or malformed key is an
    /// error naming its row).
    pub fn route_batch(&self, plan: &BuildPlan, batch: &RecordBatch) -> Result<UInt32Array> {
        let routing = route::fixed(self.config(), plan.num_dbs, plan.routing_values.clone())?;
        crate::input::route_rows(self, &routing.router, batch, &plan.key_col)
    }

    /// Commit a build from the results of all its tasks: winners, coverage, manifest, pointer,
    /// loser cleanup, run record. Results written by another writer version are refused
    /// before anything is published.
    pub async fn commit(&self, build: Build, results: Vec<ShardResult>) -> Result<BuildResult> {
        if let Some(r) = results.iter().find(|r| r.writer_version != WRITER_VERSION) {
            let e = skew(
                &format!("the result of shard {}", r.db_id),
                &r.writer_version,
            );
            self.end(build, Err(&e)).await;
            return Err(e);
        }
        let write_ms = build.started.elapsed().as_millis() as u64;
        self.commit_results(build, results, write_ms).await
    }

    /// Give a build up (a task failed for good): the run record says `failed` with `error`;
    /// nothing is published and `_CURRENT` stays where it was.
    pub async fn abort(&self, build: Build, error: &Error) {
        self.end(build, Err(error)).await;
    }
}
