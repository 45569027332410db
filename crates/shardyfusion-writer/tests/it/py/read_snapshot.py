"""Cross-language check: the Python SlateDB binding and Python's sqlite3 read a Rust-written snapshot.

Usage: python read_snapshot.py <snapshot dir> <manifest path relative to dir> <expected.json>
expected.json: {"pairs": [[db_id, key_hex, value_hex], ...], "num_dbs": N}
Prints "checked <n> keys in <m> shards" on success; exits non-zero with a message otherwise.
"""
import asyncio
import json
import sqlite3
import sys

from slatedb.uniffi import DbReaderBuilder, ObjectStore, ReaderOptions


def check_manifest(path):
    raw = open(path, "rb").read()
    assert raw[:16] == b"SQLite format 3\x00", "magic"
    assert raw[18] == 1 and raw[19] == 1, "rollback-journal (non-WAL) image"
    conn = sqlite3.connect(":memory:")
    conn.deserialize(raw)
    tables = sorted(r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))
    assert tables == ["build_meta", "shards"], tables
    conn.row_factory = sqlite3.Row
    build = conn.execute("SELECT * FROM build_meta LIMIT 1").fetchone()
    assert build["format_version"] == 4
    sharding = json.loads(build["sharding"])
    assert sharding == {"cel_columns": None, "cel_expr": None, "hash_algorithm": "xxh3_64",
                        "routing_values": None, "strategy": "hash"}, sharding
    assert build["sharding"] == json.dumps(sharding, sort_keys=True), "spaced, sorted JSON text"
    assert json.loads(build["custom"]) == {"team": "ml"}
    shards = {}
    for row in conn.execute("SELECT * FROM shards ORDER BY db_id"):
        info = json.loads(row["writer_info"])
        assert set(info) == {"attempt", "duration_ms", "stage_id", "task_attempt_id"}, info
        assert isinstance(json.loads(row["min_key"]), int)
        assert isinstance(row["row_count"], int) and row["row_count"] > 0
        shards[row["db_id"]] = row["db_url"]
    return build["num_dbs"], shards


async def read_shards(root, shards, pairs):
    store = ObjectStore.resolve("file://" + root)
    checked = 0
    for db_id, url in shards.items():
        rel = url.split(root, 1)[1].lstrip("/")
        builder = DbReaderBuilder(rel, store)
        builder.with_options(ReaderOptions(manifest_poll_interval_ms=60000, checkpoint_lifetime_ms=600000,
                                           max_memtable_bytes=64 << 20, skip_wal_replay=True))
        reader = await builder.build()
        for d, k, v in pairs:
            if d != db_id:
                continue
            got = await reader.get(bytes.fromhex(k))
            assert got == bytes.fromhex(v), f"shard {db_id} key {k}: {got!r}"
            checked += 1
        assert await reader.get(b"\xff" * 9) is None
        await reader.shutdown()
    return checked


def main():
    root, manifest, expected_path = sys.argv[1:4]
    expected = json.load(open(expected_path))
    num_dbs, shards = check_manifest(root + "/" + manifest)
    assert num_dbs == expected["num_dbs"], num_dbs
    checked = asyncio.run(read_shards(root, shards, expected["pairs"]))
    assert checked == len(expected["pairs"]), (checked, len(expected["pairs"]))
    print(f"checked {checked} keys in {len(shards)} shards")


if __name__ == "__main__":
    main()
