//! Scale: a generated Parquet dataset streamed through the one-pass `write_arrow_stream` into 64
//! shards, with peak RSS, to show that memory is bounded by the configuration and not by the
//! input size.
//!
//! `cargo bench -p shardyfusion-writer --bench scale -- gen <rows> <dir>` writes the dataset
//! (parts of 1,000,000 rows: Int64 keys in a fixed shuffled order, 100-byte binary values);
//! `… -- write <dir> <out>` streams it (a reader thread decodes the parts two batches ahead of
//! the writer, as `shardy write` does) and prints `RESULT scale_write rows seconds rows_per_s
//! peak_rss_mib`. `cargo xtask bench --scale` runs both at 2 M and 20 M rows, and `shardy write`
//! on the same parts. Environment: `SCALE_BUDGET_MIB` (memtable budget), `SCALE_NO_COMPACT`
//! (shards left as L0 SSTs), `SCALE_KEEP` (keep the snapshot), `SCALE_NULL` (shards that drop
//! every batch).

#![allow(clippy::print_stdout, clippy::unwrap_used, missing_docs)]

mod common;

use std::sync::Arc;
use std::time::Instant;

use arrow_array::{ArrayRef, BinaryArray, Int64Array, RecordBatch};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use shardyfusion_core::{ManifestStore, WriteConfig, WriteOptions};
use shardyfusion_storage::StorageResolver;
use shardyfusion_store_s3::ObjectStoreManifestStore;
use shardyfusion_writer::{ShardedWriter, SlateDbOptions, ValueSpec};

const PART_ROWS: u64 = 1_000_000;

/// Key `i` of the dataset: a bijection of `0..rows` (odd multiplier), so keys are unique and
/// not sorted.
fn key(i: u64) -> i64 {
    (i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 1) as i64
}

fn generate(rows: u64, dir: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let mut part = 0;
    let mut start = 0;
    while start < rows {
        let end = (start + PART_ROWS).min(rows);
        let path = format!("{dir}/part-{part:05}.parquet");
        let mut writer: Option<ArrowWriter<std::fs::File>> = None;
        let mut i = start;
        while i < end {
            let stop = (i + 65_536).min(end);
            let keys = Int64Array::from_iter_values((i..stop).map(key));
            let values =
                BinaryArray::from_iter_values((i..stop).map(|k| format!("{k:0>100}").into_bytes()));
            let batch = RecordBatch::try_from_iter([
                ("id", Arc::new(keys) as ArrayRef),
                ("payload", Arc::new(values) as ArrayRef),
            ])
            .unwrap();
            let w = writer.get_or_insert_with(|| {
                ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), batch.schema(), None)
                    .unwrap()
            });
            w.write(&batch).unwrap();
            i = stop;
        }
        if let Some(w) = writer {
            w.close().unwrap();
        }
        part += 1;
        start = end;
    }
}

fn write(dir: &str, out: &str) {
    let _ = std::fs::remove_dir_all(out);
    let mut parts: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    parts.sort();
    let rows: u64 = parts
        .iter()
        .map(|p| {
            let f = std::fs::File::open(p).unwrap();
            ParquetRecordBatchReaderBuilder::try_new(f)
                .unwrap()
                .metadata()
                .file_metadata()
                .num_rows() as u64
        })
        .sum();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let start = Instant::now();
    rt.block_on(async {
        let store: Arc<dyn ManifestStore> =
            Arc::new(ObjectStoreManifestStore::new(out, StorageResolver::default()).unwrap());
        let config = WriteConfig::builder(out)
            .num_dbs(64)
            .manifest_store(store)
            .build()
            .unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::channel(2);
        let reader = std::thread::spawn(move || {
            for p in parts {
                let f = std::fs::File::open(p).unwrap();
                let batches = ParquetRecordBatchReaderBuilder::try_new(f)
                    .unwrap()
                    .with_batch_size(8192)
                    .build()
                    .unwrap();
                for b in batches {
                    if tx.blocking_send(b).is_err() {
                        return;
                    }
                }
            }
        });
        let stream = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
        let mut slate = SlateDbOptions::default();
        if let Some(mib) = std::env::var("SCALE_BUDGET_MIB")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
        {
            slate = slate.with_memtable_budget(Some(mib << 20));
        }
        if std::env::var("SCALE_NO_COMPACT").is_ok() {
            slate = slate.with_compaction(false);
        }
        let mut w = ShardedWriter::new(config)
            .unwrap()
            .with_run_registry(false)
            .with_slatedb_options(slate);
        if std::env::var("SCALE_NULL").is_ok() {
            w = w.with_adapter_factory(Arc::new(common::NullFactory));
        }
        let r = w
            .write_arrow_stream(
                stream,
                "id",
                &ValueSpec::BinaryColumn("payload".into()),
                &WriteOptions::builder().parallel(true).build().unwrap(),
            )
            .await
            .unwrap();
        reader.join().unwrap();
        assert_eq!(r.stats.rows_written, rows);
    });
    let secs = start.elapsed().as_secs_f64();
    println!(
        "RESULT scale_write {rows} {secs:.3} {:.0} {:.1}",
        rows as f64 / secs,
        common::peak_rss_mib()
    );
    if std::env::var("SCALE_KEEP").is_err() {
        let _ = std::fs::remove_dir_all(out);
    }
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    match args.first().map(String::as_str) {
        Some("gen") => generate(args[1].parse().unwrap(), &args[2]),
        Some("write") => write(&args[1], &args[2]),
        _ => eprintln!("usage: scale gen <rows> <dir> | scale write <dir> <out>"),
    }
}
