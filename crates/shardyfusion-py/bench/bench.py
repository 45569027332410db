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

    # The GIL is released inside multi_get: two threads finish twice the work in less than
    # twice the time of one.
    def loop(n: int) -> None:
        for _ in range(n):
            reader.multi_get(batch)

    rounds = 200
    start = time.perf_counter()
    loop(rounds)
    one = time.perf_counter() - start
    threads = [threading.Thread(target=loop, args=(rounds,)) for _ in range(2)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    two = time.perf_counter() - start
    print(f"METRIC py_multi_get_two_thread_speedup {2 * one / two:.3f}")
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
    config = sf.HashShardedWriteConfig(s3_prefix=prefix, num_dbs=num_dbs)
    start = time.perf_counter()
    result = sfs.write_sharded(df, config, key_col="id", value_spec=sf.ValueSpec.binary_col("payload"))
    secs = time.perf_counter() - start
    assert result.rows_written == rows
    print(f"METRIC spark_rows_per_s {rows / secs:.0f}")
    print(f"METRIC spark_write_ms {result.durations_ms['write']}")
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
