//! `shardy write`: build and publish a snapshot from JSONL, CSV or Parquet input, streamed as
//! Arrow batches from a reader thread into the writer.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use arrow_array::RecordBatch;
use arrow_schema::{ArrowError, DataType};
use clap::Args;
use futures::StreamExt as _;
use serde_json::{Map, Value, json};
use shardyfusion::cel::{CelColumn, cel_sharding_by_columns};
use shardyfusion::writer::{ShardedWriter, ValueSpec};
use shardyfusion::{
    CelColumnType, DuplicateKeys, KeyEncoding, RetryConfig, RoutingValue, ShardingSpec,
    WriteConfig, WriteOptions,
};

use crate::Ctx;
use crate::input::Input;

/// The key column as the key encoding wants it: integers for `u64be`/`u32be` (strings parsed),
/// strings for `utf8`/`raw` (integers printed), so CSV and JSON inputs key as they read.
/// `at(i)` names the batch's row `i` (file and row) for errors.
fn key_column_for(
    batch: RecordBatch,
    key_col: &str,
    enc: KeyEncoding,
    at: impl Fn(usize) -> String,
) -> std::result::Result<RecordBatch, ArrowError> {
    let Ok(i) = batch.schema().index_of(key_col) else {
        return Ok(batch); // the writer names the missing column
    };
    let col = batch.column(i);
    let target = match (enc, col.data_type()) {
        (
            KeyEncoding::U64Be | KeyEncoding::U32Be,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View,
        ) => DataType::Int64,
        (KeyEncoding::Utf8 | KeyEncoding::Raw, t) if t.is_integer() => DataType::Utf8,
        _ => return Ok(batch),
    };
    let options = arrow_cast::CastOptions {
        safe: false,
        ..Default::default()
    };
    let cast = arrow_cast::cast_with_options(col, &target, &options).map_err(|e| {
        // The first row the strict cast refused: null after a lenient cast, but not before.
        let lenient = arrow_cast::cast(col, &target).ok();
        let bad = lenient.and_then(|l| (0..col.len()).find(|&r| l.is_null(r) && !col.is_null(r)));
        let at = bad.map(|r| format!("{}: ", at(r))).unwrap_or_default();
        ArrowError::CastError(format!(
            "{at}key column {key_col:?} does not fit the {enc} key encoding ({e}); string keys \
             need --key-encoding utf8"
        ))
    })?;
    let mut columns = batch.columns().to_vec();
    columns[i] = cast;
    let mut fields: Vec<_> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields[i] = fields[i].clone().with_data_type(target);
    RecordBatch::try_new(Arc::new(arrow_schema::Schema::new(fields)), columns)
}

/// Options of `shardy write`.
#[derive(Debug, Args)]
pub(crate) struct WriteArgs {
    /// Input: a file, a directory or glob of part files (`parts/*.parquet`), `-` for stdin, or
    /// object-store URLs (`s3://bucket/path/*.parquet`), read one part at a time.
    #[arg(long)]
    input: String,
    /// Column types for JSONL/CSV input, `NAME:TYPE,…` (int64, int32, uint64, float64, bool,
    /// utf8, binary); default: inferred from the first 10,000 rows.
    #[arg(long)]
    schema: Option<String>,
    /// `jsonl`, `csv` or `parquet` (default: from the file extension).
    #[arg(long)]
    input_format: Option<String>,
    /// Where the snapshot goes: s3://, file://, memory:// or a filesystem path (else derived from
    /// --current-url).
    #[arg(long, alias = "s3-prefix")]
    pub(crate) prefix: Option<String>,
    /// The key column.
    #[arg(long)]
    key_col: String,
    /// The value column (strings as UTF-8, other JSON values as compact JSON).
    #[arg(long, conflicts_with = "value_json_cols")]
    value_col: Option<String>,
    /// Values as compact JSON objects of these columns (no list = every column but the key).
    #[arg(long, num_args = 0..=1, value_delimiter = ',', default_missing_value = "")]
    value_json_cols: Option<Vec<String>>,
    /// Number of shards (HASH).
    #[arg(long)]
    num_dbs: Option<u32>,
    /// Derive the shard count from the row count (HASH).
    #[arg(long)]
    max_keys_per_shard: Option<u64>,
    /// CEL expression (with --cel-column).
    #[arg(long)]
    cel_expr: Option<String>,
    /// CEL column `NAME:TYPE` (repeatable; with --cel-expr).
    #[arg(long = "cel-column", requires = "cel_expr")]
    cel_columns: Vec<String>,
    /// Categorical routing values, comma separated (integers or strings; with --cel-expr): the
    /// token at position i routes to shard i.
    #[arg(long, value_delimiter = ',', requires = "cel_expr")]
    routing_values: Option<Vec<String>>,
    /// Infer categorical routing values from the data (with --cel-expr).
    #[arg(long, requires = "cel_expr", conflicts_with = "routing_values")]
    infer_routing_values: bool,
    /// Route by columns: `NAME[:TYPE],…`.
    #[arg(long, value_delimiter = ',')]
    cel_by_columns: Option<Vec<String>>,
    /// With --cel-by-columns: hash into this many shards (else categorical, inferred).
    #[arg(long, requires = "cel_by_columns")]
    num_shards: Option<u32>,
    /// With --cel-by-columns: separator between columns.
    #[arg(long, default_value = ":")]
    separator: String,
    /// Key encoding: u64be (default), u32be, utf8, raw.
    #[arg(long, default_value = "u64be")]
    key_encoding: String,
    /// Rows per write batch.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Run id (default: a fresh UUID).
    #[arg(long)]
    run_id: Option<String>,
    /// Shard directory segment.
    #[arg(long)]
    shard_prefix: Option<String>,
    /// Shard path template.
    #[arg(long)]
    db_path_template: Option<String>,
    /// Custom manifest field `KEY=JSON` (repeatable).
    #[arg(long = "custom")]
    custom: Vec<String>,
    /// Retries per shard.
    #[arg(long)]
    max_retries: Option<u32>,
    /// One worker per shard.
    #[arg(long)]
    parallel: bool,
    /// Rows per second per shard.
    #[arg(long)]
    max_writes_per_second: Option<f64>,
    /// Bytes per second per shard.
    #[arg(long)]
    max_write_bytes_per_second: Option<f64>,
    /// Sort each shard's rows by key before writing.
    #[arg(long)]
    sort_within_partitions: bool,
    /// A key that appears more than once: `keep-last` (the later row wins; repeats are counted
    /// in the summary) or `error` (refuse the input).
    #[arg(long, default_value = "keep-last", value_parser = ["keep-last", "error"])]
    on_duplicate: String,
    /// No progress output.
    #[arg(long)]
    no_progress: bool,
    /// Print every writer metric event (SPEC 11) as one JSON line on stderr as it happens
    /// (`{"event": "write.manifest_published", ...}`): a trace for tooling and debugging. Turns
    /// the progress bar off.
    #[arg(long)]
    events: bool,
}

fn sharding(args: &WriteArgs) -> Result<Option<ShardingSpec>> {
    let parse_col = |c: &str| -> Result<(String, CelColumnType)> {
        match c.split_once(':') {
            Some((n, t)) => Ok((n.to_owned(), t.parse()?)),
            None => Ok((c.to_owned(), CelColumnType::String)),
        }
    };
    if let Some(cols) = &args.cel_by_columns {
        let cols: Vec<CelColumn> = cols
            .iter()
            .map(|c| parse_col(c).map(|(n, t)| CelColumn::new(n, t)))
            .collect::<Result<_>>()?;
        return Ok(Some(cel_sharding_by_columns(
            &cols,
            args.num_shards,
            &args.separator,
        )?));
    }
    let Some(expr) = &args.cel_expr else {
        return Ok(None);
    };
    if args.cel_columns.is_empty() {
        bail!("--cel-expr needs at least one --cel-column NAME:TYPE");
    }
    let cols: Vec<(String, CelColumnType)> = args
        .cel_columns
        .iter()
        .map(|c| parse_col(c))
        .collect::<Result<_>>()?;
    let mut spec = ShardingSpec::cel(expr.clone(), cols);
    if let Some(values) = &args.routing_values {
        let all_ints = values.iter().all(|v| v.parse::<i64>().is_ok());
        spec = spec.with_routing_values(values.iter().map(|v| {
            if all_ints {
                RoutingValue::Int(v.parse().unwrap_or_default())
            } else {
                RoutingValue::Str(v.clone())
            }
        }));
    }
    if args.infer_routing_values {
        spec = spec.infer_routing_values();
    }
    Ok(Some(spec))
}

/// `--events`: every metric event as a JSON line on stderr, written and flushed before the
/// writer goes on (so a line is never behind what the writer has done).
struct EventLog;

impl shardyfusion::MetricsCollector for EventLog {
    fn emit(&self, event: shardyfusion::MetricEvent, payload: &shardyfusion::metrics::Payload<'_>) {
        use shardyfusion::MetricValue as V;
        use std::io::Write as _;
        let mut record = Map::new();
        record.insert("event".into(), json!(event.name()));
        for (name, value) in payload {
            let v = match value {
                V::Int(i) => json!(i),
                V::Float(f) => json!(f),
                V::Bool(b) => json!(b),
                V::Str(s) => json!(s),
            };
            record.insert((*name).to_owned(), v);
        }
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{}", Value::Object(record));
        let _ = err.flush();
    }
}

/// A progress bar fed by the writer's metric events (rows written, shards done) and the input
/// reader (bytes read).
struct Progress {
    bar: indicatif::ProgressBar,
    shards_done: std::sync::atomic::AtomicU64,
    bytes: Arc<AtomicU64>,
    /// Input bytes in all, when known.
    total_bytes: Option<u64>,
}

impl shardyfusion::MetricsCollector for Progress {
    fn emit(&self, event: shardyfusion::MetricEvent, payload: &shardyfusion::metrics::Payload<'_>) {
        use shardyfusion::MetricEvent as E;
        let field = |name: &str| {
            payload
                .iter()
                .find(|(n, _)| *n == name)
                .and_then(|(_, v)| v.as_f64())
        };
        match event {
            E::WriteBatchWritten => {
                self.bar.inc(field("batch_size").unwrap_or(0.0) as u64);
                let mib = |b: u64| b as f64 / (1 << 20) as f64;
                let read = mib(self.bytes.load(Ordering::Relaxed));
                self.bar.set_message(match self.total_bytes {
                    Some(t) => format!("{read:.1} of {:.1} MiB read", mib(t)),
                    None => format!("{read:.1} MiB read"),
                });
            }
            E::WriteShardCompleted => {
                let done = self.shards_done.fetch_add(1, Ordering::Relaxed) + 1;
                self.bar.set_message(format!("{done} shards done"));
            }
            _ => {}
        }
    }
}

pub(crate) async fn run(ctx: &Ctx, args: &WriteArgs) -> Result<ExitCode> {
    let prefix = ctx
        .prefix
        .clone()
        .context("no destination: pass --prefix URL|PATH (or --current-url .../_CURRENT)")?;
    let enc: KeyEncoding = args.key_encoding.parse()?;
    let spec = sharding(args)?;
    let mut b = WriteConfig::builder(&prefix)
        .key_encoding(enc)
        .manifest_store(ctx.store.clone());
    match (&spec, args.num_dbs, args.max_keys_per_shard) {
        (Some(s), None, None) => b = b.sharding(s.clone()),
        (Some(_), _, _) => bail!("CEL sharding takes no --num-dbs or --max-keys-per-shard"),
        (None, Some(n), None) => b = b.num_dbs(n),
        (None, None, Some(m)) => b = b.sharding(ShardingSpec::hash_with_max_keys_per_shard(m)),
        (None, None, None) => bail!(
            "choose the sharding: --num-dbs N, --max-keys-per-shard M, --cel-expr … or --cel-by-columns …"
        ),
        (None, Some(_), Some(_)) => bail!("give one of --num-dbs and --max-keys-per-shard"),
    }
    if let Some(n) = args.batch_size {
        b = b.batch_size(n);
    }
    if let Some(r) = &args.run_id {
        b = b.run_id(r);
    }
    if let Some(s) = &args.shard_prefix {
        b = b.shard_prefix(s);
    }
    if let Some(t) = &args.db_path_template {
        b = b.db_path_template(t);
    }
    if let Some(r) = args.max_retries {
        b = b.shard_retry(RetryConfig::new(r, Duration::from_secs(1), 2.0)?);
    }
    if !args.custom.is_empty() {
        let mut m = Map::new();
        for kv in &args.custom {
            let (k, v) = kv
                .split_once('=')
                .with_context(|| format!("--custom takes KEY=JSON, got {kv:?}"))?;
            let v: Value = serde_json::from_str(v)
                .with_context(|| format!("--custom {k}: {v:?} is not valid JSON"))?;
            m.insert(k.to_owned(), v);
        }
        b = b.custom_manifest_fields(Value::Object(m));
    }
    let input = Input::discover(
        &args.input,
        args.input_format.as_deref(),
        args.schema.as_deref(),
        &ctx.resolver,
    )
    .await?;
    let value = match (&args.value_col, &args.value_json_cols) {
        (Some(c), _) => ValueSpec::BinaryColumn(c.clone()),
        (None, Some(cols)) => {
            let cols: Vec<String> = cols.iter().filter(|c| !c.is_empty()).cloned().collect();
            ValueSpec::JsonColumns((!cols.is_empty()).then_some(cols))
        }
        (None, None) => bail!("choose the value: --value-col NAME or --value-json-cols [COL,…]"),
    };
    let batch_size = args.batch_size.unwrap_or(8192).clamp(1, 1 << 20);
    let rt = tokio::runtime::Handle::current();
    // Rows known up front: Parquet footers; for --max-keys-per-shard, a counting pass over a
    // re-readable input.
    let mut expected_rows = input.total_rows;
    if args.max_keys_per_shard.is_some() && expected_rows.is_none() {
        if !input.rereadable() {
            bail!(
                "--max-keys-per-shard needs the row count before writing, and stdin can be read \
                 only once: pass --num-dbs N instead"
            );
        }
        let it = input.batches(batch_size, Arc::default(), Default::default(), rt.clone());
        let counted = tokio::task::spawn_blocking(move || {
            it.map(|b| b.map(|b| b.num_rows() as u64))
                .sum::<std::result::Result<u64, _>>()
        })
        .await??;
        expected_rows = Some(counted);
    }
    let bytes = Arc::new(AtomicU64::new(0));
    if args.events {
        b = b.metrics_collector(Arc::new(EventLog));
    }
    let progress = if !args.no_progress
        && !args.events
        && std::io::IsTerminal::is_terminal(&std::io::stderr())
    {
        let bar = match expected_rows {
            Some(n) => indicatif::ProgressBar::new(n).with_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} {pos}/{len} rows [{elapsed_precise}, ETA {eta}] {per_sec} {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            ),
            None => indicatif::ProgressBar::new_spinner().with_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} {pos} rows [{elapsed_precise}] {per_sec} {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
            ),
        };
        let p = Arc::new(Progress {
            bar,
            shards_done: Default::default(),
            bytes: bytes.clone(),
            total_bytes: input.total_bytes,
        });
        b = b.metrics_collector(p.clone());
        Some(p)
    } else {
        None
    };
    let config = b.build()?;
    let mut ob = WriteOptions::builder()
        .parallel(args.parallel)
        .sort_within_partitions(args.sort_within_partitions)
        .on_duplicate(if args.on_duplicate == "error" {
            DuplicateKeys::Error
        } else {
            DuplicateKeys::KeepLast
        });
    if let Some(n) = expected_rows {
        ob = ob.expected_rows(n);
    }
    if let Some(r) = args.max_writes_per_second {
        ob = ob.max_writes_per_second(r);
    }
    if let Some(r) = args.max_write_bytes_per_second {
        ob = ob.max_write_bytes_per_second(r);
    }
    let options = ob.build()?;
    let needs_survey = {
        let spec = config.sharding();
        spec.strategy == shardyfusion::ShardingStrategy::Cel && spec.routing_values.is_none()
    };
    let writer = ShardedWriter::new(config)?.with_storage(ctx.resolver.clone());

    // Decoding runs on a thread of its own, two batches ahead of the writer.
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    let starts = crate::input::PartStarts::default();
    let batches = input.batches(batch_size, bytes, starts.clone(), rt);
    let key_col = args.key_col.clone();
    let at_starts = starts.clone();
    let reader = std::thread::spawn(move || {
        let mut seen = 0u64;
        for b in batches {
            let b = b.and_then(|b| {
                let first = seen;
                seen += b.num_rows() as u64;
                key_column_for(b, &key_col, enc, |i| {
                    match at_starts.locate(first + i as u64) {
                        Some((file, row)) => format!("{file}, row {row}"),
                        None => format!("input row {}", first + i as u64),
                    }
                })
            });
            if tx.blocking_send(b).is_err() {
                break;
            }
        }
    });
    let stream =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) });
    let result = if needs_survey {
        // Inferred or discovered CEL shards need every row's routing result first: the input
        // is held in memory (give --routing-values to stream instead).
        let resident: Vec<RecordBatch> = stream
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<std::result::Result<_, _>>()?;
        writer
            .write_batches(&resident, &args.key_col, &value, &options)
            .await
    } else {
        writer
            .write_arrow_stream(stream, &args.key_col, &value, &options)
            .await
    };
    let _ = reader.join();
    let direct_cel =
        args.cel_expr.is_some() && args.routing_values.is_none() && !args.infer_routing_values;
    let result = result.map_err(|e| {
        let not_an_id = direct_cel
            && e.kind() == shardyfusion::ErrorKind::ShardAssignment
            && e.message().contains("is not a shard id");
        let at = e.input_row().and_then(|r| starts.locate(r));
        let mut err = anyhow::Error::new(e);
        if let Some((file, row)) = at {
            err = err.context(format!("{file}, row {row}"));
        }
        if not_an_id {
            // A categorical expression (tokens, not shard ids) without its tokens.
            err = err.context(
                "the CEL expression yields tokens, not shard ids: pass --routing-values A,B,… \
                 (token i routes to shard i) or --infer-routing-values",
            );
        }
        err
    })?;
    if let Some(p) = &progress {
        p.bar.finish_and_clear();
    }
    let d = result.stats.durations;
    let current_url = format!(
        "{}/{}",
        prefix.trim_end_matches('/'),
        shardyfusion::CURRENT_POINTER_KEY
    );
    let record: Map<String, Value> = [
        ("op", json!("write")),
        ("current_url", json!(current_url)),
        ("run_id", json!(result.run_id)),
        ("manifest_ref", json!(result.manifest_ref.manifest_ref)),
        ("num_dbs", json!(result.num_dbs)),
        ("num_winners", json!(result.stats.num_winners)),
        ("rows_written", json!(result.stats.rows_written)),
        ("duplicate_keys", json!(result.stats.duplicate_keys)),
        ("durations", json!({"sharding_ms": d.sharding_ms, "write_ms": d.write_ms, "manifest_ms": d.manifest_ms, "total_ms": d.total_ms})),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let rate = result.stats.rows_written as f64 / (d.total_ms.max(1) as f64 / 1000.0);
    let dups = result.stats.duplicate_keys;
    ctx.out.record(&record, || {
        let mut lines = vec![format!(
            "wrote {} rows into {} shards ({} non-empty) in {} ms ({rate:.0} rows/s)\nmanifest {}",
            result.stats.rows_written,
            result.num_dbs,
            result.stats.num_winners,
            d.total_ms,
            result.manifest_ref.manifest_ref
        )];
        lines.push(format!(
            "read it with: shardy --current-url {current_url} get KEY"
        ));
        if dups > 0 {
            lines.push(format!(
                "{dups} rows repeated an earlier key (the later row won; row_count counts them): \
                 pass --on-duplicate error to refuse such input"
            ));
        }
        lines
    });
    if dups > 0 && !args.no_progress {
        eprintln!(
            "shardy write: warning: {dups} rows repeated an earlier key; the later row won \
             (--on-duplicate error refuses repeats)"
        );
    }
    Ok(ExitCode::SUCCESS)
}
