"""Readers of published snapshots: ``ShardedReader`` (one thread), ``ConcurrentShardedReader``
(shared by threads; lookups release the GIL) and ``AsyncShardedReader`` (awaitables driven by
the Rust runtime, no thread per call)."""

from __future__ import annotations

import asyncio
import datetime as _dt
from dataclasses import dataclass
from typing import Any, Iterable, Literal, Mapping, Sequence

from . import _native
from .config import Credentials, ManifestStore, S3ConnectionOptions, reader_options_json
from .errors import ConfigValidationError

Key = int | str | bytes
RoutingContext = Mapping[str, int | float | bool | str | bytes]


@dataclass(frozen=True)
class SnapshotInfo:
    """The loaded snapshot."""

    run_id: str
    num_dbs: int
    sharding: str
    created_at: _dt.datetime
    manifest_ref: str
    row_count: int
    key_encoding: str
    hash_algorithm: str


@dataclass(frozen=True)
class ShardDetail:
    """One shard of the loaded snapshot (empty shards have no ``db_url``)."""

    db_id: int
    row_count: int
    min_key: Key | None
    max_key: Key | None
    db_url: str | None


@dataclass(frozen=True)
class ReaderHealth:
    """``healthy``, ``degraded`` (older than the threshold) or ``unhealthy`` (closed)."""

    status: Literal["healthy", "degraded", "unhealthy"]
    manifest_ref: str
    manifest_age: _dt.timedelta
    num_shards: int
    is_closed: bool


def _options(
    s3_prefix: str | None,
    local_root: str | None,
    *,
    manifest_store: ManifestStore | None = None,
    current_pointer_key: str = "_CURRENT",
    manifest_ref: str | None = None,
    credentials: Credentials | None = None,
    credential_provider: Any = None,
    s3_connection_options: S3ConnectionOptions | Mapping[str, Any] | None = None,
    allowed_url_prefixes: Sequence[str] = (),
    max_workers: int | None = None,
    max_concurrency: int | None = None,
    max_fallback_attempts: int | None = None,
    thread_safety: Literal["lock", "pool"] | None = None,
    pool_checkout_timeout: float | None = None,
    cache_bytes: int | None = None,
    metrics_collector: Any = None,
    rate_limiter: Any = None,
) -> str:
    credentials = credentials or credential_provider
    if isinstance(s3_connection_options, Mapping):
        s3_connection_options = dict(s3_connection_options)  # checked with the rest
    for name, value in (("metrics_collector", metrics_collector), ("rate_limiter", rate_limiter)):
        if value is not None:
            raise ConfigValidationError(f"{name} is not supported by shardyfusion_rs readers yet")
    del local_root  # shard data is cached in memory; accepted for compatibility
    return reader_options_json(
        s3_prefix=s3_prefix,
        manifest_store=manifest_store,
        current_pointer_key=current_pointer_key,
        manifest_ref=manifest_ref,
        credentials=credentials,
        s3_connection_options=s3_connection_options,
        allowed_url_prefixes=allowed_url_prefixes,
        max_workers=max_workers,
        max_concurrency=max_concurrency,
        max_fallback_attempts=max_fallback_attempts,
        thread_safety=thread_safety,
        pool_checkout_timeout=pool_checkout_timeout,
        cache_bytes=cache_bytes,
    )


def _seconds(threshold: _dt.timedelta | float | None) -> float | None:
    if isinstance(threshold, _dt.timedelta):
        return threshold.total_seconds()
    return threshold


class _Views:
    """Methods that only look at the loaded snapshot (shared by every reader)."""

    _native: Any

    def route_key(self, key: Key, routing_context: RoutingContext | None = None) -> int:
        """The shard ``key`` routes to."""
        return self._native.route_key(key, routing_context)

    def snapshot_info(self) -> SnapshotInfo:
        """Run id, shard count, sharding, creation time, manifest, row count, key encoding."""
        d = self._native.snapshot_info()
        d["created_at"] = _dt.datetime.fromisoformat(d["created_at"].replace("Z", "+00:00"))
        return SnapshotInfo(**d)

    def shard_details(self) -> list[ShardDetail]:
        """Every shard of the snapshot, ``db_id`` 0 to ``num_dbs - 1``."""
        return [ShardDetail(**d) for d in self._native.shard_details()]

    def health(self, staleness_threshold: _dt.timedelta | float | None = None) -> ReaderHealth:
        """Health; ``degraded`` when the manifest is older than ``staleness_threshold``."""
        d = self._native.health(_seconds(staleness_threshold))
        d["manifest_age"] = _dt.timedelta(seconds=d["manifest_age"])
        return ReaderHealth(**d)

    @property
    def key_encoding(self) -> str:
        """The snapshot's key encoding (``u64be``, ``u32be``, ``utf8``, ``raw``)."""
        return self._native.key_encoding()

    def shard_for_key(self, key: Key, routing_context: RoutingContext | None = None) -> ShardDetail:
        """The shard ``key`` routes to, with its metadata."""
        return self.shard_details()[self.route_key(key, routing_context)]

    def shards_for_keys(
        self, keys: Iterable[Key], routing_context: RoutingContext | None = None
    ) -> dict[Key, ShardDetail]:
        """The shard of each key."""
        details = self.shard_details()
        return {k: details[self.route_key(k, routing_context)] for k in keys}


class ConcurrentShardedReader(_Views):
    """A reader safe to share between threads: lookups run in Rust with the GIL released, so
    threads read in parallel. Opens the current snapshot (or ``manifest_ref``) eagerly."""

    def __init__(self, s3_prefix: str | None = None, local_root: str | None = None, **options: Any):
        self._native = _native.Reader(_options(s3_prefix, local_root, **options))

    def get(self, key: Key, routing_context: RoutingContext | None = None) -> bytes | None:
        """The value of ``key``, or ``None``."""
        return self._native.get(key, routing_context)

    def multi_get(
        self, keys: Iterable[Key], routing_context: RoutingContext | None = None
    ) -> dict[Key, bytes | None]:
        """Values of ``keys`` in one call (one entry per distinct key, in input order)."""
        return self._native.multi_get(list(keys), routing_context)

    def refresh(self) -> bool:
        """Swap to the newest snapshot; ``True`` when it changed. In-flight reads finish on
        the snapshot they started on."""
        return self._native.refresh()

    def close(self) -> None:
        """Close the reader; later calls raise ``ReaderStateError``. Idempotent."""
        self._native.close()

    def __enter__(self) -> "ConcurrentShardedReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ShardedReader(ConcurrentShardedReader):
    """The reader for one thread (the same engine as ``ConcurrentShardedReader``)."""

    def __enter__(self) -> "ShardedReader":
        return self


def _future(loop: asyncio.AbstractEventLoop) -> tuple[asyncio.Future[Any], Any]:
    fut: asyncio.Future[Any] = loop.create_future()

    def settle(ok: bool, value: Any) -> None:
        if fut.done():
            return
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)

    def done(ok: bool, value: Any) -> None:
        loop.call_soon_threadsafe(settle, ok, value)

    return fut, done


class AsyncShardedReader(_Views):
    """A reader for ``asyncio``: ``reader = await AsyncShardedReader.open(...)``; ``get``,
    ``multi_get`` and ``refresh`` are awaitables completed by the Rust runtime."""

    def __init__(self, native: Any):
        self._native = native

    @classmethod
    async def open(
        cls, s3_prefix: str | None = None, local_root: str | None = None, **options: Any
    ) -> "AsyncShardedReader":
        """Open the current snapshot (or ``manifest_ref``)."""
        opts = _options(s3_prefix, local_root, **options)
        loop = asyncio.get_running_loop()
        native = await loop.run_in_executor(None, _native.Reader, opts)
        return cls(native)

    async def get(self, key: Key, routing_context: RoutingContext | None = None) -> bytes | None:
        """The value of ``key``, or ``None``."""
        fut, done = _future(asyncio.get_running_loop())
        self._native.get_async(done, key, routing_context)
        return await fut

    async def multi_get(
        self, keys: Iterable[Key], routing_context: RoutingContext | None = None
    ) -> dict[Key, bytes | None]:
        """Values of ``keys``; shard groups are read concurrently."""
        fut, done = _future(asyncio.get_running_loop())
        self._native.multi_get_async(done, list(keys), routing_context)
        return await fut

    async def refresh(self) -> bool:
        """Swap to the newest snapshot; ``True`` when it changed."""
        fut, done = _future(asyncio.get_running_loop())
        self._native.refresh_async(done)
        return await fut

    async def close(self) -> None:
        """Close the reader; idempotent."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._native.close)

    async def __aenter__(self) -> "AsyncShardedReader":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
