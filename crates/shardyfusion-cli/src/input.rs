//! `shardy write` input: a file, a directory or glob of part files, stdin, or object-store URLs,
//! read one part at a time as Arrow batches (JSONL and CSV with schema inference, Parquet), so
//! memory does not grow with the input.

use std::fs::File;
use std::io::{BufRead, BufReader, Cursor, Read, Seek};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context as _, Result, bail};
use arrow_array::RecordBatch;
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef};
use futures::StreamExt as _;
use shardyfusion::storage::StorageResolver;
use shardyfusion::storage::object_store::ObjectStoreExt as _;

/// Rows sampled to infer a JSONL or CSV schema.
const INFER_ROWS: usize = 10_000;

/// The input formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Jsonl,
    Csv,
    Parquet,
}

impl Format {
    fn of_name(name: &str) -> Option<Format> {
        match name
            .rsplit_once('.')
            .map(|(_, e)| e.to_ascii_lowercase())
            .as_deref()
        {
            Some("jsonl" | "ndjson" | "json") => Some(Format::Jsonl),
            Some("csv") => Some(Format::Csv),
            Some("parquet" | "pq") => Some(Format::Parquet),
            _ => None,
        }
    }

    fn parse(s: &str) -> Result<Format> {
        match s {
            "jsonl" | "ndjson" | "json" => Ok(Format::Jsonl),
            "csv" => Ok(Format::Csv),
            "parquet" => Ok(Format::Parquet),
            other => bail!("--input-format must be jsonl, csv or parquet, got {other:?}"),
        }
    }
}

/// One part of the input.
#[derive(Debug, Clone)]
pub(crate) enum Part {
    Stdin,
    Local(PathBuf),
    /// An object-store URL, read through the storage resolver.
    Remote(String),
}

impl Part {
    pub(crate) fn name(&self) -> String {
        match self {
            Part::Stdin => "<stdin>".to_owned(),
            Part::Local(p) => p.display().to_string(),
            Part::Remote(u) => u.clone(),
        }
    }
}

/// The whole input: its parts in order, its format, and what is known of its size.
pub(crate) struct Input {
    pub(crate) parts: Vec<Part>,
    pub(crate) format: Format,
    /// Rows in all parts, when the format says (Parquet footers).
    pub(crate) total_rows: Option<u64>,
    /// Bytes in all parts, when known.
    pub(crate) total_bytes: Option<u64>,
    resolver: StorageResolver,
    schema: Option<SchemaRef>,
}

/// `*` and `?` glob matching on one name.
fn glob_match(pattern: &str, name: &str) -> bool {
    fn go(p: &[u8], n: &[u8]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], n) || (!n.is_empty() && go(p, &n[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &n[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), name.as_bytes())
}

/// Whether a file found in a listed directory or prefix is a part of the input: not hidden
/// (`.`) or a marker (`_SUCCESS`), and of the format (the given one, or any known one).
fn listed(name: &str, flag: Option<Format>) -> bool {
    !name.starts_with('.')
        && !name.starts_with('_')
        && match flag {
            Some(f) => Format::of_name(name).is_none_or(|g| g == f),
            None => Format::of_name(name).is_some(),
        }
}

fn is_url(s: &str) -> bool {
    s.contains("://")
}

impl Input {
    /// Find the parts of `--input`: `-`, a file, a directory (its files of the format, sorted),
    /// a glob in the last path segment, or the same as object-store URLs.
    pub(crate) async fn discover(
        input: &str,
        format: Option<&str>,
        schema: Option<&str>,
        resolver: &StorageResolver,
    ) -> Result<Input> {
        let flag = format.map(Format::parse).transpose()?;
        let schema = schema.map(parse_schema).transpose()?;
        let (parts, sizes): (Vec<Part>, Vec<Option<u64>>) = if input == "-" {
            (vec![Part::Stdin], vec![None])
        } else if is_url(input) && !input.starts_with("file://") {
            remote_parts(input, flag, resolver).await?
        } else {
            local_parts(input.strip_prefix("file://").unwrap_or(input), flag)?
        };
        let format = match flag {
            Some(f) => f,
            None => match parts.first() {
                Some(Part::Stdin) => bail!("--input - needs --input-format jsonl|csv|parquet"),
                Some(p) => Format::of_name(&p.name()).with_context(|| {
                    format!(
                        "cannot tell the format of {} from its extension: pass --input-format \
                         jsonl|csv|parquet",
                        p.name()
                    )
                })?,
                None => bail!("--input {input:?} matches no file"),
            },
        };
        if parts.is_empty() {
            bail!("--input {input:?} matches no file");
        }
        let total_bytes = sizes.iter().copied().sum::<Option<u64>>();
        let mut me = Input {
            parts,
            format,
            total_rows: None,
            total_bytes,
            resolver: resolver.clone(),
            schema,
        };
        if format == Format::Parquet && me.parts.iter().all(|p| matches!(p, Part::Local(_))) {
            let mut rows = 0u64;
            for p in &me.parts {
                if let Part::Local(path) = p {
                    let f =
                        File::open(path).with_context(|| format!("opening {}", path.display()))?;
                    let meta = parquet::file::metadata::ParquetMetaDataReader::new()
                        .parse_and_finish(&f)
                        .with_context(|| {
                            format!("{} is not a readable Parquet file", path.display())
                        })?;
                    rows += u64::try_from(meta.file_metadata().num_rows()).unwrap_or(0);
                }
            }
            me.total_rows = Some(rows);
        }
        Ok(me)
    }

    /// Whether the input can be read twice (to count rows): everything but stdin.
    pub(crate) fn rereadable(&self) -> bool {
        !self.parts.iter().any(|p| matches!(p, Part::Stdin))
    }

    /// The batches of every part in order, each part opened when the previous one is done;
    /// `bytes` counts the input bytes read. Errors name the part. Meant for a thread of its own
    /// (it reads files); `rt` drives object-store downloads.
    pub(crate) fn batches(
        &self,
        batch_size: usize,
        bytes: Arc<AtomicU64>,
        starts: PartStarts,
        rt: tokio::runtime::Handle,
    ) -> impl Iterator<Item = std::result::Result<RecordBatch, ArrowError>> + Send + use<> {
        let parts = self.parts.clone();
        let (format, resolver, schema) = (self.format, self.resolver.clone(), self.schema.clone());
        let mut current: Option<(String, Batches)> = None;
        let mut next_part = 0usize;
        let mut rows = 0u64;
        std::iter::from_fn(move || {
            loop {
                if let Some((name, it)) = current.as_mut() {
                    match it.next() {
                        Some(Ok(b)) => {
                            rows += b.num_rows() as u64;
                            return Some(Ok(b));
                        }
                        Some(Err(e)) => {
                            let name = name.clone();
                            current = None;
                            next_part = parts.len();
                            return Some(Err(ArrowError::ExternalError(
                                format!("{name}: {e}").into(),
                            )));
                        }
                        None => current = None,
                    }
                }
                let part = parts.get(next_part)?.clone();
                next_part += 1;
                match open_part(
                    &part,
                    format,
                    schema.clone(),
                    batch_size,
                    &resolver,
                    &rt,
                    bytes.clone(),
                ) {
                    Ok(it) => {
                        starts.opened(rows, part.name());
                        current = Some((part.name(), it));
                    }
                    Err(e) => {
                        next_part = parts.len();
                        return Some(Err(ArrowError::ExternalError(
                            format!("{}: {e:#}", part.name()).into(),
                        )));
                    }
                }
            }
        })
    }
}

/// Where each part starts in the input's row order, filled as parts are opened: turns the
/// writer's input row number into a file and a row in it.
#[derive(Clone, Default)]
pub(crate) struct PartStarts(Arc<std::sync::Mutex<Vec<(u64, String)>>>);

impl PartStarts {
    fn opened(&self, first_row: u64, name: String) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((first_row, name));
    }

    /// The part holding input row `row` (0-based) and the row's 1-based number in it.
    pub(crate) fn locate(&self, row: u64) -> Option<(String, u64)> {
        let starts = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let i = starts
            .partition_point(|(first, _)| *first <= row)
            .checked_sub(1)?;
        let (first, name) = &starts[i];
        Some((name.clone(), row - first + 1))
    }
}

/// `name:type,…` with types int64, int32, uint64, float64, bool, utf8, binary.
fn parse_schema(spec: &str) -> Result<SchemaRef> {
    let fields = spec
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|f| {
            let (name, ty) = f
                .split_once(':')
                .with_context(|| format!("--schema entry {f:?} is not NAME:TYPE"))?;
            let ty = match ty.trim() {
                "int64" | "int" => DataType::Int64,
                "int32" => DataType::Int32,
                "uint64" => DataType::UInt64,
                "float64" | "double" | "float" => DataType::Float64,
                "bool" | "boolean" => DataType::Boolean,
                "utf8" | "string" | "str" => DataType::Utf8,
                "binary" | "bytes" => DataType::Binary,
                other => bail!(
                    "--schema type {other:?} of {name:?} is not one of int64, int32, uint64, \
                     float64, bool, utf8, binary"
                ),
            };
            Ok(Field::new(name.trim(), ty, true))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Arc::new(Schema::new(fields)))
}

fn local_parts(input: &str, flag: Option<Format>) -> Result<(Vec<Part>, Vec<Option<u64>>)> {
    let path = Path::new(input);
    let files: Vec<PathBuf> = if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("listing {input}"))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .filter(|p| {
                let name = p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                listed(&name, flag)
            })
            .collect();
        files.sort();
        files
    } else if input.contains(['*', '?']) {
        let (dir, pattern) = match input.rsplit_once('/') {
            Some((d, p)) => (if d.is_empty() { "/" } else { d }, p),
            None => (".", input),
        };
        if dir.contains(['*', '?']) {
            bail!("--input {input:?}: a glob may only be in the last path segment");
        }
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("listing {dir}"))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_file()
                    && p.file_name()
                        .is_some_and(|n| glob_match(pattern, &n.to_string_lossy()))
            })
            .collect();
        files.sort();
        files
    } else if path.is_file() {
        vec![path.to_path_buf()]
    } else {
        bail!("--input {input} does not exist");
    };
    let sizes = files
        .iter()
        .map(|f| std::fs::metadata(f).ok().map(|m| m.len()))
        .collect();
    Ok((files.into_iter().map(Part::Local).collect(), sizes))
}

async fn remote_parts(
    input: &str,
    flag: Option<Format>,
    resolver: &StorageResolver,
) -> Result<(Vec<Part>, Vec<Option<u64>>)> {
    let (base, pattern) = match input.rsplit_once('/') {
        Some((b, p)) if p.contains(['*', '?']) => (b.to_owned(), Some(p.to_owned())),
        _ => (input.trim_end_matches('/').to_owned(), None),
    };
    let loc = resolver.resolve(&base)?;
    // One object, when the URL names one.
    if pattern.is_none()
        && let Ok(meta) = loc.store.head(&loc.path).await
    {
        return Ok((vec![Part::Remote(loc.url.clone())], vec![Some(meta.size)]));
    }
    let mut listing = loc.store.list(Some(&loc.path));
    let mut found = Vec::new();
    while let Some(meta) = listing.next().await {
        let meta = meta.with_context(|| format!("listing {base}"))?;
        let Some(name) = meta.location.filename().map(str::to_owned) else {
            continue;
        };
        // Only the objects directly under the prefix.
        if meta.location.parts().count() != loc.path.parts().count() + 1 {
            continue;
        }
        let wanted = match &pattern {
            Some(p) => glob_match(p, &name),
            None => listed(&name, flag),
        };
        if wanted {
            found.push((format!("{}/{name}", loc.url), meta.size));
        }
    }
    found.sort();
    Ok(found
        .into_iter()
        .map(|(u, s)| (Part::Remote(u), Some(s)))
        .unzip())
}

type Batches = Box<dyn Iterator<Item = std::result::Result<RecordBatch, ArrowError>> + Send>;

/// Batches read from a temporary file, which lives as long as they are being read.
struct KeepAlive<I> {
    inner: I,
    _file: Option<tempfile_like::TempPath>,
}

impl<I: Iterator> Iterator for KeepAlive<I> {
    type Item = I::Item;
    fn next(&mut self) -> Option<I::Item> {
        self.inner.next()
    }
}

/// A reader that counts the bytes read through it.
struct Counting<R> {
    inner: R,
    bytes: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Counting<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        self.inner.fill_buf()
    }
    fn consume(&mut self, amt: usize) {
        self.bytes.fetch_add(amt as u64, Ordering::Relaxed);
        self.inner.consume(amt);
    }
}

/// A remote part, downloaded to a temporary file first (bounded by disk, not memory). Runs on
/// the input thread, which drives the download on the runtime through `rt`.
fn fetch(
    url: &str,
    resolver: &StorageResolver,
    rt: &tokio::runtime::Handle,
) -> Result<tempfile_like::TempPath> {
    let loc = resolver.resolve(url)?;
    let path = tempfile_like::TempPath::new()?;
    let file_path = path.path().to_path_buf();
    rt.block_on(async {
        let got = loc.store.get(&loc.path).await?;
        let mut stream = got.into_stream();
        let mut out = std::io::BufWriter::new(File::create(&file_path)?);
        while let Some(chunk) = stream.next().await {
            std::io::Write::write_all(&mut out, &chunk?)?;
        }
        std::io::Write::flush(&mut out)?;
        anyhow::Ok(())
    })
    .with_context(|| format!("downloading {url}"))?;
    Ok(path)
}

mod tempfile_like {
    //! A temporary file path removed on drop.
    use std::path::{Path, PathBuf};

    pub(crate) struct TempPath(PathBuf);

    impl TempPath {
        pub(crate) fn new() -> anyhow::Result<Self> {
            let name = format!(
                "shardy-input-{}-{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or_default()
            );
            Ok(TempPath(std::env::temp_dir().join(name)))
        }
        pub(crate) fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

fn open_part(
    part: &Part,
    format: Format,
    schema: Option<SchemaRef>,
    batch_size: usize,
    resolver: &StorageResolver,
    rt: &tokio::runtime::Handle,
    bytes: Arc<AtomicU64>,
) -> Result<Batches> {
    match part {
        Part::Stdin => {
            let stdin = BufReader::with_capacity(1 << 20, std::io::stdin());
            open_stream(stdin, format, schema, batch_size, bytes)
        }
        Part::Local(path) => {
            let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
            open_file(f, format, schema, batch_size, bytes, None)
        }
        Part::Remote(url) => {
            let tmp = fetch(url, resolver, rt)?;
            let f = File::open(tmp.path())?;
            open_file(f, format, schema, batch_size, bytes, Some(tmp))
        }
    }
}

fn open_file(
    f: File,
    format: Format,
    schema: Option<SchemaRef>,
    batch_size: usize,
    bytes: Arc<AtomicU64>,
    keep: Option<tempfile_like::TempPath>,
) -> Result<Batches> {
    match format {
        Format::Parquet => {
            let size = f.metadata().map(|m| m.len()).unwrap_or(0);
            let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
                .context("not a readable Parquet file")?
                .with_batch_size(batch_size)
                .build()?;
            bytes.fetch_add(size, Ordering::Relaxed);
            Ok(Box::new(KeepAlive {
                inner: reader,
                _file: keep,
            }))
        }
        _ => {
            let mut r = BufReader::with_capacity(1 << 20, f);
            let schema = match schema {
                Some(s) => s,
                None => {
                    let s = infer(&mut r, format)?;
                    r.rewind()?;
                    s
                }
            };
            let it = text_reader(Counting { inner: r, bytes }, format, schema, batch_size)?;
            Ok(Box::new(KeepAlive {
                inner: it,
                _file: keep,
            }))
        }
    }
}

/// Stdin: sample the first rows for the schema, then read them and the rest in one pass.
fn open_stream<R: BufRead + Send + 'static>(
    mut r: R,
    format: Format,
    schema: Option<SchemaRef>,
    batch_size: usize,
    bytes: Arc<AtomicU64>,
) -> Result<Batches> {
    if format == Format::Parquet {
        // Parquet needs random access: read stdin into a temporary file.
        let tmp = tempfile_like::TempPath::new()?;
        let mut out = File::create(tmp.path())?;
        std::io::copy(&mut r, &mut out)?;
        let f = File::open(tmp.path())?;
        return open_file(f, format, schema, batch_size, bytes, Some(tmp));
    }
    let mut head = Vec::new();
    let mut lines = 0;
    while lines < INFER_ROWS + 1 {
        let n = r.read_until(b'\n', &mut head)?;
        if n == 0 {
            break;
        }
        lines += 1;
    }
    let schema = match schema {
        Some(s) => s,
        None => infer(&mut Cursor::new(&head), format)?,
    };
    let chained = BufReader::new(Cursor::new(head).chain(r));
    let it = text_reader(
        Counting {
            inner: chained,
            bytes,
        },
        format,
        schema,
        batch_size,
    )?;
    Ok(Box::new(it))
}

fn infer<R: BufRead>(r: &mut R, format: Format) -> Result<SchemaRef> {
    Ok(Arc::new(match format {
        Format::Jsonl => {
            // Parse the sample line by line, so a bad line is named.
            let mut values = Vec::new();
            for (i, line) in r.lines().take(INFER_ROWS).enumerate() {
                let line = line?;
                if line.trim().is_empty() {
                    continue;
                }
                match serde_json::from_str::<serde_json::Value>(&line) {
                    Ok(v @ serde_json::Value::Object(_)) => values.push(v),
                    Ok(other) => bail!("line {} is not a JSON object: {other}", i + 1),
                    Err(e) => bail!("line {} is not valid JSON: {e}", i + 1),
                }
            }
            arrow_json::reader::infer_json_schema_from_iterator(values.into_iter().map(Ok))?
        }
        Format::Csv => {
            arrow_csv::reader::Format::default()
                .with_header(true)
                .infer_schema(r, Some(INFER_ROWS))?
                .0
        }
        Format::Parquet => bail!("Parquet carries its own schema"),
    }))
}

fn text_reader<R: BufRead + Send + 'static>(
    r: R,
    format: Format,
    schema: SchemaRef,
    batch_size: usize,
) -> Result<Batches> {
    Ok(match format {
        Format::Jsonl => Box::new(
            arrow_json::ReaderBuilder::new(schema)
                .with_batch_size(batch_size)
                .build(r)?,
        ),
        Format::Csv => Box::new(
            arrow_csv::ReaderBuilder::new(schema)
                .with_header(true)
                .with_batch_size(batch_size)
                .build_buffered(r)?,
        ),
        Format::Parquet => bail!("Parquet is read from a file"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("part-*.parquet", "part-00001.parquet"));
        assert!(!glob_match("part-*.parquet", "part-00001.csv"));
        assert!(glob_match("*", "x"));
        assert!(glob_match("a?c", "abc"));
    }

    #[test]
    fn schemas() {
        let s = parse_schema("id:int64, name:utf8").unwrap();
        assert_eq!(s.field(0).data_type(), &DataType::Int64);
        assert!(parse_schema("id:decimal").is_err());
        assert!(parse_schema("id").is_err());
    }
}
