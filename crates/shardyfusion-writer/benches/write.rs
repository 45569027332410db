//! Write throughput: the sharded writer against raw SlateDB on the same rows, in one run.
//!
//! `cargo bench -p shardyfusion-writer --bench write -- <scenario> <rows> <dir>` runs one scenario
//! in this process and prints `scenario rows seconds rows_per_s peak_rss_mib`; `cargo xtask
//! bench` runs every scenario in its own process (so peak RSS is per scenario) and prints the
//! ratios. Scenarios:
//!
//! * `writer` — `ShardedWriter`, 8 shards, parallel mode, on a local directory;
//! * `writer_arrow` — the same rows as resident Arrow batches of 8,192 rows (Int64 keys, a
//!   binary value column, built before the clock starts, as `writer`'s rows are) through the
//!   one-pass columnar `write_arrow`;
//! * `rowwise_arrow` — the same batches a row at a time (a column lookup by name, a `Key` and a
//!   value copy per row, as the writer worked before it was columnar): the reference for
//!   `writer_arrow`;
//! * `writer_arrow_null`, `rowwise_arrow_null` — both with shards that drop their rows (the
//!   writer's own cost, without SlateDB's memtable inserts);
//! * `put_loop` — one SlateDB database with default settings, one `put` per row;
//! * `bulk_single` — one SlateDB database tuned by hand for a bulk load (no WAL, no compaction,
//!   keys sorted, 50 000-row batches, one memtable flush at the end);
//! * `baseline` — the input rows alone (the RSS floor);
//! * `writer_lowmem` — the writer with 16 MiB in flight and 8 MiB memtables;
//! * `writer_sorted`, `writer_sequential`, `writer_small_l0` — variants for exploration.
//!
//! Rows: 8-byte big-endian keys `0..rows` (shuffled deterministically), 100-byte values.

#![allow(clippy::print_stdout, clippy::unwrap_used, missing_docs)]

mod common;

use std::sync::Arc;
use std::time::Instant;

use arrow_array::{ArrayRef, BinaryArray, Int64Array, RecordBatch};
use shardyfusion_core::{Key, ManifestStore, WriteConfig, WriteOptions};
use shardyfusion_storage::StorageResolver;
use shardyfusion_store_s3::ObjectStoreManifestStore;
use shardyfusion_writer::{ShardedWriter, SlateDbOptions, ValueSpec};
use slatedb::WriteBatch;
use slatedb::config::{FlushOptions, FlushType};

fn rows(n: u64) -> Vec<(u64, Vec<u8>)> {
    // A fixed permutation (multiplicative hash order) so input is not pre-sorted.
    let mut keys: Vec<u64> = (0..n).collect();
    keys.sort_by_key(|k| k.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    keys.into_iter()
        .map(|k| (k, format!("{k:0>100}").into_bytes()))
        .collect()
}

/// A writer of 8 shards under `dir` without a run record; with `null`, shards that drop their
/// rows (the writer side alone).
fn sharded(dir: &str, null: bool) -> ShardedWriter {
    let store: Arc<dyn ManifestStore> =
        Arc::new(ObjectStoreManifestStore::new(dir, StorageResolver::default()).unwrap());
    let config = WriteConfig::builder(dir)
        .num_dbs(8)
        .manifest_store(store)
        .build()
        .unwrap();
    let w = ShardedWriter::new(config).unwrap().with_run_registry(false);
    if null {
        w.with_adapter_factory(Arc::new(common::NullFactory))
    } else {
        w
    }
}

async fn writer(data: &[(u64, Vec<u8>)], dir: &str, opts: WriteOptions, slate: SlateDbOptions) {
    let r = sharded(dir, false)
        .with_slatedb_options(slate)
        .write(data, |r| Key::Int(r.0 as i64), |r| r.1.as_slice(), &opts)
        .await
        .unwrap();
    assert_eq!(r.stats.rows_written, data.len() as u64);
}

/// The rows of `data` as Arrow batches of 8,192 rows.
fn arrow_batches(data: &[(u64, Vec<u8>)]) -> Vec<RecordBatch> {
    data.chunks(8192)
        .map(|chunk| {
            let keys = Int64Array::from_iter_values(chunk.iter().map(|r| r.0 as i64));
            let values = BinaryArray::from_iter_values(chunk.iter().map(|r| r.1.as_slice()));
            RecordBatch::try_from_iter([
                ("id", Arc::new(keys) as ArrayRef),
                ("payload", Arc::new(values) as ArrayRef),
            ])
            .unwrap()
        })
        .collect()
}

/// `writer_arrow`, or with `null` shards that drop their rows (the writer side alone).
async fn writer_arrow(batches: &[RecordBatch], dir: &str, null: bool) {
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let w = sharded(dir, null);
    let r = w
        .write_arrow(
            batches
                .iter()
                .cloned()
                .map(Ok::<_, std::convert::Infallible>),
            "id",
            &ValueSpec::BinaryColumn("payload".into()),
            &WriteOptions::builder().parallel(true).build().unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.stats.rows_written, rows as u64);
}

/// The reference for the columnar path: the same batches consumed a row at a time, as the
/// writer did before it was columnar (columns looked up by name for every row, a `Key` and an
/// owned copy of the value per row), through the record API.
async fn rowwise_arrow(batches: &[RecordBatch], dir: &str, null: bool) {
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let w = sharded(dir, null);
    let items = batches
        .iter()
        .flat_map(|b| (0..b.num_rows()).map(move |i| Ok((b, i))));
    let r = w
        .write_records(
            items,
            |&(b, i): &(&RecordBatch, usize)| {
                let col = |name: &str| b.column(b.schema().index_of(name).unwrap()).clone();
                let key = col("id");
                let key = key.as_any().downcast_ref::<Int64Array>().unwrap().value(i);
                let value = col("payload");
                let value = value.as_any().downcast_ref::<BinaryArray>().unwrap();
                Ok(shardyfusion_writer::Record::new(
                    Key::Int(key),
                    value.value(i).to_vec(),
                ))
            },
            &WriteOptions::builder().parallel(true).build().unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.stats.rows_written, rows as u64);
}

async fn open_single(dir: &str, tuned: bool) -> slatedb::Db {
    let loc = StorageResolver::default().resolve(dir).unwrap();
    let path = loc.child(&["single"]);
    if tuned {
        slatedb::Db::builder(path, loc.store)
            .with_settings(SlateDbOptions::default().settings())
            .with_db_cache_disabled()
            .build()
            .await
            .unwrap()
    } else {
        slatedb::Db::open(path, loc.store).await.unwrap()
    }
}

async fn put_loop(data: &[(u64, Vec<u8>)], dir: &str) {
    let db = open_single(dir, false).await;
    for (k, v) in data {
        db.put(k.to_be_bytes(), v).await.unwrap();
    }
    db.close().await.unwrap();
}

async fn bulk_single(data: &[(u64, Vec<u8>)], dir: &str) {
    let db = open_single(dir, true).await;
    let mut sorted: Vec<&(u64, Vec<u8>)> = data.iter().collect();
    sorted.sort_by_key(|r| r.0);
    for chunk in sorted.chunks(50_000) {
        let mut batch = WriteBatch::new();
        for (k, v) in chunk {
            batch.put(k.to_be_bytes(), v);
        }
        db.write(batch).await.unwrap();
    }
    db.flush_with_options(FlushOptions {
        flush_type: FlushType::MemTable,
    })
    .await
    .unwrap();
    db.close().await.unwrap();
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let scenario = args.first().cloned().unwrap_or_else(|| "writer".to_owned());
    let n: u64 = args
        .get(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let dir = args
        .get(2)
        .cloned()
        .unwrap_or_else(|| std::env::temp_dir().join("sf-bench").display().to_string());
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let data = rows(n);
    let batches = if scenario.contains("arrow") {
        arrow_batches(&data)
    } else {
        Vec::new()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let start = Instant::now();
    rt.block_on(async {
        match scenario.as_str() {
            "writer" => {
                writer(
                    &data,
                    &dir,
                    WriteOptions::builder().parallel(true).build().unwrap(),
                    SlateDbOptions::default(),
                )
                .await
            }
            "writer_sorted" => {
                writer(
                    &data,
                    &dir,
                    WriteOptions::builder()
                        .parallel(true)
                        .sort_within_partitions(true)
                        .build()
                        .unwrap(),
                    SlateDbOptions::default(),
                )
                .await
            }
            "writer_sequential" => {
                writer(
                    &data,
                    &dir,
                    WriteOptions::default(),
                    SlateDbOptions::default(),
                )
                .await
            }
            "writer_small_l0" => {
                let mut s = SlateDbOptions::default();
                s.l0_sst_size_bytes = 8 << 20;
                s.max_unflushed_bytes = 32 << 20;
                writer(
                    &data,
                    &dir,
                    WriteOptions::builder().parallel(true).build().unwrap(),
                    s,
                )
                .await
            }
            "writer_lowmem" => {
                let mut s = SlateDbOptions::default();
                s.l0_sst_size_bytes = 8 << 20;
                s.max_unflushed_bytes = 32 << 20;
                let o = WriteOptions::builder()
                    .parallel(true)
                    .max_queue_size(2)
                    .max_parallel_bytes_in_flight(16 << 20)
                    .max_parallel_bytes_per_worker(4 << 20)
                    .build()
                    .unwrap();
                writer(&data, &dir, o, s).await
            }
            "writer_arrow" => writer_arrow(&batches, &dir, false).await,
            "writer_arrow_null" => writer_arrow(&batches, &dir, true).await,
            "rowwise_arrow" => rowwise_arrow(&batches, &dir, false).await,
            "rowwise_arrow_null" => rowwise_arrow(&batches, &dir, true).await,
            "put_loop" => put_loop(&data, &dir).await,
            "baseline" => {} // the input rows alone: the RSS floor every scenario starts from
            "bulk_single" => bulk_single(&data, &dir).await,
            other => panic!("unknown scenario {other}"),
        }
    });
    let secs = start.elapsed().as_secs_f64();
    println!(
        "RESULT {scenario} {n} {secs:.3} {:.0} {:.1}",
        n as f64 / secs,
        common::peak_rss_mib()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
