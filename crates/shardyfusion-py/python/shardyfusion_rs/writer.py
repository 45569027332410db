"""Single-process writes: a whole dataset, streamed once into a published snapshot."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

from . import _native
from ._inputs import InputErrors, as_stream
from .errors import ShardyfusionError
from .config import WriteConfig
from .values import ValueSpec


@dataclass(frozen=True)
class ShardWinner:
    """The published attempt of one shard."""

    db_id: int
    db_url: str | None
    row_count: int


@dataclass(frozen=True)
class BuildResult:
    """What a successful write published."""

    run_id: str
    num_dbs: int
    manifest_ref: str
    rows_written: int
    duplicate_keys: int
    num_winners: int
    num_attempt_results: int
    durations_ms: dict[str, int]
    winners: list[ShardWinner] = field(default_factory=list)
    run_record_ref: str | None = None

    @staticmethod
    def from_json(text: str) -> "BuildResult":
        """The result the Rust writer returned (JSON text)."""
        d = json.loads(text)
        d["winners"] = [ShardWinner(**w) for w in d["winners"]]
        return BuildResult(**d)


def write_options_json(
    *,
    sort_within_partitions: bool = False,
    max_writes_per_second: float | None = None,
    max_write_bytes_per_second: float | None = None,
    max_total_batched_bytes: int | None = None,
    parallel: bool | None = None,
    expected_rows: int | None = None,
    on_duplicate: Literal["keep_last", "error"] = "keep_last",
) -> str:
    """Per-write options as the JSON the Rust writer reads."""
    return json.dumps(
        {
            "sort_within_partitions": sort_within_partitions,
            "max_writes_per_second": max_writes_per_second,
            "max_write_bytes_per_second": max_write_bytes_per_second,
            "max_total_batched_bytes": max_total_batched_bytes,
            "parallel": parallel,
            "expected_rows": expected_rows,
            "on_duplicate": on_duplicate,
        }
    )


def write_sharded(
    data: Any,
    config: WriteConfig,
    *,
    key_col: str = "key",
    value_spec: ValueSpec | None = None,
    key_fn: Callable[[Any], Any] | None = None,
    value_fn: Callable[[Any], bytes] | None = None,
    sort_within_partitions: bool = False,
    max_writes_per_second: float | None = None,
    max_write_bytes_per_second: float | None = None,
    max_total_batched_bytes: int | None = None,
    parallel: bool | None = None,
    expected_rows: int | None = None,
    on_duplicate: Literal["keep_last", "error"] = "keep_last",
) -> BuildResult:
    """Write ``data`` into ``config.num_dbs`` shards and publish the snapshot.

    ``data`` is a ``pyarrow.Table``, ``RecordBatch`` or ``RecordBatchReader``, a pandas
    DataFrame, anything with ``__arrow_c_stream__`` (polars, DuckDB results…), or an iterable
    of records: ``(key, value)`` pairs, or any objects with ``key_fn`` and ``value_fn``. Tabular
    inputs take ``key_col`` and a ``value_spec``. The input is read once, in Rust, with the GIL
    released; memory stays bounded whatever its size. A failed write raises and leaves
    ``_CURRENT`` where it was.
    """
    errors = InputErrors()
    reader, spec, rows = as_stream(
        data, key_col=key_col, value_spec=value_spec, key_fn=key_fn, value_fn=value_fn, errors=errors
    )
    options = write_options_json(
        sort_within_partitions=sort_within_partitions,
        max_writes_per_second=max_writes_per_second,
        max_write_bytes_per_second=max_write_bytes_per_second,
        max_total_batched_bytes=max_total_batched_bytes,
        parallel=parallel,
        expected_rows=expected_rows if expected_rows is not None else rows,
        on_duplicate=on_duplicate,
    )
    writer = _native.Writer(config.to_json())
    try:
        out = writer.write_arrow(reader, key_col, spec.to_json(), options)
    except ShardyfusionError as e:
        errors.reraise(e)
    return BuildResult.from_json(out)


def write_single_db(
    data: Any,
    config: WriteConfig,
    *,
    key_col: str = "key",
    value_spec: ValueSpec | None = None,
    key_fn: Callable[[Any], Any] | None = None,
    value_fn: Callable[[Any], bytes] | None = None,
    sort_keys: bool = True,
    max_writes_per_second: float | None = None,
    max_write_bytes_per_second: float | None = None,
) -> BuildResult:
    """Write ``data`` into one database (``num_dbs`` = 1, HASH), keys sorted within each
    batch when ``sort_keys``, and publish it."""
    return write_sharded(
        data,
        config._single_db(),
        key_col=key_col,
        value_spec=value_spec,
        key_fn=key_fn,
        value_fn=value_fn,
        sort_within_partitions=sort_keys,
        max_writes_per_second=max_writes_per_second,
        max_write_bytes_per_second=max_write_bytes_per_second,
        parallel=False,
    )


__all__ = ["BuildResult", "ShardWinner", "write_sharded", "write_single_db"]
