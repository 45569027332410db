"""What every engine writer shares: the driver's build (begin, commit, abort) and the task
side (route a batch, write the shards of a partition), both in Rust.

The driver fixes the build (run id, shard count, routing) before any task runs; tasks route
rows with the same Rust routing the readers use, write whole shards through the Rust shard
writer and return small JSON results; the driver's one commit picks winners, checks
coverage, publishes manifest then ``_CURRENT``, deletes losing attempts and ends the run
record. A failure anywhere before the commit leaves ``_CURRENT`` where it was.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import pyarrow as pa

from . import _native
from .config import HashShardedWriteConfig, WriteConfig
from .values import ValueSpec
from .writer import BuildResult, write_options_json

#: The column engines carry each row's shard id in between routing and writing.
SHARD_COL = "_shardyfusion_shard"

_writers: dict[tuple[int, str], Any] = {}


def _writer(config_json: str) -> Any:
    """This process's native writer for a configuration (created once per process)."""
    key = (os.getpid(), config_json)
    w = _writers.get(key)
    if w is None:
        w = _writers[key] = _native.Writer(config_json)
    return w


@dataclass(frozen=True)
class Task:
    """Everything an engine task needs (small, picklable)."""

    config_json: str
    plan: str
    key_col: str
    value_spec: ValueSpec
    options_json: str

    def route(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """``batch`` with its rows' shard ids in ``SHARD_COL`` (int32)."""
        shards = _writer(self.config_json).route_batch(self.plan, batch)
        return batch.append_column(SHARD_COL, shards.cast(pa.int32()))

    def write(self, shards: list[int], batches: Iterable[pa.RecordBatch]) -> list[str]:
        """Write the rows of one partition into ``shards`` (this task's shards; each gets a
        result, empty ones included); returns the results as JSON texts."""
        stream = _stream(self._prepared(batches))
        return _writer(self.config_json).write_partition(
            self.plan, shards, stream, self.value_spec.to_json(), self.options_json
        )

    def _prepared(self, batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for b in batches:
            if b.num_rows == 0:
                continue
            i = b.schema.get_field_index(SHARD_COL)
            if i >= 0:
                b = b.remove_column(i)
            yield self.value_spec.encode_batch(b)


def _stream(batches: Iterator[pa.RecordBatch]) -> pa.RecordBatchReader:
    first = next(batches, None)
    if first is None:
        return pa.RecordBatchReader.from_batches(pa.schema([]), iter(()))

    def chained() -> Iterator[pa.RecordBatch]:
        yield first
        yield from batches

    return pa.RecordBatchReader.from_batches(first.schema, chained())


class Job:
    """A build on the driver: ``begin`` before any task, then ``commit`` or ``abort``."""

    def __init__(
        self,
        config: WriteConfig,
        *,
        key_col: str,
        value_spec: ValueSpec,
        sort_within_partitions: bool = False,
        max_writes_per_second: float | None = None,
        max_write_bytes_per_second: float | None = None,
        expected_rows: int | None = None,
        on_duplicate: str = "keep_last",
    ):
        self.config_json = config.to_json()
        self.key_col = key_col
        self.value_spec = value_spec
        self.options_json = write_options_json(
            sort_within_partitions=sort_within_partitions,
            max_writes_per_second=max_writes_per_second,
            max_write_bytes_per_second=max_write_bytes_per_second,
            expected_rows=expected_rows,
            on_duplicate=on_duplicate,  # type: ignore[arg-type]
        )
        self._build = _native.Writer(self.config_json).begin(key_col, self.options_json)
        self.plan: str = self._build.plan
        self.num_dbs: int = json.loads(self.plan)["num_dbs"]

    def task(self) -> Task:
        """What to ship to the tasks."""
        return Task(self.config_json, self.plan, self.key_col, self.value_spec, self.options_json)

    def commit(self, results: list[str]) -> BuildResult:
        """Publish the snapshot from every task's results."""
        return BuildResult.from_json(self._build.commit(list(results)))

    def abort(self, error: BaseException) -> None:
        """Give the build up (the run record says why); ``_CURRENT`` is untouched."""
        self._build.abort(f"{type(error).__name__}: {error}")


@contextlib.contextmanager
def building(
    columns: Iterable[str],
    config: WriteConfig,
    *,
    key_col: str,
    value_spec: ValueSpec,
    verify_routing: bool = True,
    **options: Any,
) -> Iterator[Job]:
    """Check the input's columns, begin a build, and on any failure abort it (``_CURRENT``
    untouched) and raise the task's own ``shardyfusion_rs`` exception when an engine wrapped
    it. ``verify_routing`` is always in force: each task re-routes every row it writes."""
    del verify_routing
    check_columns(columns, config, key_col, value_spec)
    job = Job(config, key_col=key_col, value_spec=value_spec, **options)
    try:
        yield job
    except BaseException as e:
        job.abort(e)
        typed = typed_task_error(e)
        if typed is not None and not isinstance(e, type(typed)):
            raise typed from e
        raise


def single_db(write_sharded: Callable[..., BuildResult], what: str) -> Callable[..., BuildResult]:
    """An engine's ``write_single_db`` from its ``write_sharded``."""

    def write_single_db(
        data: Any,
        config: WriteConfig,
        *,
        key_col: str,
        value_spec: ValueSpec,
        sort_keys: bool = True,
        **options: Any,
    ) -> BuildResult:
        return write_sharded(
            data,
            config._single_db(),
            key_col=key_col,
            value_spec=value_spec,
            sort_within_partitions=sort_keys,
            **options,
        )

    write_single_db.__doc__ = (
        f"Write a {what} into one database (``num_dbs`` = 1, HASH; rows sorted by key within "
        "each batch when ``sort_keys``) and publish it."
    )
    return write_single_db


def check_columns(
    columns: Iterable[str], config: WriteConfig, key_col: str, value_spec: ValueSpec
) -> None:
    """Fail on the driver, before any task runs, when a column the write needs is missing."""
    from .config import CelShardedWriteConfig
    from .errors import ConfigValidationError

    have = list(columns)
    need = [(key_col, "key")]
    if value_spec.kind == "binary_col" and value_spec.column:
        need.append((value_spec.column, "value"))
    if value_spec.kind == "json_cols" and value_spec.columns:
        need += [(c, "value JSON") for c in value_spec.columns]
    if isinstance(config, CelShardedWriteConfig):
        need += [(c, "CEL routing") for c in config.cel_columns if c != key_col and c != "key"]
    for name, role in need:
        if name not in have:
            raise ConfigValidationError(
                f"the {role} column {name!r} is not in the input; its columns are {have}"
            )


def typed_task_error(e: BaseException) -> BaseException | None:
    """The shardyfusion_rs exception a task raised, rebuilt on the driver from the engine's
    wrapper (engines report task failures as their own exception types with the task's
    traceback in the message)."""
    import re

    from . import errors

    text = str(e)
    found = re.findall(r"shardyfusion_rs\.errors\.(\w+Error): ([^\n]*)", text)
    if not found:
        return None
    name, message = found[-1]
    cls = getattr(errors, name, None)
    if not (isinstance(cls, type) and issubclass(cls, errors.ShardyfusionError)):
        return None
    return cls(message)


def needs_row_count(config: WriteConfig) -> bool:
    """Whether the shard count comes from the row count (``max_keys_per_shard``)."""
    return (
        isinstance(config, HashShardedWriteConfig)
        and config.num_dbs is None
        and config.max_keys_per_shard is not None
    )
