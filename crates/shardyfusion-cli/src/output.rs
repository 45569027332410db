//! Output formats (`json`, `jsonl`, `table`, `text`) and value formats (`auto`, `utf8`,
//! `json`, `base64`, `hex`).

use std::io::Write as _;

use base64::Engine as _;
use serde_json::{Map, Value};

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Json,
    Jsonl,
    Table,
    Text,
}

impl Format {
    /// `json`, `jsonl`, `table` or `text`.
    pub(crate) fn parse(s: &str) -> anyhow::Result<Format> {
        Ok(match s {
            "json" => Format::Json,
            "jsonl" => Format::Jsonl,
            "table" => Format::Table,
            "text" => Format::Text,
            other => {
                anyhow::bail!("unknown output format {other:?}: use json, jsonl, table or text")
            }
        })
    }
}

/// How value bytes are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ValueFormat {
    /// JSON values as JSON, other UTF-8 as text, anything else as base64.
    Auto,
    /// UTF-8 text (invalid sequences replaced).
    Utf8,
    /// JSON (a value that is not JSON is an error).
    Json,
    /// Base64 (standard alphabet, padded).
    Base64,
    /// Lowercase hex.
    Hex,
}

impl ValueFormat {
    /// A `reader.toml` `[output].value_format` (or the older `value_encoding`) name.
    pub(crate) fn parse(s: &str) -> anyhow::Result<ValueFormat> {
        <ValueFormat as clap::ValueEnum>::from_str(s, false).map_err(|_| {
            anyhow::anyhow!("unknown value format {s:?}: use auto, utf8, json, base64 or hex")
        })
    }
}

/// Output settings, and where records go (stdout, or the `exec --output` file).
pub(crate) struct Out {
    pub(crate) format: Format,
    values: ValueFormat,
    pub(crate) null_repr: String,
    sink: Option<std::sync::Mutex<std::fs::File>>,
}

/// Python-style `json.dumps` with `", "`/`": "` and non-ASCII kept.
fn jsonl(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let items: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{}: {}", Value::String(k.clone()), jsonl(v)))
                .collect();
            format!("{{{}}}", items.join(", "))
        }
        Value::Array(a) => format!("[{}]", a.iter().map(jsonl).collect::<Vec<_>>().join(", ")),
        other => other.to_string(),
    }
}

impl Out {
    /// `values`: the chosen value format; by default `auto` for people (`text`, `table`) and
    /// `base64` for scripts (`json`, `jsonl`).
    pub(crate) fn new(
        format: Format,
        values: Option<ValueFormat>,
        null_repr: Option<String>,
    ) -> Out {
        let values = values.unwrap_or(match format {
            Format::Text | Format::Table => ValueFormat::Auto,
            Format::Json | Format::Jsonl => ValueFormat::Base64,
        });
        Out {
            format,
            values,
            null_repr: null_repr.unwrap_or_else(|| "null".to_owned()),
            sink: None,
        }
    }

    /// Send records to `file` instead of stdout.
    pub(crate) fn send_to_file(&mut self, file: std::fs::File) {
        self.sink = Some(std::sync::Mutex::new(file));
    }

    /// Downgrade `json` to `jsonl` (batch output is one record per line).
    pub(crate) fn line_oriented(&mut self) {
        if self.format == Format::Json {
            self.format = Format::Jsonl;
        }
    }

    /// A value for a JSON record: a JSON value (`auto` on JSON, `json`) or a string.
    pub(crate) fn value_json(&self, key: &str, bytes: &[u8]) -> anyhow::Result<Value> {
        Ok(match self.values {
            ValueFormat::Auto => match serde_json::from_slice::<Value>(bytes) {
                Ok(v) => v,
                Err(_) => Value::String(self.auto_text(bytes)),
            },
            ValueFormat::Json => serde_json::from_slice(bytes).map_err(|e| {
                anyhow::anyhow!(
                    "the value of key {key} is not JSON ({e}): use --value-format auto, utf8 or base64"
                )
            })?,
            _ => Value::String(self.value_text(key, bytes)?),
        })
    }

    /// A value as text for people (compact JSON for `json`).
    pub(crate) fn value_text(&self, key: &str, bytes: &[u8]) -> anyhow::Result<String> {
        Ok(match self.values {
            ValueFormat::Hex => bytes.iter().map(|b| format!("{b:02x}")).collect(),
            ValueFormat::Utf8 => String::from_utf8_lossy(bytes).into_owned(),
            ValueFormat::Base64 => base64::engine::general_purpose::STANDARD.encode(bytes),
            ValueFormat::Json => self.value_json(key, bytes)?.to_string(),
            ValueFormat::Auto => match serde_json::from_slice::<Value>(bytes) {
                Ok(v @ (Value::Object(_) | Value::Array(_))) => v.to_string(),
                _ => self.auto_text(bytes),
            },
        })
    }

    /// UTF-8 text, or base64 when the bytes are not UTF-8.
    fn auto_text(&self, bytes: &[u8]) -> String {
        match std::str::from_utf8(bytes) {
            Ok(s) => s.to_owned(),
            Err(_) => base64::engine::general_purpose::STANDARD.encode(bytes),
        }
    }

    /// Print one record: JSON (indented), JSONL (one line), or the given text lines.
    pub(crate) fn record(&self, record: &Map<String, Value>, text: impl FnOnce() -> Vec<String>) {
        let v = Value::Object(record.clone());
        let mut stdout: Box<dyn std::io::Write + '_> = match &self.sink {
            Some(f) => Box::new(FileGuard(f.lock().unwrap_or_else(|p| p.into_inner()))),
            None => Box::new(std::io::stdout().lock()),
        };
        let _ = match self.format {
            Format::Json => writeln!(
                stdout,
                "{}",
                serde_json::to_string_pretty(&v).unwrap_or_default()
            ),
            Format::Jsonl => writeln!(stdout, "{}", jsonl(&v)),
            Format::Table | Format::Text => {
                let mut r = Ok(());
                for line in text() {
                    r = r.and(writeln!(stdout, "{line}"));
                }
                r
            }
        };
    }
}

/// A fixed-width table of string cells.
pub(crate) fn table(headers: &[&str], rows: &[Vec<String>]) -> Vec<String> {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| -> String {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let mut out = vec![line(headers.iter().map(|h| (*h).to_owned()).collect())];
    out.push(line(widths.iter().map(|w| "-".repeat(*w)).collect()));
    out.extend(rows.iter().map(|r| line(r.clone())));
    out
}

/// A locked file writer.
struct FileGuard<'a>(std::sync::MutexGuard<'a, std::fs::File>);

impl std::io::Write for FileGuard<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}
