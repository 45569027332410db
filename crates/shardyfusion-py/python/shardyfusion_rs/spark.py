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

from ._engine import SHARD_COL, Task, building, needs_row_count, single_db
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


#: The column Spark repartitions on: for each shard, an int Spark's own hash (Murmur3, seed
#: 42, as ``repartition(n, col)`` uses) sends to the partition with the shard's number, so
#: partition ``i`` holds exactly shard ``i``.
PART_COL = "_shardyfusion_part"


_M32 = 0xFFFFFFFF


def _rotl32(x: int, r: int) -> int:
    return ((x << r) | (x >> (32 - r))) & _M32


def spark_int_partition(value: int, num_partitions: int) -> int:
    """The partition Spark's ``repartition(num_partitions, col)`` gives an int ``value``:
    ``pmod(Murmur3_x86_32.hashInt(value, 42), num_partitions)``."""
    k1 = (value & _M32) * 0xCC9E2D51 & _M32
    k1 = _rotl32(k1, 15) * 0x1B873593 & _M32
    h1 = 42 ^ k1
    h1 = (_rotl32(h1, 13) * 5 + 0xE6546B64) & _M32
    h1 ^= 4
    h1 ^= h1 >> 16
    h1 = h1 * 0x85EBCA6B & _M32
    h1 ^= h1 >> 13
    h1 = h1 * 0xC2B2AE35 & _M32
    h1 ^= h1 >> 16
    signed = h1 - (1 << 32) if h1 & 0x80000000 else h1
    return signed % num_partitions


def _partition_keys(num_dbs: int) -> list[int]:
    """For each shard ``s``, the smallest non-negative int Spark places in partition ``s``."""
    found: dict[int, int] = {}
    k = 0
    while len(found) < num_dbs:
        found.setdefault(spark_int_partition(k, num_dbs), k)
        k += 1
    return [found[s] for s in range(num_dbs)]


def _routing_columns(columns: list[str], config: WriteConfig, key_col: str) -> list[str]:
    """The columns routing reads: the key, and CEL's columns that the input has."""
    from .config import CelShardedWriteConfig

    out = [key_col]
    if isinstance(config, CelShardedWriteConfig):
        out += [c for c in config.cel_columns if c in columns and c not in out]
    return out


def _placed(df: Any, task: Task, keys: pa.Array, routing_columns: list[str]) -> Any:
    """``df`` with ``PART_COL``: the partition key of each row's shard. Spark 4.1+ evaluates
    it as an Arrow UDF over the routing columns only (the rest of each row stays in the
    JVM); older Spark sends whole rows through ``mapInArrow``."""
    import pyarrow.compute as pc
    from pyspark.sql import functions as F
    from pyspark.sql.types import IntegerType, StructField, StructType

    if hasattr(F, "arrow_udf"):

        def part_of(*arrays: pa.Array) -> pa.Array:
            batch = pa.RecordBatch.from_arrays(list(arrays), names=routing_columns)
            return pc.take(keys, task.route(batch).column(SHARD_COL))

        udf = F.arrow_udf(part_of, IntegerType(), F.ArrowUDFType.SCALAR)
        return df.withColumn(PART_COL, udf(*[F.col(c) for c in routing_columns]))

    schema = StructType(
        df.schema.fields
        + [
            StructField(SHARD_COL, IntegerType(), False),
            StructField(PART_COL, IntegerType(), False),
        ]
    )

    def route(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for b in batches:
            routed = task.route(b)
            yield routed.append_column(PART_COL, pc.take(keys, routed.column(SHARD_COL)))

    return df.mapInArrow(route, schema).drop(SHARD_COL)


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
    from pyspark.sql import functions as F

    spark = df.sparkSession
    with _conf(spark, spark_conf_overrides), contextlib.ExitStack() as stack:
        if cache_input:
            from pyspark import StorageLevel

            df = df.persist(storage_level or StorageLevel.MEMORY_AND_DISK)
            stack.callback(df.unpersist)
        if expected_rows is None and needs_row_count(config):
            expected_rows = df.count()
        job = stack.enter_context(
            building(
                df.columns,
                config,
                key_col=key_col,
                value_spec=value_spec,
                verify_routing=verify_routing,
                sort_within_partitions=sort_within_partitions,
                max_writes_per_second=max_writes_per_second,
                max_write_bytes_per_second=max_write_bytes_per_second,
                expected_rows=expected_rows,
                on_duplicate=on_duplicate,
            )
        )
        task = job.task()
        keys = pa.array(_partition_keys(job.num_dbs), pa.int32())
        parts = _placed(df, task, keys, _routing_columns(df.columns, config, key_col))
        parts = parts.repartition(job.num_dbs, F.col(PART_COL)).drop(PART_COL)

        def write(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
            from pyspark import TaskContext

            ctx = TaskContext.get()
            shards = [ctx.partitionId()] if ctx is not None else []
            results = task.write(shards, batches)
            yield pa.RecordBatch.from_pydict({"result": results}, schema=_RESULT_SCHEMA)

        rows = parts.mapInArrow(write, "result string").collect()
        return job.commit([r["result"] for r in rows])


write_single_db = single_db(write_sharded, "Spark DataFrame")
