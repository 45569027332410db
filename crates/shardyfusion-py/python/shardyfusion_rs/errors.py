"""Exceptions raised by shardyfusion_rs: one class per error kind, one base class.

Every exception carries ``retryable`` (whether trying the same call again may succeed) and
``PublishCurrentError`` carries ``manifest_ref`` (the manifest that was written but not made
current). The names are the Python shardyfusion library's.
"""

from __future__ import annotations


class ShardyfusionError(Exception):
    """Base class of every shardyfusion_rs error."""

    retryable: bool = False
    manifest_ref: str | None = None


class ConfigValidationError(ShardyfusionError, ValueError):
    """Invalid configuration, option, input row, key, routing context or CEL expression."""


class DbAdapterError(ShardyfusionError):
    """A shard database could not be opened or read."""


class ManifestBuildError(ShardyfusionError):
    """Building the manifest failed."""


class ManifestParseError(ShardyfusionError):
    """A pointer or manifest is invalid (or names a URL outside the trusted boundary)."""


class ManifestStoreError(ShardyfusionError):
    """The manifest store could not be reached or queried."""

    retryable = True


class PoolExhaustedError(ShardyfusionError):
    """No read slot became free in time."""

    retryable = True


class PublishCurrentError(ShardyfusionError):
    """The manifest was written but ``_CURRENT`` was not moved to it."""

    retryable = True


class PublishManifestError(ShardyfusionError):
    """The manifest could not be published; nothing became current."""

    retryable = True


class ReaderStateError(ShardyfusionError):
    """The reader is closed or not open, or nothing has been published."""


class S3TransientError(ShardyfusionError):
    """Object storage kept failing transiently through the retry policy."""

    retryable = True


class ShardAssignmentError(ShardyfusionError):
    """A row routed to a shard it must not be in (or routing verification failed)."""


class ShardCoverageError(ShardyfusionError):
    """Shard results are missing or out of range at commit."""


class ShardWriteError(ShardyfusionError):
    """Writing a shard failed."""

    retryable = True


__all__ = [
    "ShardyfusionError",
    "ConfigValidationError",
    "DbAdapterError",
    "ManifestBuildError",
    "ManifestParseError",
    "ManifestStoreError",
    "PoolExhaustedError",
    "PublishCurrentError",
    "PublishManifestError",
    "ReaderStateError",
    "S3TransientError",
    "ShardAssignmentError",
    "ShardCoverageError",
    "ShardWriteError",
]
