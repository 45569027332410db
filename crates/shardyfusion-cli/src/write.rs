//! `shardy write`: build and publish a snapshot from a JSONL or CSV file.

use std::io::{BufRead as _, Read as _};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::Args;
use serde_json::{Map, Value, json};
use shardyfusion::cel::{CelColumn, CelValue, RoutingContext, cel_sharding_by_columns};
use shardyfusion::pyjson::{JsonStyle, to_string};
use shardyfusion::writer::ShardedWriter;
use shardyfusion::{
    CelColumnType, Key, KeyEncoding, RetryConfig, RoutingValue, ShardingSpec, WriteConfig,
    WriteOptions,
};

use crate::Ctx;

/// Options of `shardy write`.
#[derive(Debug, Args)]
pub(crate) struct WriteArgs {
    /// Input file, or `-` for stdin.
    #[arg(long)]
    input: String,
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
    /// CEL column `NAME:TYPE` (repeatable).
    #[arg(long = "cel-column")]
    cel_columns: Vec<String>,
    /// Categorical routing values, comma separated (integers or strings).
    #[arg(long, value_delimiter = ',')]
    routing_values: Option<Vec<String>>,
    /// Infer categorical routing values from the data.
    #[arg(long)]
    infer_routing_values: bool,
    /// Route by columns: `NAME[:TYPE],…`.
    #[arg(long, value_delimiter = ',')]
    cel_by_columns: Option<Vec<String>>,
    /// With --cel-by-columns: hash into this many shards (else categorical, inferred).
    #[arg(long)]
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
    /// No progress output.
    #[arg(long)]
    no_progress: bool,
}

fn read_rows(args: &WriteArgs) -> Result<Vec<Map<String, Value>>> {
    let format = match (
        &args.input_format,
        args.input.rsplit_once('.').map(|(_, e)| e),
    ) {
        (Some(f), _) => f.clone(),
        (None, Some("jsonl" | "ndjson" | "json")) => "jsonl".to_owned(),
        (None, Some("csv")) => "csv".to_owned(),
        (None, Some("parquet" | "pq")) => "parquet".to_owned(),
        (None, _) if args.input == "-" => bail!("--input - needs --input-format jsonl|csv"),
        (None, _) => bail!(
            "cannot tell the format of {:?} from its extension: pass --input-format jsonl|csv",
            args.input
        ),
    };
    if format == "parquet" {
        return read_parquet(args);
    }
    let mut text = String::new();
    if args.input == "-" {
        std::io::stdin().read_to_string(&mut text)?;
    } else {
        text = std::fs::read_to_string(&args.input)
            .with_context(|| format!("reading --input {}", args.input))?;
    }
    match format.as_str() {
        "jsonl" => text
            .as_bytes()
            .lines()
            .enumerate()
            .filter(|(_, l)| l.as_ref().is_ok_and(|l| !l.trim().is_empty()))
            .map(|(i, l)| {
                let l = l?;
                match serde_json::from_str::<Value>(&l) {
                    Ok(Value::Object(m)) => Ok(m),
                    Ok(other) => bail!("line {} is not a JSON object: {other}", i + 1),
                    Err(e) => bail!("line {} is not valid JSON: {e}", i + 1),
                }
            })
            .collect(),
        "csv" => {
            let mut reader = csv::Reader::from_reader(text.as_bytes());
            let headers = reader.headers()?.clone();
            reader
                .records()
                .enumerate()
                .map(|(i, r)| {
                    let r = r.with_context(|| format!("CSV record {}", i + 1))?;
                    Ok(headers
                        .iter()
                        .zip(r.iter())
                        .map(|(h, v)| (h.to_owned(), Value::String(v.to_owned())))
                        .collect())
                })
                .collect()
        }
        other => bail!("--input-format must be jsonl or csv, got {other:?}"),
    }
}

/// Parquet rows as JSON objects (through the arrow reader).
fn read_parquet(args: &WriteArgs) -> Result<Vec<Map<String, Value>>> {
    if args.input == "-" {
        bail!("parquet input must be a file, not stdin");
    }
    let file = std::fs::File::open(&args.input)
        .with_context(|| format!("opening --input {}", args.input))?;
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .with_context(|| format!("{} is not a readable Parquet file", args.input))?
        .build()?;
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch?;
        let schema = batch.schema();
        for r in 0..batch.num_rows() {
            rows.push(
                schema
                    .fields()
                    .iter()
                    .enumerate()
                    .map(|(i, f)| {
                        Ok((
                            f.name().clone(),
                            shardyfusion::writer::json_at(batch.column(i), r)?,
                        ))
                    })
                    .collect::<Result<_>>()?,
            );
        }
    }
    Ok(rows)
}

fn key_of(row: &Map<String, Value>, col: &str, enc: KeyEncoding, line: usize) -> Result<Key> {
    let v = row
        .get(col)
        .with_context(|| format!("row {line} has no key column {col:?}"))?;
    Ok(match (enc, v) {
        (KeyEncoding::U64Be | KeyEncoding::U32Be, Value::Number(n)) => Key::Int(
            n.as_i64()
                .with_context(|| format!("row {line}: key {n} is not a signed 64-bit integer"))?,
        ),
        (KeyEncoding::U64Be | KeyEncoding::U32Be, Value::String(s)) => Key::Int(
            s.trim()
                .parse()
                .with_context(|| format!("row {line}: key {s:?} is not an integer ({enc} keys)"))?,
        ),
        (KeyEncoding::Utf8, Value::String(s)) => Key::Str(s.clone()),
        (KeyEncoding::Raw, Value::String(s)) => Key::Bytes(s.as_bytes().to_vec()),
        (KeyEncoding::Utf8 | KeyEncoding::Raw, Value::Number(n)) => Key::Str(n.to_string()),
        (_, other) => bail!("row {line}: key {other} does not fit the {enc} key encoding"),
    })
}

fn cel_value(v: &Value, ty: CelColumnType, col: &str, line: usize) -> Result<CelValue> {
    let bad = || anyhow::anyhow!("row {line}: column {col:?} = {v} is not a valid {ty}");
    let s = v.as_str();
    Ok(match ty {
        CelColumnType::Int => CelValue::Int(
            v.as_i64()
                .or_else(|| s.and_then(|s| s.parse().ok()))
                .ok_or_else(bad)?,
        ),
        CelColumnType::Uint => CelValue::Uint(
            v.as_u64()
                .or_else(|| s.and_then(|s| s.parse().ok()))
                .ok_or_else(bad)?,
        ),
        CelColumnType::Double => CelValue::Double(
            v.as_f64()
                .or_else(|| s.and_then(|s| s.parse().ok()))
                .ok_or_else(bad)?,
        ),
        CelColumnType::Bool => CelValue::Bool(
            v.as_bool()
                .or_else(|| s.and_then(|s| s.parse().ok()))
                .ok_or_else(bad)?,
        ),
        CelColumnType::String => CelValue::Str(s.map_or_else(|| v.to_string(), str::to_owned)),
        CelColumnType::Bytes => {
            CelValue::Bytes(s.map_or_else(|| v.to_string(), str::to_owned).into_bytes())
        }
    })
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

/// A progress bar fed by the writer's metric events (rows written, shards done).
struct Progress {
    bar: indicatif::ProgressBar,
    shards_done: std::sync::atomic::AtomicU64,
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
            E::WriteBatchWritten => self.bar.inc(field("batch_size").unwrap_or(0.0) as u64),
            E::WriteShardCompleted => {
                let done = self
                    .shards_done
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                    + 1;
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
    let rows = read_rows(args)?;
    let progress = if !args.no_progress && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        let bar = indicatif::ProgressBar::new(rows.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {pos}/{len} rows [{elapsed_precise}] {per_sec} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let p = std::sync::Arc::new(Progress {
            bar,
            shards_done: Default::default(),
        });
        b = b.metrics_collector(p.clone());
        Some(p)
    } else {
        None
    };
    let config = b.build()?;
    let mut ob = WriteOptions::builder()
        .parallel(args.parallel)
        .sort_within_partitions(args.sort_within_partitions);
    if let Some(r) = args.max_writes_per_second {
        ob = ob.max_writes_per_second(r);
    }
    if let Some(r) = args.max_write_bytes_per_second {
        ob = ob.max_write_bytes_per_second(r);
    }
    let options = ob.build()?;

    if !args.no_progress && progress.is_none() {
        eprintln!("shardy write: {} rows read from {}", rows.len(), args.input);
    }
    // Extract keys, values and routing contexts up front so errors name the row.
    let cel_cols = config.sharding().cel_columns.clone();
    let multi = !cel_cols.is_empty() && !config.sharding().is_key_only();
    let mut prepared: Vec<(Key, Vec<u8>, Option<RoutingContext>)> = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        let line = i + 1;
        let key = key_of(row, &args.key_col, enc, line)?;
        let value = match (&args.value_col, &args.value_json_cols) {
            (Some(c), _) => match row.get(c) {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::String(s)) => s.clone().into_bytes(),
                Some(other) => to_string(other, JsonStyle::Compact).into_bytes(),
            },
            (None, Some(cols)) => {
                let cols: Vec<&String> = cols.iter().filter(|c| !c.is_empty()).collect();
                let obj: Map<String, Value> = if cols.is_empty() {
                    row.iter()
                        .filter(|(k, _)| **k != args.key_col)
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect()
                } else {
                    cols.iter()
                        .map(|c| ((*c).clone(), row.get(*c).cloned().unwrap_or(Value::Null)))
                        .collect()
                };
                to_string(&Value::Object(obj), JsonStyle::Compact).into_bytes()
            }
            (None, None) => {
                bail!("choose the value: --value-col NAME or --value-json-cols [COL,…]")
            }
        };
        let rc = if multi {
            let mut c = RoutingContext::new();
            for (name, ty) in &cel_cols {
                let v = row
                    .get(name)
                    .with_context(|| format!("row {line} has no CEL column {name:?}"))?;
                c.insert(name.clone(), cel_value(v, *ty, name, line)?);
            }
            Some(c)
        } else {
            None
        };
        prepared.push((key, value, rc));
    }
    let writer = ShardedWriter::new(config)?.with_storage(ctx.resolver.clone());
    let result = if multi {
        writer
            .write_with_columns(
                &prepared,
                |r| r.0.clone(),
                |r| r.1.clone(),
                |r| r.2.clone().unwrap_or_default(),
                &options,
            )
            .await?
    } else {
        writer
            .write(&prepared, |r| r.0.clone(), |r| r.1.clone(), &options)
            .await?
    };
    if let Some(p) = &progress {
        p.bar.finish_and_clear();
    }
    let d = result.stats.durations;
    let record: Map<String, Value> = [
        ("op", json!("write")),
        ("run_id", json!(result.run_id)),
        ("manifest_ref", json!(result.manifest_ref.manifest_ref)),
        ("num_dbs", json!(result.num_dbs)),
        ("num_winners", json!(result.stats.num_winners)),
        ("rows_written", json!(result.stats.rows_written)),
        ("durations", json!({"sharding_ms": d.sharding_ms, "write_ms": d.write_ms, "manifest_ms": d.manifest_ms, "total_ms": d.total_ms})),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let rate = result.stats.rows_written as f64 / (d.total_ms.max(1) as f64 / 1000.0);
    ctx.out.record(&record, || {
        vec![format!(
            "wrote {} rows into {} shards ({} non-empty) in {} ms ({rate:.0} rows/s)\nmanifest {}",
            result.stats.rows_written,
            result.num_dbs,
            result.stats.num_winners,
            d.total_ms,
            result.manifest_ref.manifest_ref
        )]
    });
    Ok(ExitCode::SUCCESS)
}
