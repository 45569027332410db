"""Shared fixtures: rows, storage locations (local directory and the S3-compatible server
`cargo xtask it` started), the `shardy` binary, and one session per engine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pyarrow as pa
import pytest

import shardyfusion_rs as sf

ROWS = 20_000
REGIONS = [f"r{i}" for i in range(8)]
#: CEL routing values: the eight regions, and one no row has (an empty shard for every engine).
CEL_VALUES = REGIONS + ["zz-empty"]


def _env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: run these tests through `cargo xtask it`", pytrace=False)
    return value


def rows_table(n: int = ROWS, offset: int = 0) -> pa.Table:
    ids = list(range(offset, offset + n))
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "payload": pa.array([f"value-{i}-{offset}".encode() for i in ids], pa.binary()),
            "region": pa.array([REGIONS[(i * 7) % 8] for i in ids], pa.string()),
            "score": pa.array([i / 4 for i in ids], pa.float64()),
        }
    )


@pytest.fixture(scope="session")
def table() -> pa.Table:
    return rows_table()


@pytest.fixture(scope="session")
def s3_settings() -> dict:
    """Credentials and connection options of the test server."""
    return {
        "credentials": sf.Credentials(
            access_key_id=_env("SHARDYFUSION_S3_ACCESS_KEY_ID"),
            secret_access_key=_env("SHARDYFUSION_S3_SECRET_ACCESS_KEY"),
        ),
        "s3_connection_options": sf.S3ConnectionOptions(
            endpoint_url=_env("SHARDYFUSION_S3_ENDPOINT"),
            region_name="us-east-1",
            addressing_style="path",
        ),
    }


class Location:
    """Where one test writes: a prefix plus the storage settings that reach it."""

    def __init__(self, prefix: str, settings: dict, kind: str):
        self.prefix = prefix
        self.settings = settings
        self.kind = kind

    def hash_config(self, **kw) -> sf.HashShardedWriteConfig:
        return sf.HashShardedWriteConfig(s3_prefix=self.prefix, **self.settings, **kw)

    def cel_config(self, **kw) -> sf.CelShardedWriteConfig:
        return sf.CelShardedWriteConfig(
            s3_prefix=self.prefix,
            cel_expr="region",
            cel_columns={"region": "string"},
            routing_values=CEL_VALUES,
            **self.settings,
            **kw,
        )

    def reader(self, **kw) -> sf.ConcurrentShardedReader:
        return sf.ConcurrentShardedReader(self.prefix, **self.settings, **kw)


@pytest.fixture(params=["local", "s3"])
def location(request, tmp_path: Path) -> Location:
    if request.param == "local":
        return Location(str(tmp_path / "snap"), {}, "local")
    settings = request.getfixturevalue("s3_settings")
    bucket = _env("SHARDYFUSION_S3_BUCKET")
    return Location(f"s3://{bucket}/py/{uuid.uuid4().hex}", settings, "s3")


@pytest.fixture
def local(tmp_path: Path) -> Location:
    return Location(str(tmp_path / "snap"), {}, "local")


def multiget_results(text: str) -> list[dict]:
    """The per-key records of `shardy multiget` JSON output."""
    out: list[dict] = []
    for line in text.splitlines():
        d = json.loads(line)
        out.extend(d["results"] if "results" in d else [d])
    return out


class Shardy:
    """The `shardy` CLI, pointed at a location's storage."""

    def __init__(self, binary: str):
        self.binary = binary

    def run(self, loc: Location, *args: str, stdin: str | None = None) -> str:
        env = dict(os.environ)
        cmd = [self.binary]
        if loc.kind == "s3":
            creds = loc.settings["credentials"]
            opts = loc.settings["s3_connection_options"]
            env["AWS_ACCESS_KEY_ID"] = creds.access_key_id
            env["AWS_SECRET_ACCESS_KEY"] = creds.secret_access_key
            cmd += ["--s3-option", f"endpoint_url={opts.endpoint_url}"]
            cmd += ["--s3-option", "region=us-east-1", "--s3-option", "addressing_style=path"]
        cmd += list(args)
        out = subprocess.run(cmd, input=stdin, capture_output=True, text=True, env=env)
        if out.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed ({out.returncode}): {out.stderr}")
        return out.stdout

    def multiget(self, loc: Location, keys: list) -> dict[str, str | None]:
        text = self.run(
            loc,
            "--current-url",
            f"{loc.prefix}/_CURRENT",
            "--output-format",
            "jsonl",
            "multiget",
            "-",
            stdin="".join(f"{k}\n" for k in keys),
        )
        return {str(d["key"]): d.get("value") for d in multiget_results(text)}


@pytest.fixture(scope="session")
def shardy() -> Shardy:
    binary = os.environ.get("SHARDY_BIN", "")
    if not Path(binary).exists():
        pytest.fail(f"SHARDY_BIN={binary!r} is not the shardy binary (cargo xtask it sets it)")
    return Shardy(binary)


@pytest.fixture(scope="session")
def spark():
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2,2]")
        .appName("shardyfusion-rs-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.memory", "2g")
        .config("spark.sql.shuffle.partitions", "8")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "2000")
        .config("spark.python.worker.reuse", "true")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def dask_client():
    from dask.distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    client = Client(cluster)
    yield client
    client.close()
    cluster.close()


@pytest.fixture(scope="session")
def ray_ctx():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()
