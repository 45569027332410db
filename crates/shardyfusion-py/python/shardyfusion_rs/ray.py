"""Build a snapshot from a Ray Dataset: rows are routed in Rust on Arrow batches
(``map_batches``), grouped by shard (``groupby(...).map_groups``) so that each shard is
written whole by one task through the Rust shard writer, and committed once on the driver.

Shards no row routes to form no group: the driver records them as empty, after checking that
the groups' row counts add up to the rows routed (so a lost group cannot pass as empty).
"""

from __future__ import annotations

import json
from typing import Any, Literal

import pyarrow as pa

from ._engine import SHARD_COL, Task, building, needs_row_count, single_db
from .config import WriteConfig
from .errors import ShardCoverageError
from .values import ValueSpec
from .writer import BuildResult


def _route(batch: pa.Table, task: Task) -> pa.Table:
    out = [task.route(b) for b in batch.to_batches() if b.num_rows]
    if not out:
        return batch.append_column(SHARD_COL, pa.array([], type=pa.int32()))
    return pa.Table.from_batches(out)


def _write(group: pa.Table, task: Task) -> pa.Table:
    shard = int(group.column(SHARD_COL)[0].as_py())
    results = task.write([shard], group.to_batches())
    return pa.table({"result": pa.array(results, type=pa.string())})


def write_sharded(
    ds: Any,
    config: WriteConfig,
    *,
    key_col: str,
    value_spec: ValueSpec,
    sort_within_partitions: bool = False,
    max_writes_per_second: float | None = None,
    max_write_bytes_per_second: float | None = None,
    verify_routing: bool = True,
    expected_rows: int | None = None,
    on_duplicate: Literal["keep_last", "error"] = "keep_last",
) -> BuildResult:
    """Write a Ray Dataset into ``config``'s shards and publish the snapshot. Every row is
    re-routed in the task that writes it (``verify_routing`` is always in force). Raises with
    ``_CURRENT`` unchanged."""
    if expected_rows is None and needs_row_count(config):
        expected_rows = ds.count()
    with building(
        list(ds.schema().names),
        config,
        key_col=key_col,
        value_spec=value_spec,
        verify_routing=verify_routing,
        sort_within_partitions=sort_within_partitions,
        max_writes_per_second=max_writes_per_second,
        max_write_bytes_per_second=max_write_bytes_per_second,
        expected_rows=expected_rows,
        on_duplicate=on_duplicate,
    ) as job:
        task = job.task()
        routed = ds.map_batches(
            _route, fn_kwargs={"task": task}, batch_format="pyarrow", zero_copy_batch=True
        ).materialize()
        routed_rows = routed.count()
        written = routed.groupby(SHARD_COL).map_groups(
            _write, fn_kwargs={"task": task}, batch_format="pyarrow"
        )
        results = [str(r["result"]) for r in written.take_all()]
        covered = {json.loads(r)["db_id"] for r in results}
        written_rows = sum(json.loads(r)["row_count"] for r in results)
        if written_rows < routed_rows:
            raise ShardCoverageError(
                f"the shard groups hold {written_rows} rows but {routed_rows} were routed"
            )
        missing = [s for s in range(job.num_dbs) if s not in covered]
        if missing:
            results.extend(task.write(missing, []))
        return job.commit(results)


write_single_db = single_db(write_sharded, "Ray Dataset")
