"""Configuration objects: where a snapshot lives, how it is sharded, how storage is reached.

The names follow the Python shardyfusion library. Every object is a frozen dataclass that
pickles, so engine drivers can ship it to executors.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Literal, Sequence, Union

KeyEncoding = Literal["u64be", "u32be", "utf8", "raw"]


@dataclass(frozen=True)
class Credentials:
    """Static S3 credentials (without them the default chain is used: environment, web
    identity, container and instance metadata)."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class S3ConnectionOptions:
    """How to reach an S3-compatible endpoint (the Python library's option names)."""

    endpoint_url: str | None = None
    region_name: str | None = None
    addressing_style: Literal["auto", "path", "virtual"] | None = None
    signature_version: str | None = None
    verify_ssl: bool | str | None = None
    connect_timeout: float | None = None
    read_timeout: float | None = None
    max_attempts: int | None = None
    anonymous: bool = False


@dataclass(frozen=True)
class ObjectStoreManifest:
    """Manifests and the ``_CURRENT`` pointer as objects under a prefix (the default: the
    write's ``s3_prefix``)."""

    prefix: str | None = None
    pointer_key: str = "_CURRENT"
    unconditional_pointer_writes: bool = False

    def _spec(self, default_prefix: str | None) -> dict[str, Any]:
        prefix = self.prefix or default_prefix
        if not prefix:
            from .errors import ConfigValidationError

            raise ConfigValidationError("ObjectStoreManifest needs a prefix (or an s3_prefix)")
        return {
            "backend": "object_store",
            "prefix": prefix,
            "pointer_key": self.pointer_key,
            "unconditional_pointer_writes": self.unconditional_pointer_writes,
        }


@dataclass(frozen=True)
class PostgresManifest:
    """Manifests and the pointer in PostgreSQL tables."""

    dsn: str = field(repr=False)
    table_name: str | None = None
    ensure_table: bool | None = None

    def _spec(self, default_prefix: str | None) -> dict[str, Any]:
        return {
            "backend": "postgres",
            "dsn": self.dsn,
            "table_name": self.table_name,
            "ensure_table": self.ensure_table,
        }


@dataclass(frozen=True)
class SqliteManifest:
    """Manifests and the pointer in a SQLite file."""

    path: str
    table_name: str | None = None

    def _spec(self, default_prefix: str | None) -> dict[str, Any]:
        return {"backend": "sqlite", "path": str(self.path), "table_name": self.table_name}


ManifestStore = Union[ObjectStoreManifest, PostgresManifest, SqliteManifest]


@dataclass(frozen=True)
class RetryConfig:
    """Shard retries: each retry is a new attempt at a new URL."""

    max_retries: int = 3
    initial_backoff_s: float = 1.0
    backoff_multiplier: float = 2.0


def _storage(credentials: Any, s3: Any) -> dict[str, Any]:
    from .errors import ConfigValidationError

    if credentials is not None and not isinstance(credentials, Credentials):
        raise ConfigValidationError(
            f"credentials must be shardyfusion_rs.Credentials, got {type(credentials).__name__}; "
            "without them the default AWS chain is used"
        )
    if isinstance(s3, dict):
        try:
            s3 = S3ConnectionOptions(**s3)
        except TypeError as e:
            raise ConfigValidationError(f"s3_connection_options: {e}") from None
    if s3 is not None and not isinstance(s3, S3ConnectionOptions):
        raise ConfigValidationError(
            f"s3_connection_options must be S3ConnectionOptions or a dict, got {type(s3).__name__}"
        )
    return {
        "credentials": dataclasses.asdict(credentials) if credentials else None,
        "s3_connection_options": dataclasses.asdict(s3) if s3 else None,
    }


@dataclass(frozen=True, kw_only=True)
class WriteConfig:
    """What every write needs: where the snapshot goes and how storage is reached."""

    s3_prefix: str
    num_dbs: int | None = None
    key_encoding: KeyEncoding = "u64be"
    batch_size: int | None = None
    run_id: str | None = None
    shard_prefix: str | None = None
    local_root: str | None = None
    custom_manifest_fields: dict[str, Any] | None = None
    manifest_store: ManifestStore | None = None
    credentials: Credentials | None = None
    #: The Python library's name for ``credentials`` (static keys only).
    credential_provider: Credentials | None = None
    s3_connection_options: S3ConnectionOptions | None = None
    shard_retry: RetryConfig | None = None

    def _sharding(self) -> dict[str, Any]:
        return {"strategy": "hash", "max_keys_per_shard": None}

    def to_json(self) -> str:
        """The configuration as the JSON the Rust writer reads."""
        out: dict[str, Any] = {
            "s3_prefix": self.s3_prefix,
            "num_dbs": self.num_dbs,
            "key_encoding": self.key_encoding,
            "batch_size": self.batch_size,
            "sharding": self._sharding(),
            "run_id": self.run_id,
            "shard_prefix": self.shard_prefix,
            "local_root": None if self.local_root is None else str(self.local_root),
            "custom_manifest_fields": self.custom_manifest_fields,
            "manifest_store": (
                self.manifest_store._spec(self.s3_prefix) if self.manifest_store else None
            ),
            "shard_retry": dataclasses.asdict(self.shard_retry) if self.shard_retry else None,
        }
        out.update(
            _storage(self.credentials or self.credential_provider, self.s3_connection_options)
        )
        return json.dumps(out)

    def _single_db(self) -> "WriteConfig":
        return dataclasses.replace(self, num_dbs=1)


@dataclass(frozen=True, kw_only=True)
class HashShardedWriteConfig(WriteConfig):
    """HASH sharding: xxh3_64 of the encoded key modulo ``num_dbs`` (or ``num_dbs`` chosen
    from the row count and ``max_keys_per_shard``)."""

    max_keys_per_shard: int | None = None

    def _sharding(self) -> dict[str, Any]:
        return {"strategy": "hash", "max_keys_per_shard": self.max_keys_per_shard}

    def _single_db(self) -> "WriteConfig":
        return dataclasses.replace(self, num_dbs=1, max_keys_per_shard=None)


@dataclass(frozen=True, kw_only=True)
class CelShardedWriteConfig(WriteConfig):
    """CEL sharding: ``cel_expr`` over ``cel_columns`` (name -> int, uint, string, bytes,
    double, bool) gives the shard id directly, or a token looked up in ``routing_values``."""

    cel_expr: str
    cel_columns: dict[str, str]
    routing_values: Sequence[int | str] | None = None
    infer_routing_values_from_data: bool = False

    def _sharding(self) -> dict[str, Any]:
        return {
            "strategy": "cel",
            "cel_expr": self.cel_expr,
            "cel_columns": dict(self.cel_columns),
            "routing_values": list(self.routing_values) if self.routing_values is not None else None,
            "infer_routing_values": self.infer_routing_values_from_data,
        }

    def _single_db(self) -> "WriteConfig":
        from .errors import ConfigValidationError

        raise ConfigValidationError("write_single_db takes no CEL sharding: it writes one database")


def reader_options_json(
    *,
    s3_prefix: str | None,
    manifest_store: ManifestStore | None,
    current_pointer_key: str,
    manifest_ref: str | None,
    credentials: Credentials | None,
    s3_connection_options: S3ConnectionOptions | None,
    allowed_url_prefixes: Sequence[str],
    max_workers: int | None,
    max_concurrency: int | None,
    max_fallback_attempts: int | None,
    thread_safety: str | None,
    pool_checkout_timeout: float | None,
    cache_bytes: int | None,
) -> str:
    """The JSON the Rust reader is opened from."""
    if manifest_store is None and s3_prefix is not None:
        manifest_store = ObjectStoreManifest(prefix=s3_prefix, pointer_key=current_pointer_key)
    out: dict[str, Any] = {
        "s3_prefix": s3_prefix,
        "manifest_store": manifest_store._spec(s3_prefix) if manifest_store else None,
        "manifest_ref": manifest_ref,
        "allowed_url_prefixes": list(allowed_url_prefixes),
        "max_workers": max_workers,
        "max_concurrency": max_concurrency,
        "max_fallback_attempts": max_fallback_attempts,
        "thread_safety": thread_safety,
        "pool_checkout_timeout": pool_checkout_timeout,
        "cache_bytes": cache_bytes,
    }
    out.update(_storage(credentials, s3_connection_options))
    return json.dumps(out)
