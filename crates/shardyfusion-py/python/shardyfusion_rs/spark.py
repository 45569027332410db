"""Build a snapshot from a Spark DataFrame: rows are routed in Rust on Arrow batches
(``mapInArrow``), shuffled so that partition ``i`` holds exactly shard ``i`` (one shard per
task), written by the Rust shard writer inside the tasks, and committed once on the driver.

Spark retries and speculative copies of a task are safe: every run of a task claims its own
attempt number, the commit keeps one winner per shard and deletes the rest.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Literal, Mapping

import pyarrow as pa

from ._engine import SHARD_COL, Job, check_columns, needs_row_count, typed_task_error
from .config import WriteConfig
from .values import ValueSpec
from .writer import BuildResult

_RESULT_SCHEMA = pa.schema([("result", pa.string())])


@contextlib.contextmanager
def _conf(spark: Any, overrides: Mapping[str, str] | None) -> Iterator[None]:
    saved = {}
    for k, v in (overrides or {}).items():
        saved[k] = spark.conf.get(k, None)
        spark.conf.set(k, v)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                spark.conf.unset(k)
            else:
                spark.conf.set(k, v)


#: The column Spark repartitions on: for each shard, an int Spark's own hash sends to the
#: partition with the shard's number, so partition ``i`` holds exactly shard ``i``.
PART_COL = "_shardyfusion_part"


def _partition_keys(spark: Any, num_dbs: int) -> list[int]:
    """For each shard ``s``, an int ``k`` with ``pmod(hash(k), num_dbs) == s`` (Spark's
    Murmur3 hash of an int column, as ``repartition(num_dbs, col)`` uses), found by Spark."""
    from pyspark.sql import functions as F

    found: dict[int, int] = {}
    span = 32 * num_dbs
    start = 0
    while len(found) < num_dbs:
        ids = spark.range(start, start + span).select(F.col("id").cast("int").alias("k"))
        placed = ids.select("k", F.expr(f"pmod(hash(k), {num_dbs})").alias("p"))
        for row in placed.groupBy("p").agg(F.min("k").alias("k")).collect():
            found.setdefault(row["p"], row["k"])
        start += span
    return [found[s] for s in range(num_dbs)]


def write_sharded(
    df: Any,
    config: WriteConfig,
    *,
    key_col: str,
    value_spec: ValueSpec,
    sort_within_partitions: bool = False,
    max_writes_per_second: float | None = None,
    max_write_bytes_per_second: float | None = None,
    verify_routing: bool = True,
    spark_conf_overrides: Mapping[str, str] | None = None,
    cache_input: bool = False,
    storage_level: Any = None,
    expected_rows: int | None = None,
    on_duplicate: Literal["keep_last", "error"] = "keep_last",
) -> BuildResult:
    """Write a Spark DataFrame into ``config``'s shards and publish the snapshot.

    ``key_col`` holds the keys; ``value_spec`` makes the values (``binary_col`` and
    ``json_cols`` run in Rust; ``callable_encoder`` runs per row in the Python workers).
    ``verify_routing`` is always in force: each task re-routes every row it writes and a row
    outside the task's shards is a ``ShardAssignmentError``. ``cache_input`` persists the
    input (``storage_level``, default memory and disk) when it is read twice (a row count for
    ``max_keys_per_shard``). Raises on failure with ``_CURRENT`` unchanged.
    """
    del verify_routing  # every row is verified in the task (see above)
    from pyspark.sql.types import IntegerType, StructField, StructType

    check_columns(df.columns, config, key_col, value_spec)
    spark = df.sparkSession
    with _conf(spark, spark_conf_overrides):
        if cache_input:
            from pyspark import StorageLevel

            df = df.persist(storage_level or StorageLevel.MEMORY_AND_DISK)
        if expected_rows is None and needs_row_count(config):
            expected_rows = df.count()
        job = Job(
            config,
            key_col=key_col,
            value_spec=value_spec,
            sort_within_partitions=sort_within_partitions,
            max_writes_per_second=max_writes_per_second,
            max_write_bytes_per_second=max_write_bytes_per_second,
            expected_rows=expected_rows,
            on_duplicate=on_duplicate,
        )
        try:
            task = job.task()
            keys = pa.array(_partition_keys(spark, job.num_dbs), pa.int32())
            routed_schema = StructType(
                df.schema.fields
                + [
                    StructField(SHARD_COL, IntegerType(), False),
                    StructField(PART_COL, IntegerType(), False),
                ]
            )

            def route(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
                import pyarrow.compute as pc

                for b in batches:
                    routed = task.route(b)
                    part = pc.take(keys, routed.column(SHARD_COL))
                    yield routed.append_column(PART_COL, part)

            from pyspark.sql import functions as F

            routed = df.mapInArrow(route, routed_schema)
            parts = routed.repartition(job.num_dbs, F.col(PART_COL)).drop(PART_COL)

            def write(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
                from pyspark import TaskContext

                ctx = TaskContext.get()
                shards = [ctx.partitionId()] if ctx is not None else []
                results = task.write(shards, batches)
                yield pa.RecordBatch.from_pydict({"result": results}, schema=_RESULT_SCHEMA)

            rows = parts.mapInArrow(write, "result string").collect()
            result = job.commit([r["result"] for r in rows])
        except BaseException as e:
            job.abort(e)
            typed = typed_task_error(e)
            if typed is not None:
                raise typed from e
            raise
        finally:
            if cache_input:
                df.unpersist()
        return result


def write_single_db(
    df: Any,
    config: WriteConfig,
    *,
    key_col: str,
    value_spec: ValueSpec,
    sort_keys: bool = True,
    **options: Any,
) -> BuildResult:
    """Write a Spark DataFrame into one database (``num_dbs`` = 1) and publish it."""
    return write_sharded(
        df,
        config._single_db(),
        key_col=key_col,
        value_spec=value_spec,
        sort_within_partitions=sort_keys,
        **options,
    )
