"""shardyfusion_rs: sharded SlateDB snapshots on object storage, written and read by the Rust
shardyfusion engine.

Write a dataset into N shards and publish it (``write_sharded``; Spark, Dask and Ray in
``shardyfusion_rs.spark``, ``.dask`` and ``.ray``), then read it from any number of services
(``ShardedReader``, ``ConcurrentShardedReader``, ``AsyncShardedReader``).
"""

import os as _os

from . import _native

# Count forks in the child, so runtimes and readers made by the parent are recognised there.
_os.register_at_fork(after_in_child=_native._after_fork_in_child)
from .config import (
    CelShardedWriteConfig,
    Credentials,
    HashShardedWriteConfig,
    ObjectStoreManifest,
    PostgresManifest,
    RetryConfig,
    S3ConnectionOptions,
    SqliteManifest,
    WriteConfig,
)
from .errors import *  # noqa: F403
from .errors import __all__ as _errors
from .reader import (
    AsyncShardedReader,
    ConcurrentShardedReader,
    ReaderHealth,
    ShardDetail,
    ShardedReader,
    SnapshotInfo,
)
from .values import ValueSpec
from .writer import BuildResult, ShardWinner, write_sharded, write_single_db

#: The writer version: engine results from another version are refused at commit.
__version__: str = _native.WRITER_VERSION

__all__ = [
    "AsyncShardedReader",
    "BuildResult",
    "CelShardedWriteConfig",
    "ConcurrentShardedReader",
    "Credentials",
    "HashShardedWriteConfig",
    "ObjectStoreManifest",
    "PostgresManifest",
    "ReaderHealth",
    "RetryConfig",
    "S3ConnectionOptions",
    "ShardDetail",
    "ShardWinner",
    "ShardedReader",
    "SnapshotInfo",
    "SqliteManifest",
    "ValueSpec",
    "WriteConfig",
    "write_sharded",
    "write_single_db",
    *_errors,
]
