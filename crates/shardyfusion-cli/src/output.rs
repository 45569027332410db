//! Output formats (`json`, `jsonl`, `table`, `text`) and value encodings (`base64`, `hex`,
//! `utf8`).

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
    /// Unknown formats fall back to `jsonl`.
    pub(crate) fn parse(s: &str) -> Format {
        match s {
            "json" => Format::Json,
            "table" => Format::Table,
            "text" => Format::Text,
            _ => Format::Jsonl,
        }
    }
}

/// Output settings, and where records go (stdout, or the `exec --output` file).
pub(crate) struct Out {
    pub(crate) format: Format,
    value_encoding: String,
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
    pub(crate) fn new(
        format: Format,
        value_encoding: Option<&str>,
        null_repr: Option<String>,
    ) -> Out {
        let enc = match value_encoding {
            Some("hex") => "hex",
            Some("utf8") => "utf8",
            _ => "base64",
        };
        Out {
            format,
            value_encoding: enc.to_owned(),
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

    /// A value as text in the configured encoding.
    pub(crate) fn value(&self, bytes: &[u8]) -> String {
        match self.value_encoding.as_str() {
            "hex" => bytes.iter().map(|b| format!("{b:02x}")).collect(),
            "utf8" => String::from_utf8_lossy(bytes).into_owned(),
            _ => base64::engine::general_purpose::STANDARD.encode(bytes),
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
