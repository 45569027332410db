"""Benchmarks of the Python bindings, run by `cargo xtask bench --python` (which compares
them with the Rust figures of the same run). Prints `METRIC name value` lines.

    bench.py get <prefix> <rows>     hot gets and multi_get through ConcurrentShardedReader
    bench.py spark <parquet-dir> <prefix> <num_dbs>   a Spark local[2] build of the dataset
"""

from __future__ import annotations

import os
import sys
import threading
import time

MASK = (1 << 64) - 1


def scale_key(i: int) -> int:
    """The keys of the scale dataset (the Rust bench's `scale_key`)."""
    return ((i * 0x9E3779B97F4A7C15) & MASK) >> 1


def xorshift(s: int) -> int:
    s ^= (s << 13) & MASK
    s ^= s >> 7
    s ^= (s << 17) & MASK
    return s & MASK


def keys(n: int, rows: int, seed: int) -> list[int]:
    out = []
    for _ in range(n):
        seed = xorshift(seed)
        out.append(scale_key(seed % rows))
    return out


def bench_get(prefix: str, rows: int) -> None:
    import shardyfusion_rs as sf

    reader = sf.ConcurrentShardedReader(prefix)
    ks = keys(100_000, rows, 0x0BADCAFE12345678)
    get = reader.get
    for k in ks:  # warm every block these keys touch
        assert get(k) is not None
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for k in ks:
            get(k)
        best = min(best, (time.perf_counter() - start) / len(ks))
    print(f"METRIC py_hot_get_us {best * 1e6:.3f}")

    batch = ks[:1000]
    reader.multi_get(batch)
    best = float("inf")
    for _ in range(20):
        start = time.perf_counter()
        got = reader.multi_get(batch)
        best = min(best, time.perf_counter() - start)
    assert len(got) == len(set(batch))
    print(f"METRIC py_multi_get_1000_ms {best * 1e3:.3f}")

    # The GIL is released inside multi_get: a pure-Python thread keeps counting during one
    # long call (it would not advance at all if the call held the GIL).
    many = ks[:50_000]
    ticks = [0]
    stop = threading.Event()

    def count() -> None:
        while not stop.is_set():
            ticks[0] += 1

    counter = threading.Thread(target=count)
    counter.start()
    time.sleep(0.05)
    before = ticks[0]
    start = time.perf_counter()
    reader.multi_get(many)
    during = time.perf_counter() - start
    advanced = ticks[0] - before
    time.sleep(during)
    solo = ticks[0] - before - advanced
    stop.set()
    counter.join()
    print(f"METRIC py_multi_get_50k_ms {during * 1e3:.1f}")
    print(f"METRIC py_counter_progress_during_multi_get {advanced / max(solo, 1):.3f}")
    reader.close()


def bench_spark(data: str, prefix: str, num_dbs: int) -> None:
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    import shardyfusion_rs as sf
    from shardyfusion_rs import spark as sfs

    spark = (
        SparkSession.builder.master("local[2]")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.memory", "4g")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    df = spark.read.parquet(data)
    rows = df.count()
    # One build first, as on a running cluster: Python workers started, the JVM's JIT warm on
    # this job's code (scan, Arrow exchange, shuffle). The second build is measured.
    warm = time.perf_counter()
    sfs.write_sharded(
        df,
        sf.HashShardedWriteConfig(s3_prefix=prefix + "-warmup", num_dbs=num_dbs),
        key_col="id",
        value_spec=sf.ValueSpec.binary_col("payload"),
    )
    print(f"METRIC spark_first_build_s {time.perf_counter() - warm:.3f}")
    config = sf.HashShardedWriteConfig(s3_prefix=prefix, num_dbs=num_dbs)
    start = time.perf_counter()
    result = sfs.write_sharded(df, config, key_col="id", value_spec=sf.ValueSpec.binary_col("payload"))
    secs = time.perf_counter() - start
    assert result.rows_written == rows
    print(f"METRIC spark_rows_per_s {rows / secs:.0f}")
    print(f"METRIC spark_total_s {secs:.3f}")
    spark.stop()


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    if cmd == "get":
        bench_get(args[0], int(args[1]))
    elif cmd == "spark":
        bench_spark(args[0], args[1], int(args[2]))
    else:
        raise SystemExit(__doc__)
