"""Spark, Dask and Ray writers: every key reads back (Python readers and `shardy`), the same
rows land in the same shards as `shardy write`, and failures never publish a partial
snapshot."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import shardyfusion_rs as sf
from shardyfusion_rs import _engine
from conftest import CEL_VALUES, REGIONS, ROWS, Location, multiget_results, rows_table

VALUE = sf.ValueSpec.binary_col("payload")


def _engine_write(engine: str, fixtures, table: pa.Table, config, **kw) -> sf.BuildResult:
    if engine == "spark":
        from shardyfusion_rs import spark as mod

        data = fixtures.getfixturevalue("spark").createDataFrame(table.to_pandas())
    elif engine == "dask":
        import dask.dataframe as dd

        from shardyfusion_rs import dask as mod

        fixtures.getfixturevalue("dask_client")
        data = dd.from_pandas(table.to_pandas(), npartitions=4)
    else:
        import ray.data

        from shardyfusion_rs import ray as mod

        fixtures.getfixturevalue("ray_ctx")
        data = ray.data.from_arrow(table).repartition(4)
    return mod.write_sharded(data, config, key_col="id", value_spec=VALUE, **kw)


def _shardy_write(shardy, loc: Location, table: pa.Table, tmp: Path, cel: bool) -> None:
    src = tmp / "rows.parquet"
    pq.write_table(table, src)
    args = ["write", "--no-progress", "--input", str(src), "--key-col", "id", "--value-col", "payload", "--prefix", loc.prefix]
    if cel:
        args += ["--cel-expr", "region", "--cel-column", "region:string", "--routing-values", ",".join(CEL_VALUES)]
    else:
        args += ["--num-dbs", "8"]
    shardy.run(loc, *args)


def _shape(loc: Location) -> list[tuple[int, int, object, object]]:
    with loc.reader() as r:
        return [(d.db_id, d.row_count, d.min_key, d.max_key) for d in r.shard_details()]


@pytest.mark.parametrize("engine", ["spark", "dask", "ray"])
@pytest.mark.parametrize("sharding", ["hash", "cel"])
def test_engine_writes_what_shardy_writes(engine, sharding, location, request, table, shardy, tmp_path):
    cel = sharding == "cel"
    config = location.cel_config() if cel else location.hash_config(num_dbs=8)
    result = _engine_write(engine, request, table, config)
    # CEL has a ninth routing value no row has: every engine must record its empty shard.
    assert (result.rows_written, result.num_dbs, result.num_winners) == (ROWS, 9 if cel else 8, 8)

    ids = table.column("id").to_pylist()
    payloads = table.column("payload").to_pylist()
    regions = table.column("region").to_pylist()
    with location.reader() as r:
        if cel:
            got = [r.get(k, routing_context={"region": g}) for k, g in zip(ids, regions)]
            assert got == payloads
        else:
            assert r.multi_get(ids) == dict(zip(ids, payloads))
        engine_shape = [(d.db_id, d.row_count, d.min_key, d.max_key) for d in r.shard_details()]

    # Through shardy: every key of one shard group per call (CEL needs its routing context).
    expect = {str(k): base64.b64encode(v).decode() for k, v in zip(ids, payloads)}
    if cel:
        for g in REGIONS:
            keys = [k for k, kr in zip(ids, regions) if kr == g]
            out = shardy.run(
                location, "--current-url", f"{location.prefix}/_CURRENT", "--output-format", "jsonl",
                "multiget", "--routing-context", f"region={g}", "-", stdin="".join(f"{k}\n" for k in keys),
            )
            records = multiget_results(out)
            assert len(records) == len(keys)
            for d in records:
                assert d["value"] == expect[str(d["key"])]
    else:
        assert shardy.multiget(location, ids) == expect

    # The same rows through `shardy write` land in the same shards.
    twin = Location(location.prefix + "-shardy", location.settings, location.kind)
    _shardy_write(shardy, twin, table, tmp_path, cel)
    assert _shape(twin) == engine_shape
    if not cel:
        with twin.reader() as r:
            assert r.multi_get(ids) == dict(zip(ids, payloads))


def test_spark_partition_placement_matches_spark(spark):
    from pyspark.sql import functions as F

    from shardyfusion_rs.spark import spark_int_partition

    for n in (1, 7, 8, 64, 1000):
        ids = spark.range(-300, 3000).select(F.col("id").cast("int").alias("k"))
        rows = ids.select("k", F.expr(f"pmod(hash(k), {n})").alias("p")).collect()
        assert all(spark_int_partition(r["k"], n) == r["p"] for r in rows), n
        placed = ids.repartition(n, "k").select("k", F.spark_partition_id().alias("p")).collect()
        assert all(spark_int_partition(r["k"], n) == r["p"] for r in placed), n


def test_spark_task_retry_publishes_whole_and_cleans_the_loser(spark, local, table):
    from pyspark import TaskContext

    from shardyfusion_rs import spark as sfs

    seen: dict = {}

    def flaky(row):
        # The first attempt of every task that gets past its first Arrow batch (2,000 rows,
        # so shards have been opened and written) dies; Spark runs it again.
        ctx = TaskContext.get()
        task = (ctx.stageId(), ctx.partitionId(), ctx.attemptNumber())
        seen[task] = seen.get(task, 0) + 1
        if ctx.attemptNumber() == 0 and seen[task] > 2000:
            raise RuntimeError("injected failure of the first attempt")
        return row["payload"]

    df = spark.createDataFrame(table.to_pandas())
    result = sfs.write_sharded(
        df, local.hash_config(num_dbs=8, batch_size=64), key_col="id", value_spec=sf.ValueSpec.callable_encoder(flaky)
    )
    with local.reader() as r:
        ids = table.column("id").to_pylist()
        assert r.multi_get(ids) == dict(zip(ids, table.column("payload").to_pylist()))
        winners = {d.db_url for d in r.shard_details()}
    run_dir = Path(local.prefix) / "shards" / f"run_id={result.run_id}"
    attempts = sorted(str(p.relative_to(run_dir)) for p in run_dir.glob("db=*/attempt=*"))
    assert any(not a.endswith("attempt=00") for a in attempts), f"no retried attempt: {attempts}"
    assert {f"file://{run_dir}/{a}" for a in attempts} == winners, "a losing attempt was left behind"
    assert not (Path(local.prefix) / "_claims").exists() or not any((Path(local.prefix) / "_claims").rglob("*.*"))


def test_spark_task_that_always_fails_publishes_nothing(spark, local, table):
    from shardyfusion_rs import spark as sfs

    sf.write_sharded(table, local.hash_config(num_dbs=8), key_col="id", value_spec=VALUE)
    before = (Path(local.prefix) / "_CURRENT").read_bytes()

    def broken(row):
        if row["id"] == 4242:
            raise ValueError("row 4242 cannot be encoded")
        return row["payload"]

    df = spark.createDataFrame(table.to_pandas())
    with pytest.raises(sf.ConfigValidationError, match="row 4242 cannot be encoded"):
        sfs.write_sharded(df, local.hash_config(num_dbs=8), key_col="id", value_spec=sf.ValueSpec.callable_encoder(broken))
    assert (Path(local.prefix) / "_CURRENT").read_bytes() == before
    import re

    statuses = [
        re.search(r"^status: (\w+)", p.read_text(), re.M).group(1)
        for p in (Path(local.prefix) / "runs").rglob("run.yaml")
    ]
    assert sorted(statuses) == ["failed", "succeeded"], statuses
    with pytest.raises(sf.ConfigValidationError, match="'nope'"):
        sfs.write_sharded(df, local.hash_config(num_dbs=8), key_col="nope", value_spec=VALUE)


def test_duplicate_results_have_one_winner(local, table):
    job = _engine.Job(
        local.hash_config(num_dbs=8), key_col="id", value_spec=VALUE, sort_within_partitions=False,
        max_writes_per_second=None, max_write_bytes_per_second=None, expected_rows=None, on_duplicate="keep_last",
    )
    task = job.task()
    routed = [task.route(b) for b in table.to_batches(max_chunksize=5000)]
    first = task.write(list(range(8)), routed)
    speculative = task.write(list(range(8)), routed)  # a speculative copy of the same task
    urls = {json.loads(r)["db_url"] for r in first + speculative}
    assert len(urls) == 16, "two runs of one task shared an attempt URL"
    result = job.commit(first + speculative)
    assert result.num_winners == 8 and result.rows_written == ROWS
    run_dir = Path(local.prefix) / "shards" / f"run_id={result.run_id}"
    assert len(list(run_dir.glob("db=*/attempt=*"))) == 8, "losing duplicates were not deleted"
    with local.reader() as r:
        assert r.get(4242) == b"value-4242-0"


def test_driver_failure_before_commit_leaves_current(spark, local, table, monkeypatch):
    from shardyfusion_rs import spark as sfs

    sf.write_sharded(table, local.hash_config(num_dbs=8), key_col="id", value_spec=VALUE)
    with local.reader() as r:
        before = r.snapshot_info().manifest_ref

    def crash(self, results):
        raise RuntimeError("driver lost before commit")

    monkeypatch.setattr(_engine.Job, "commit", crash)
    newer = rows_table(ROWS, offset=1)
    with pytest.raises(RuntimeError, match="driver lost"):
        sfs.write_sharded(spark.createDataFrame(newer.to_pandas()), local.hash_config(num_dbs=8), key_col="id", value_spec=VALUE)
    with local.reader() as r:
        assert r.snapshot_info().manifest_ref == before
        assert r.get(5) == b"value-5-0"


def test_engine_results_refuse_another_version(local, table):
    job = _engine.Job(
        local.hash_config(num_dbs=2), key_col="id", value_spec=VALUE, sort_within_partitions=False,
        max_writes_per_second=None, max_write_bytes_per_second=None, expected_rows=None, on_duplicate="keep_last",
    )
    task = job.task()
    results = task.write([0, 1], [task.route(b) for b in table.to_batches()])
    forged = [json.dumps({**json.loads(r), "writer_version": "0.0.1"}) for r in results]
    with pytest.raises(sf.ConfigValidationError, match="same version"):
        job.commit(forged)
    assert not (Path(local.prefix) / "_CURRENT").exists()


def test_rows_outside_a_tasks_shards_are_refused(local, table):
    """verify_routing: every task re-routes every row it writes with the plan's routing; a row
    an engine delivered to the wrong task is a ShardAssignmentError, and nothing publishes."""
    job = _engine.Job(local.hash_config(num_dbs=8), key_col="id", value_spec=VALUE)
    task = job.task()
    routed = task.route(table.to_batches(max_chunksize=5000)[0])
    with pytest.raises(sf.ShardAssignmentError, match="shard"):
        task.write([0], [routed])
    job.abort(RuntimeError("the test gave up"))
    assert not (Path(local.prefix) / "_CURRENT").exists()
