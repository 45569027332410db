//! The main job end to end on the embedded default (a local directory, no servers): generate a
//! deterministic sample dataset, write it into a sharded snapshot, read keys back, and print a
//! summary.
//!
//! ```sh
//! cargo run --release -p shardyfusion --example quickstart   # 300,000 rows into target/quickstart
//! cargo run --release -p shardyfusion --example quickstart -- 50000 /tmp/snap
//! ```
//!
//! Timings are only representative of a release build; a debug build says so in its output.

#![allow(clippy::print_stdout)]

use std::time::Instant;

use shardyfusion::reader::{ConcurrentOptions, ConcurrentShardedReader, ReaderOptions};
use shardyfusion::writer::ShardedWriter;
use shardyfusion::{Key, KeyRef, WriteConfig, WriteOptions};

/// One sample row: a user id and a small JSON feature record.
struct Row {
    id: i64,
    value: Vec<u8>,
}

fn sample(n: i64) -> Vec<Row> {
    let regions = ["eu", "us", "ap", "sa"];
    (0..n)
        .map(|id| {
            let score = (id.wrapping_mul(2_654_435_761) % 10_000) as f64 / 100.0;
            let value = format!(
                r#"{{"id":{id},"region":"{}","score":{score}}}"#,
                regions[(id % 4) as usize]
            );
            Row {
                id,
                value: value.into_bytes(),
            }
        })
        .collect()
}

fn main() -> shardyfusion::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: i64 = args.first().and_then(|s| s.parse().ok()).unwrap_or(300_000);
    let dir = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "target/quickstart".to_owned());
    let _ = std::fs::remove_dir_all(&dir);
    let rows = sample(n);

    // Write: 8 shards under a local directory, manifest and _CURRENT beside them.
    let store = shardyfusion::manifest_store_for_prefix(&dir)?;
    let config = WriteConfig::builder(&dir)
        .num_dbs(8)
        .manifest_store(store.clone())
        .build()?;
    let options = WriteOptions::builder().parallel(true).build()?;
    let rt = tokio::runtime::Runtime::new()
        .map_err(|e| shardyfusion::Error::config(format!("cannot start a runtime: {e}")))?;
    let start = Instant::now();
    let result = rt.block_on(ShardedWriter::new(config)?.write(
        &rows,
        |r| Key::Int(r.id),
        |r| r.value.clone(),
        &options,
    ))?;
    let write_s = start.elapsed().as_secs_f64();
    drop(rt);

    // Read: open the current snapshot and look a few keys up.
    let reader = ConcurrentShardedReader::open(
        store,
        ReaderOptions::default(),
        ConcurrentOptions::default(),
    )?;
    let info = reader.snapshot_info()?;
    println!("shardyfusion quickstart");
    println!("  snapshot   {}", info.manifest_ref);
    println!("  run_id     {}", info.run_id);
    println!("  rows       {}", result.stats.rows_written);
    println!(
        "  shards     {} ({} written)",
        info.num_dbs, result.stats.num_winners
    );
    println!(
        "  write      {write_s:.2} s, {:.0} rows/s",
        n as f64 / write_s
    );
    let probes = [0, 1, n / 2, n - 1, n + 1];
    for k in probes {
        let v = reader.get(KeyRef::Int(k))?;
        let text = v.map_or_else(
            || "(absent)".to_owned(),
            |b| String::from_utf8_lossy(&b).into_owned(),
        );
        println!(
            "  get {k:<8} -> shard {} : {text}",
            reader.route_key(KeyRef::Int(k), None)?
        );
    }
    let keys: Vec<KeyRef<'_>> = (0..1000).map(|i| KeyRef::Int((i * 7919) % n)).collect();
    let start = Instant::now();
    let found = reader
        .multi_get(&keys)?
        .iter()
        .filter(|(_, v)| v.is_some())
        .count();
    println!(
        "  multi_get  {found}/{} distinct keys found in {:.1} ms",
        keys.len(),
        start.elapsed().as_secs_f64() * 1e3
    );
    if cfg!(debug_assertions) {
        println!(
            "  (a debug build: timings are several times slower than release; run with \
             `cargo run --release …` for representative numbers)"
        );
    }
    reader.close();
    if found != keys.len() {
        return Err(shardyfusion::Error::new(
            shardyfusion::ErrorKind::ReaderState,
            "some written keys were not found",
        ));
    }
    Ok(())
}
