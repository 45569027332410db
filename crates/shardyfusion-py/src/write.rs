//! Writes from Arrow streams and the engine seam (begin, route, write a partition, commit).

use std::sync::{Arc, Mutex};

use arrow_array::ffi_stream::RecordBatchStreamReader;
use arrow_array::{Array as _, RecordBatch};
use arrow_pyarrow::{PyArrowType, ToPyArrow};
use pyo3::prelude::*;
use shardyfusion::writer::{Build, BuildPlan, BuildResult, ShardResult, ShardedWriter};
use shardyfusion::{Error, ErrorKind, Result};

use crate::config::{self, parse};
use crate::error::{IntoPy as _, to_py};
use crate::runtime::block_on;

fn writer(config_json: &str) -> Result<ShardedWriter> {
    let config: config::Write = parse("write config", config_json)?;
    ShardedWriter::new(config.to_rust()?)
}

fn options(options_json: &str) -> Result<shardyfusion::WriteOptions> {
    parse::<config::Options>("write options", options_json)?.to_rust()
}

fn value(value_json: &str) -> Result<shardyfusion::writer::ValueSpec> {
    Ok(parse::<config::Value>("value spec", value_json)?.to_rust())
}

/// The result of a write as JSON (what `shardyfusion_rs.BuildResult` is made from).
fn result_json(r: &BuildResult) -> String {
    serde_json::json!({
        "run_id": r.run_id,
        "num_dbs": r.num_dbs,
        "manifest_ref": r.manifest_ref.manifest_ref,
        "rows_written": r.stats.rows_written,
        "duplicate_keys": r.stats.duplicate_keys,
        "num_winners": r.stats.num_winners,
        "num_attempt_results": r.stats.num_attempt_results,
        "durations_ms": {
            "sharding": r.stats.durations.sharding_ms,
            "write": r.stats.durations.write_ms,
            "manifest": r.stats.durations.manifest_ms,
            "total": r.stats.durations.total_ms,
        },
        "winners": r.winners.iter().map(|w| serde_json::json!({
            "db_id": w.db_id,
            "db_url": w.db_url,
            "row_count": w.row_count,
        })).collect::<Vec<_>>(),
        "run_record_ref": r.run_record_ref,
    })
    .to_string()
}

/// A writer for one configuration: whole writes, and the engine seam.
#[pyclass(module = "shardyfusion_rs._native", frozen)]
pub(crate) struct Writer {
    config: String,
    inner: Arc<ShardedWriter>,
}

#[pymethods]
impl Writer {
    #[new]
    fn new(config: String) -> PyResult<Self> {
        let inner = Arc::new(writer(&config).py()?);
        Ok(Writer { config, inner })
    }

    /// Write a whole stream of Arrow record batches (a `pyarrow.RecordBatchReader` or anything
    /// with `__arrow_c_stream__`) and publish it; returns the result as JSON.
    fn write_arrow(
        &self,
        py: Python<'_>,
        stream: PyArrowType<RecordBatchStreamReader>,
        key_col: &str,
        value_spec: &str,
        write_options: &str,
    ) -> PyResult<String> {
        let w = self.inner.clone();
        let run = async move {
            let value = value(value_spec)?;
            let opts = options(write_options)?;
            w.write_arrow(stream.0, key_col, &value, &opts).await
        };
        block_on(py, run).map(|r| result_json(&r)).py()
    }

    /// Fix a build on the driver (run id, shard count, routing) and start its run record.
    fn begin(&self, py: Python<'_>, key_col: &str, write_options: &str) -> PyResult<EngineBuild> {
        let w = self.inner.clone();
        let run = async move { w.begin(key_col, &options(write_options)?).await };
        let build = block_on(py, run).py()?;
        Ok(EngineBuild {
            writer: self.inner.clone(),
            plan: build.plan().to_json(),
            build: Mutex::new(Some(build)),
        })
    }

    /// The shard of every row of `batch` under the plan, as a `pyarrow.UInt32Array`.
    fn route_batch<'py>(
        &self,
        py: Python<'py>,
        plan: &str,
        batch: PyArrowType<RecordBatch>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let routed = py
            .detach(|| -> Result<_> {
                let plan = BuildPlan::from_json(plan)?;
                self.inner.route_batch(&plan, &batch.0)
            })
            .py()?;
        routed.into_data().to_pyarrow(py)
    }

    /// Write the rows of one engine partition into `shards` (the shards this task owns; every
    /// one gets a result, empty ones included). Returns the results as JSON texts.
    fn write_partition(
        &self,
        py: Python<'_>,
        plan: &str,
        shards: Vec<u32>,
        stream: PyArrowType<RecordBatchStreamReader>,
        value_spec: &str,
        write_options: &str,
    ) -> PyResult<Vec<String>> {
        let w = self.inner.clone();
        let run = async move {
            let plan = BuildPlan::from_json(plan)?;
            let value = value(value_spec)?;
            let opts = options(write_options)?;
            let batches = futures::stream::iter(stream.0);
            w.write_partition(&plan, &shards, batches, &value, &opts)
                .await
        };
        block_on(py, run)
            .map(|rs| rs.iter().map(ShardResult::to_json).collect())
            .py()
    }

    /// The configuration this writer was made from (JSON), for pickling.
    #[getter]
    fn config(&self) -> &str {
        &self.config
    }
}

/// A build in progress on an engine driver (keeps its run record alive until commit/abort).
#[pyclass(module = "shardyfusion_rs._native", frozen)]
pub(crate) struct EngineBuild {
    writer: Arc<ShardedWriter>,
    plan: String,
    build: Mutex<Option<Build>>,
}

impl EngineBuild {
    fn take(&self) -> PyResult<Build> {
        self.build
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .ok_or_else(|| {
                to_py(Error::config(
                    "this build was already committed or aborted: begin a new one",
                ))
            })
    }
}

#[pymethods]
impl EngineBuild {
    /// The build plan as JSON: give it to every task.
    #[getter]
    fn plan(&self) -> &str {
        &self.plan
    }

    /// Commit the results (JSON texts from `write_partition`): winners, coverage, manifest,
    /// `_CURRENT`, loser cleanup, run record. Returns the write result as JSON.
    fn commit(&self, py: Python<'_>, results: Vec<String>) -> PyResult<String> {
        let build = self.take()?;
        let w = self.writer.clone();
        let run = async move {
            let parsed: Result<Vec<ShardResult>> =
                results.iter().map(|r| ShardResult::from_json(r)).collect();
            match parsed {
                Ok(results) => w.commit(build, results).await,
                Err(e) => {
                    w.abort(build, &e).await;
                    Err(e)
                }
            }
        };
        block_on(py, run).map(|r| result_json(&r)).py()
    }

    /// Give the build up: the run record says `failed` with `message`; `_CURRENT` is untouched.
    fn abort(&self, py: Python<'_>, message: &str) -> PyResult<()> {
        let Ok(build) = self.take() else {
            return Ok(());
        };
        let w = self.writer.clone();
        let err = Error::new(ErrorKind::ShardWrite, message.to_owned());
        block_on(py, async move {
            w.abort(build, &err).await;
            Ok(())
        })
        .py()
    }
}
