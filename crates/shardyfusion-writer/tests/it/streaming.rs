//! One-pass inputs: fallible record iterators and streams, Arrow batch readers and streams, with
//! every key column type, clean aborts on bad input, and routing that must be known up front.

use std::sync::Arc;

use arrow_array::builder::StringDictionaryBuilder;
use arrow_array::types::Int32Type;
use arrow_array::{
    ArrayRef, BinaryArray, Int32Array, Int64Array, RecordBatch, StringArray, UInt64Array,
};
use arrow_schema::ArrowError;
use futures::StreamExt;
use shardyfusion_core::{
    Error, ErrorKind, Key, KeyRef, ManifestStore, Result, WriteConfig, WriteOptions,
};
use shardyfusion_storage::StorageResolver;
use shardyfusion_writer::{Record, ShardedWriter, ValueSpec};

use crate::{Shards, store_for, unique};

struct Env {
    prefix: String,
    store: Arc<dyn ManifestStore>,
    resolver: StorageResolver,
}

fn env() -> Env {
    let prefix = format!("memory://streaming/{}", unique("p"));
    let resolver = StorageResolver::default();
    Env {
        store: store_for(&prefix, &resolver),
        prefix,
        resolver,
    }
}

impl Env {
    fn writer(&self, num_dbs: Option<u32>, max_keys: Option<u64>) -> ShardedWriter {
        let mut b = WriteConfig::builder(&self.prefix).manifest_store(self.store.clone());
        if let Some(n) = num_dbs {
            b = b.num_dbs(n);
        }
        if let Some(m) = max_keys {
            b = b.sharding(shardyfusion_core::ShardingSpec::hash_with_max_keys_per_shard(m));
        }
        ShardedWriter::new(b.build().unwrap())
            .unwrap()
            .with_run_registry(false)
    }

    async fn nothing_published(&self) {
        assert_eq!(self.store.load_current().await.unwrap(), None);
        let loc = self.resolver.resolve(&self.prefix).unwrap();
        let objects: Vec<_> = loc.store.list(Some(&loc.path)).collect().await;
        assert!(objects.is_empty(), "no object written: {objects:?}");
    }
}

/// Batches of `(id, payload)` rows, `rows` in all, `per` per batch.
fn batches(
    rows: i64,
    per: i64,
) -> impl Iterator<Item = std::result::Result<RecordBatch, ArrowError>> {
    (0..rows).step_by(per as usize).map(move |start| {
        let ids: Vec<i64> = (start..(start + per).min(rows)).collect();
        let payload: Vec<Vec<u8>> = ids.iter().map(|i| format!("v{i}").into_bytes()).collect();
        RecordBatch::try_from_iter([
            ("id", Arc::new(Int64Array::from(ids)) as ArrayRef),
            (
                "payload",
                Arc::new(BinaryArray::from_iter_values(payload)) as ArrayRef,
            ),
        ])
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_are_read_once_and_an_input_error_aborts_cleanly() {
    let e = env();
    // A one-pass input (not Clone) of fallible records.
    let good = (0..3000i64).map(Ok::<_, Error>);
    let r = e
        .writer(Some(4), None)
        .write_records(
            good,
            |i: &i64| Ok(Record::new(Key::Int(*i), format!("r{i}").into_bytes())),
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(r.stats.rows_written, 3000);
    let m = e
        .store
        .load_manifest(&r.manifest_ref.manifest_ref)
        .await
        .unwrap();
    let shards = Shards::open(m, &e.resolver).await;
    assert_eq!(shards.get(KeyRef::Int(2999)).await.unwrap(), b"r2999");
    shards.close().await;

    // An input error mid-stream: nothing published, the error says what happened.
    let e = env();
    let bad = (0..3000i64).map(|i| {
        if i == 2500 {
            Err(Error::config("the source file is truncated at line 2501"))
        } else {
            Ok(i)
        }
    });
    let err = e
        .writer(Some(4), None)
        .write_records(
            bad,
            |i: &i64| Ok(Record::new(Key::Int(*i), vec![1])),
            &WriteOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(err.message().contains("truncated at line 2501"), "{err}");
    assert_eq!(e.store.load_current().await.unwrap(), None);

    // The stream form, with an extractor that fails.
    let e = env();
    let stream = futures::stream::iter((0..100i64).map(Ok::<_, Error>));
    let err = e
        .writer(Some(2), None)
        .write_record_stream(
            stream,
            |i: &i64| {
                if *i == 50 {
                    Err(Error::config("row 50 has no id"))
                } else {
                    Ok(Record::new(Key::Int(*i), vec![]))
                }
            },
            &WriteOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(err.message().contains("row 50 has no id"), "{err}");
    assert_eq!(e.store.load_current().await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arrow_batches_stream_through_in_one_pass() {
    let e = env();
    // max_keys_per_shard on a stream needs the row count up front.
    let err = e
        .writer(None, Some(1000))
        .write_arrow(
            batches(5000, 700),
            "id",
            &ValueSpec::BinaryColumn("payload".into()),
            &WriteOptions::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConfigValidation);
    assert!(err.message().contains("expected_rows"), "{err}");
    e.nothing_published().await;

    let options = WriteOptions::builder().expected_rows(5000).build().unwrap();
    let r = e
        .writer(None, Some(1000))
        .write_arrow(
            batches(5000, 700),
            "id",
            &ValueSpec::BinaryColumn("payload".into()),
            &options,
        )
        .await
        .unwrap();
    assert_eq!((r.num_dbs, r.stats.rows_written), (5, 5000));
    let m = e
        .store
        .load_manifest(&r.manifest_ref.manifest_ref)
        .await
        .unwrap();
    let shards = Shards::open(m, &e.resolver).await;
    for k in [0, 699, 700, 4999] {
        assert_eq!(
            shards.get(KeyRef::Int(k)).await.unwrap(),
            format!("v{k}").into_bytes()
        );
    }
    shards.close().await;

    // The stream form; an input error in the third batch aborts the write.
    let e = env();
    let mut items: Vec<_> = batches(3000, 1000).collect();
    items[2] = Err(ArrowError::ParseError("bad row in part-3.parquet".into()));
    let err = e
        .writer(Some(4), None)
        .write_arrow_stream(
            futures::stream::iter(items),
            "id",
            &ValueSpec::BinaryColumn("payload".into()),
            &WriteOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(err.message().contains("part-3.parquet"), "{err}");
    assert_eq!(e.store.load_current().await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_columns_fail_before_any_row_naming_the_columns() {
    for (key, value) in [
        ("nope", ValueSpec::BinaryColumn("payload".into())),
        ("id", ValueSpec::BinaryColumn("paylod".into())),
        (
            "id",
            ValueSpec::JsonColumns(Some(vec!["payload".into(), "typo".into()])),
        ),
    ] {
        let e = env();
        let err = e
            .writer(Some(2), None)
            .write_arrow(batches(100, 50), key, &value, &WriteOptions::default())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ConfigValidation, "{err}");
        assert!(
            err.message().contains("[\"id\", \"payload\"]"),
            "lists the columns: {err}"
        );
        e.nothing_published().await;
    }
}

async fn write_keys(keys: ArrayRef) -> Result<(Env, shardyfusion_writer::BuildResult)> {
    let e = env();
    let n = keys.len();
    let values: ArrayRef = Arc::new(StringArray::from_iter_values(
        (0..n).map(|i| format!("x{i}")),
    ));
    let batch = RecordBatch::try_from_iter([("k", keys), ("v", values)]).unwrap();
    let r = e
        .writer(Some(3), None)
        .write_arrow(
            [Ok::<_, ArrowError>(batch)],
            "k",
            &ValueSpec::BinaryColumn("v".into()),
            &WriteOptions::default(),
        )
        .await?;
    Ok((e, r))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_column_type_and_the_bad_rows_named() {
    // Int32 keys route like the same i64 keys.
    let (e, r) = write_keys(Arc::new(Int32Array::from(vec![5, 7, 9])))
        .await
        .unwrap();
    let m = e
        .store
        .load_manifest(&r.manifest_ref.manifest_ref)
        .await
        .unwrap();
    let shards = Shards::open(m, &e.resolver).await;
    assert_eq!(shards.get(KeyRef::Int(7)).await.unwrap(), b"x1");
    shards.close().await;

    // Dictionary-encoded string keys are their values, not debug text.
    let mut dict = StringDictionaryBuilder::<Int32Type>::new();
    for k in ["N101", "N202", "N101x"] {
        dict.append_value(k);
    }
    let e = env();
    let config = WriteConfig::builder(&e.prefix)
        .num_dbs(3)
        .key_encoding(shardyfusion_core::KeyEncoding::Utf8)
        .manifest_store(e.store.clone())
        .build()
        .unwrap();
    let batch = RecordBatch::try_from_iter([
        ("k", Arc::new(dict.finish()) as ArrayRef),
        (
            "v",
            Arc::new(StringArray::from(vec!["a", "b", "c"])) as ArrayRef,
        ),
    ])
    .unwrap();
    let r = ShardedWriter::new(config)
        .unwrap()
        .write_arrow(
            [Ok::<_, ArrowError>(batch)],
            "k",
            &ValueSpec::BinaryColumn("v".into()),
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    let m = e
        .store
        .load_manifest(&r.manifest_ref.manifest_ref)
        .await
        .unwrap();
    let shards = Shards::open(m, &e.resolver).await;
    assert_eq!(shards.get(KeyRef::Str("N202")).await.unwrap(), b"b");
    shards.close().await;

    // An unsigned key above 2^63-1 and a null key: errors naming the input row.
    let err = write_keys(Arc::new(UInt64Array::from(vec![1, u64::MAX])))
        .await
        .err()
        .unwrap();
    assert!(err.message().starts_with("input row 1:"), "{err}");
    let err = write_keys(Arc::new(Int64Array::from(vec![Some(1), Some(2), None])))
        .await
        .err()
        .unwrap();
    assert!(
        err.message().contains("input row 2") && err.message().contains("null"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_keys_are_counted_or_refused() {
    // 300 rows over 100 distinct keys: the later row wins, the repeats are counted.
    let e = env();
    let rows: Vec<(i64, u32)> = (0..300u32).map(|i| (i64::from(i % 100), i)).collect();
    let r = e
        .writer(Some(2), None)
        .write(
            &rows,
            |r| Key::Int(r.0),
            |r| r.1.to_string().into_bytes(),
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!((r.stats.rows_written, r.stats.duplicate_keys), (300, 200));
    let m = e
        .store
        .load_manifest(&r.manifest_ref.manifest_ref)
        .await
        .unwrap();
    assert_eq!(m.row_count(), 300, "row_count counts every row written");
    let shards = Shards::open(m, &e.resolver).await;
    assert_eq!(shards.get(KeyRef::Int(7)).await.unwrap(), b"207");
    shards.close().await;

    // Refused: nothing published, the key named.
    let e = env();
    let options = WriteOptions::builder()
        .on_duplicate(shardyfusion_core::DuplicateKeys::Error)
        .build()
        .unwrap();
    let err = e
        .writer(Some(2), None)
        .write(
            &rows,
            |r| Key::Int(r.0),
            |r| r.1.to_string().into_bytes(),
            &options,
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConfigValidation, "{err}");
    assert!(err.message().contains("repeats key"), "{err}");
    assert_eq!(e.store.load_current().await.unwrap(), None);
}
