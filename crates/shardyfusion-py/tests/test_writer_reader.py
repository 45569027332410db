"""The single-process writer and the three readers, on a local directory and on S3."""

from __future__ import annotations

import asyncio
import multiprocessing
import pickle
import threading
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pyarrow as pa
import pytest

import shardyfusion_rs as sf
from conftest import CEL_VALUES, REGIONS, ROWS, rows_table


def test_write_and_read_every_key(location, table):
    result = sf.write_sharded(
        table, location.hash_config(num_dbs=8), key_col="id", value_spec=sf.ValueSpec.binary_col("payload")
    )
    assert (result.rows_written, result.num_dbs, result.num_winners) == (ROWS, 8, 8)
    ids = table.column("id").to_pylist()
    with location.reader() as r:
        got = r.multi_get(ids)
        assert got == dict(zip(ids, table.column("payload").to_pylist()))
        assert r.get(ROWS + 5) is None
        info = r.snapshot_info()
        assert (info.run_id, info.num_dbs, info.row_count, info.key_encoding) == (
            result.run_id,
            8,
            ROWS,
            "u64be",
        )
        details = r.shard_details()
        assert [d.db_id for d in details] == list(range(8))
        assert sum(d.row_count for d in details) == ROWS
        for key in (0, 17, 19_999):
            shard = r.route_key(key)
            d = details[shard]
            assert d.min_key <= key <= d.max_key
        assert r.health().status == "healthy"


def test_errors_are_typed_with_retryable(local, table):
    with pytest.raises(sf.ConfigValidationError) as e:
        sf.write_sharded(table, local.hash_config(num_dbs=8), key_col="nope", value_spec=sf.ValueSpec.binary_col("payload"))
    assert "nope" in str(e.value) and "payload" in str(e.value)
    assert e.value.retryable is False and isinstance(e.value, sf.ShardyfusionError)
    with pytest.raises(sf.ReaderStateError):
        local.reader()  # nothing published yet
    sf.write_sharded(table, local.hash_config(num_dbs=8), key_col="id", value_spec=sf.ValueSpec.binary_col("payload"))
    r = local.reader()
    with pytest.raises(sf.ConfigValidationError, match="integer"):
        r.get("a-string")
    with pytest.raises(sf.ConfigValidationError, match="64-bit"):
        r.get(2**70)
    r.close()
    with pytest.raises(sf.ReaderStateError):
        r.get(1)
    assert r.health().is_closed
    assert issubclass(sf.S3TransientError, sf.ShardyfusionError) and sf.S3TransientError.retryable
    assert sf.PublishCurrentError.retryable and not sf.ShardCoverageError.retryable


def test_inputs_records_pandas_and_encoders(local):
    records = ((f"k{i}", f"v{i}".encode()) for i in range(5000))  # a generator: read once
    cfg = local.hash_config(num_dbs=4, key_encoding="utf8")
    assert sf.write_sharded(records, cfg).rows_written == 5000
    with local.reader() as r:
        assert r.get("k4321") == b"v4321"

    objs = [{"name": f"n{i}", "n": i} for i in range(300)]
    sf.write_sharded(objs, cfg, key_fn=lambda o: o["name"], value_fn=lambda o: str(o["n"]).encode())
    with local.reader() as r:
        assert r.get("n299") == b"299" and r.get("k1") is None

    df = pd.DataFrame({"id": range(100), "a": [i * 2 for i in range(100)], "b": ["x"] * 100})
    sf.write_sharded(df, local.hash_config(num_dbs=2), key_col="id", value_spec=sf.ValueSpec.json_cols(["b", "a"]))
    with local.reader() as r:
        assert r.get(7) == b'{"a":14,"b":"x"}'
    # A filtered frame (its index is not 0..n) writes its columns only, and its row count is
    # known up front (max_keys_per_shard needs it).
    filtered = df[df.id % 2 == 1]
    res = sf.write_sharded(
        filtered, local.hash_config(max_keys_per_shard=10), key_col="id", value_spec=sf.ValueSpec.json_cols()
    )
    assert res.num_dbs == 5
    with local.reader() as r:
        assert r.get(7) == b'{"a":14,"b":"x"}' and r.get(8) is None
        assert r.multi_get(filtered.id.values[:2]) == {1: b'{"a":2,"b":"x"}', 3: b'{"a":6,"b":"x"}'}

    enc = sf.ValueSpec.callable_encoder(lambda row: f"{row['id']}:{row['b']}".encode())
    sf.write_sharded(df, local.hash_config(num_dbs=2), key_col="id", value_spec=enc)
    with local.reader() as r:
        assert r.get(9) == b"9:x"


def test_bad_records_abort_cleanly(local, table):
    sf.write_sharded(table, local.hash_config(num_dbs=8), key_col="id", value_spec=sf.ValueSpec.binary_col("payload"))
    with local.reader() as r:
        before = r.snapshot_info().manifest_ref

    def bad():
        for i in range(20_000):
            yield (i, b"ok")
        yield ("mixed", b"x")

    with pytest.raises(sf.ConfigValidationError, match="not one type"):
        sf.write_sharded(bad(), local.hash_config(num_dbs=8))

    def boom():
        yield (1, b"a")
        raise RuntimeError("the source went away")

    with pytest.raises(sf.ConfigValidationError, match="the source went away") as e:
        sf.write_sharded(boom(), local.hash_config(num_dbs=8))
    assert isinstance(e.value.__cause__, RuntimeError)

    def late():
        for i in range(50_000):
            yield (i, b"v")
        raise OSError("the disk under the source failed")

    with pytest.raises(sf.ConfigValidationError, match="disk under the source") as e:
        sf.write_sharded(late(), local.hash_config(num_dbs=8))
    assert isinstance(e.value.__cause__, OSError), "the input's own exception is the cause"
    assert str(e.value).startswith("reading the input failed: ") and "C Data" not in str(e.value), str(e.value)
    with pytest.raises(sf.ConfigValidationError, match="bytes"):
        sf.write_sharded([(1, 2)], local.hash_config(num_dbs=8))
    with local.reader() as r:
        assert r.snapshot_info().manifest_ref == before


def test_single_db_and_cel(local, table):
    single = sf.write_single_db(table, local.hash_config(), key_col="id", value_spec=sf.ValueSpec.binary_col("payload"))
    assert single.num_dbs == 1
    with local.reader() as r:
        assert r.get(123) == b"value-123-0"
    with pytest.raises(sf.ConfigValidationError):
        sf.write_single_db(table, local.cel_config(), key_col="id", value_spec=sf.ValueSpec.binary_col("payload"))

    res = sf.write_sharded(table, local.cel_config(), key_col="id", value_spec=sf.ValueSpec.binary_col("payload"))
    assert res.num_dbs == len(CEL_VALUES) and res.num_winners == len(REGIONS)
    with local.reader() as r:
        assert r.get(5, routing_context={"region": REGIONS[(5 * 7) % 8]}) == b"value-5-0"
        assert r.route_key(5, {"region": "r3"}) == 3
        assert r.shard_for_key(5, {"region": "r3"}).db_id == 3
        assert r.get(5, routing_context={"region": "nowhere"}) is None
        with pytest.raises(sf.ConfigValidationError, match="routing_context"):
            r.get(5, routing_context=["r3"])
        with pytest.raises(sf.ConfigValidationError, match="routing context value"):
            r.get(5, routing_context={"region": object()})
        assert r.key_encoding == "u64be"


def test_manifest_stores_sqlite_and_postgres(tmp_path, table):
    import os

    stores = [sf.SqliteManifest(path=str(tmp_path / "m.sqlite"))]
    dsn = os.environ.get("DATABASE_URL")
    assert dsn, "DATABASE_URL is not set: run these tests through `cargo xtask it`"
    stores.append(sf.PostgresManifest(dsn=dsn, table_name=f"py_{os.getpid()}_manifests"))
    for i, store in enumerate(stores):
        prefix = str(tmp_path / f"snap{i}")
        cfg = sf.HashShardedWriteConfig(s3_prefix=prefix, num_dbs=4, manifest_store=store)
        res = sf.write_sharded(table, cfg, key_col="id", value_spec=sf.ValueSpec.binary_col("payload"))
        with sf.ShardedReader(manifest_store=store) as r:
            assert r.snapshot_info().run_id == res.run_id
            assert r.get(77) == b"value-77-0"


def test_concurrent_threads_and_refresh_while_reading(local):
    first = rows_table(4000)
    sf.write_sharded(first, local.hash_config(num_dbs=8), key_col="id", value_spec=sf.ValueSpec.binary_col("payload"))
    reader = local.reader()
    stop = threading.Event()
    seen: list[set[str]] = [set() for _ in range(4)]
    saw_last = [threading.Event() for _ in range(4)]
    errors: list[BaseException] = []

    def read(t: int) -> None:
        try:
            while not stop.is_set():
                for k in range(t, 4000, 97):
                    v = reader.get(k)
                    assert v is not None and v.startswith(f"value-{k}-".encode())
                    seen[t].add(v.decode().rsplit("-", 1)[1])
                    if "2" in seen[t]:
                        saw_last[t].set()
                got = reader.multi_get(range(0, 4000, 13))
                gens = {v.decode().rsplit("-", 1)[1] for v in got.values()}
                assert len(gens) == 1, f"a multi_get mixed snapshots: {gens}"
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=read, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for gen in (1, 2):
        sf.write_sharded(
            rows_table(4000).set_column(1, "payload", pa.array([f"value-{i}-{gen}".encode() for i in range(4000)])),
            local.hash_config(num_dbs=8),
            key_col="id",
            value_spec=sf.ValueSpec.binary_col("payload"),
        )
        assert reader.refresh() is True
    assert reader.refresh() is False
    # Every reading thread moves to the newest snapshot by itself (no restart, no sleep).
    for t, event in enumerate(saw_last):
        assert event.wait(60) or errors, f"reader thread {t} never saw the newest snapshot"
    stop.set()
    for t in threads:
        t.join()
    assert not errors, errors
    assert reader.get(3) == b"value-3-2"
    assert all("2" in s for s in seen)
    reader.close()

    with ThreadPoolExecutor(8) as pool:
        with local.reader() as r:
            assert list(pool.map(lambda k: r.get(k), range(100))) == [f"value-{k}-2".encode() for k in range(100)]


def test_asyncio_reader(local, table):
    sf.write_sharded(table, local.hash_config(num_dbs=8), key_col="id", value_spec=sf.ValueSpec.binary_col("payload"))

    async def main():
        async with await sf.AsyncShardedReader.open(local.prefix) as r:
            values = await asyncio.gather(*(r.get(k) for k in range(0, ROWS, 50)))
            assert values == [f"value-{k}-0".encode() for k in range(0, ROWS, 50)]
            got = await r.multi_get([1, 2, ROWS + 1])
            assert got == {1: b"value-1-0", 2: b"value-2-0", ROWS + 1: None}
            with pytest.raises(sf.ConfigValidationError):
                await r.get("nope")
            assert await r.refresh() is False
            assert r.snapshot_info().num_dbs == 8

    asyncio.run(main())


def _child(prefix: str, q, inherited) -> None:
    try:
        inherited.get(11)
        q.put("the inherited reader answered after fork")
    except sf.ReaderStateError as e:
        q.put(f"refused: {e}")
    try:
        sf.write_sharded([(i, b"c") for i in range(50)], sf.HashShardedWriteConfig(s3_prefix=prefix + "-child", num_dbs=2))
        with sf.ShardedReader(prefix) as r:
            q.put(r.get(11))
    except BaseException as e:  # noqa: BLE001
        q.put(repr(e))


def test_fork_after_use_and_pickling(local, table):
    sf.write_sharded(table, local.hash_config(num_dbs=8), key_col="id", value_spec=sf.ValueSpec.binary_col("payload"))
    r = local.reader()
    assert r.get(11) == b"value-11-0"  # runtimes are running in the parent
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(local.prefix, q, r))
    p.start()
    p.join(60)
    if p.is_alive():
        p.terminate()
        pytest.fail("the forked child hung")
    first, second = q.get(timeout=5), q.get(timeout=5)
    assert first.startswith("refused: ") and "after fork" in first, first
    assert p.exitcode == 0 and second == b"value-11-0", second
    assert r.get(11) == b"value-11-0"  # the parent's reader is untouched
    r.close()
    cfg = local.cel_config(shard_retry=sf.RetryConfig(max_retries=1))
    assert pickle.loads(pickle.dumps(cfg)) == cfg
    assert "secret" not in repr(sf.Credentials("id", "secret"))
