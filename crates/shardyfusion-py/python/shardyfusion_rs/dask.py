"""Build a snapshot from a Dask DataFrame: rows are routed in Rust per partition (as Arrow),
``set_index`` on the shard id with one division per shard puts shard ``i`` exactly in
partition ``i``, each partition is written by the Rust shard writer in a worker, and the
driver commits once."""

from __future__ import annotations

from typing import Any, Literal

import pyarrow as pa

from ._engine import SHARD_COL, Task, building, needs_row_count, single_db
from .config import WriteConfig
from .values import ValueSpec
from .writer import BuildResult


def _route(pdf: Any, task: Task) -> Any:
    import numpy as np

    if len(pdf) == 0:
        return pdf.assign(**{SHARD_COL: np.zeros(0, dtype=np.int32)})
    batch = pa.RecordBatch.from_pandas(pdf, preserve_index=False)
    shards = task.route(batch).column(SHARD_COL).to_numpy()
    return pdf.assign(**{SHARD_COL: shards})


def _write(pdf: Any, task: Task, partition_info: Any = None) -> Any:
    import pandas as pd

    shard = partition_info["number"] if partition_info else None
    if shard is None:
        return pd.DataFrame({"result": pd.Series([], dtype=object)})
    pdf = pdf.reset_index(drop=True)
    batches = [pa.RecordBatch.from_pandas(pdf, preserve_index=False)] if len(pdf) else []
    results = task.write([shard], batches)
    return pd.DataFrame({"result": pd.Series(results, dtype=object)})


def write_sharded(
    ddf: Any,
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
    """Write a Dask DataFrame into ``config``'s shards and publish the snapshot (on the
    current Dask client, or the default scheduler). Every row is re-routed in the worker that
    writes it (``verify_routing`` is always in force). Raises with ``_CURRENT`` unchanged."""
    import numpy as np
    import pandas as pd

    if expected_rows is None and needs_row_count(config):
        expected_rows = int(ddf.shape[0].compute())
    with building(
        list(ddf.columns),
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
        meta = ddf._meta.assign(**{SHARD_COL: np.zeros(0, dtype=np.int32)})
        routed = ddf.map_partitions(_route, task, meta=meta)
        n = job.num_dbs
        by_shard = routed.set_index(SHARD_COL, divisions=list(range(n)) + [n])
        written = by_shard.map_partitions(
            _write, task, meta=pd.DataFrame({"result": pd.Series([], dtype=object)})
        )
        results = [str(r) for r in written.compute()["result"].tolist()]
        return job.commit(results)


write_single_db = single_db(write_sharded, "Dask DataFrame")
