//! `reader.toml` and `credentials.toml`: lookup order, fields, environment overrides.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use serde::Deserialize;

/// `[reader]`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ReaderSection {
    pub(crate) current_url: Option<String>,
    pub(crate) s3_prefix: Option<String>,
    pub(crate) credentials_profile: Option<String>,
    pub(crate) max_workers: Option<usize>,
    pub(crate) pool_checkout_timeout: Option<f64>,
    pub(crate) thread_safety: Option<String>,
    pub(crate) reader_backend: Option<String>,
    /// URL prefixes that manifest refs and `db_url`s may name besides the store's own bucket
    /// or directory (SPEC 15.3).
    pub(crate) allowed_url_prefixes: Vec<String>,
}

/// `[manifest_store]`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct StoreSection {
    pub(crate) backend: Option<String>,
    pub(crate) dsn: Option<String>,
    pub(crate) path: Option<String>,
    pub(crate) table_name: Option<String>,
    pub(crate) ensure_table: Option<bool>,
    /// Write `_CURRENT` with plain PUTs (servers without conditional writes).
    pub(crate) unconditional_pointer_writes: Option<bool>,
}

/// `[output]`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct OutputSection {
    pub(crate) format: Option<String>,
    /// `auto`, `utf8`, `json`, `base64` or `hex` (`value_encoding` is the older name).
    #[serde(alias = "value_encoding")]
    pub(crate) value_format: Option<String>,
    pub(crate) null_repr: Option<String>,
}

/// The whole `reader.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct ReaderConfig {
    pub(crate) reader: ReaderSection,
    pub(crate) manifest_store: StoreSection,
    pub(crate) output: OutputSection,
}

/// One profile of `credentials.toml`.
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(default)]
pub(crate) struct Profile {
    pub(crate) endpoint_url: Option<String>,
    pub(crate) region: Option<String>,
    pub(crate) access_key_id: Option<String>,
    pub(crate) secret_access_key: Option<String>,
    pub(crate) session_token: Option<String>,
    pub(crate) addressing_style: Option<String>,
    pub(crate) verify_ssl: Option<toml::Value>,
    pub(crate) connect_timeout: Option<f64>,
    pub(crate) read_timeout: Option<f64>,
    pub(crate) max_attempts: Option<u32>,
    pub(crate) anonymous: Option<bool>,
}

fn home_config(name: &str) -> Option<PathBuf> {
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config/shardy").join(name))
}

/// First existing of: flag, env var, `./<name>`, `~/.config/shardy/<name>`.
fn locate(flag: Option<&Path>, env: &str, name: &str) -> Result<Option<PathBuf>> {
    if let Some(p) = flag {
        if !p.exists() {
            bail!("config file {} does not exist", p.display());
        }
        return Ok(Some(p.to_path_buf()));
    }
    if let Some(p) = std::env::var_os(env).filter(|v| !v.is_empty()) {
        let p = PathBuf::from(p);
        if !p.exists() {
            bail!("{env}={} does not exist", p.display());
        }
        return Ok(Some(p));
    }
    let local = PathBuf::from(name);
    if local.exists() {
        return Ok(Some(local));
    }
    Ok(home_config(name).filter(|p| p.exists()))
}

/// Every key of `reader.toml`: section, key, what it does. The warnings for unknown keys and
/// `docs/reference/config.md` are made from this table (a test checks the parser accepts
/// every key in it).
pub(crate) const READER_KEYS: &[(&str, &str, &str)] = &[
    (
        "reader",
        "current_url",
        "The `_CURRENT` object to read (`s3://bucket/prefix/_CURRENT` or a path); `--current-url` and `SHARDY_CURRENT` win.",
    ),
    (
        "reader",
        "s3_prefix",
        "The snapshot prefix, for database manifest stores (`postgres`, `sqlite`) whose manifests name no prefix of their own.",
    ),
    (
        "reader",
        "credentials_profile",
        "The `credentials.toml` profile to use (default `default`).",
    ),
    (
        "reader",
        "allowed_url_prefixes",
        "URL prefixes that manifest refs and shard URLs may name besides the store's own bucket or directory (a list).",
    ),
    (
        "reader",
        "max_workers",
        "Accepted for compatibility with the Python CLI; the Rust reader sizes its own concurrency.",
    ),
    (
        "reader",
        "pool_checkout_timeout",
        "Accepted for compatibility with the Python CLI (seconds).",
    ),
    (
        "reader",
        "thread_safety",
        "Accepted for compatibility with the Python CLI (`lock` or `pool`).",
    ),
    (
        "reader",
        "reader_backend",
        "Only `slatedb` (the default) is supported.",
    ),
    (
        "manifest_store",
        "backend",
        "`s3` (objects under the prefix: S3, local directory, memory; default), `postgres` or `sqlite`.",
    ),
    (
        "manifest_store",
        "dsn",
        "PostgreSQL connection string (`postgres` backend; also `SHARDY_MANIFEST_DSN`).",
    ),
    ("manifest_store", "path", "SQLite file (`sqlite` backend)."),
    (
        "manifest_store",
        "table_name",
        "Manifest table of a database backend (default `shardyfusion_manifests`).",
    ),
    (
        "manifest_store",
        "ensure_table",
        "Create the PostgreSQL tables when missing (default true).",
    ),
    (
        "manifest_store",
        "unconditional_pointer_writes",
        "Write `_CURRENT` with plain PUTs, for servers without conditional writes (default false).",
    ),
    (
        "output",
        "format",
        "`json`, `jsonl`, `table` or `text` (default: `text` at a terminal, `jsonl` when piped); `--output-format` wins.",
    ),
    (
        "output",
        "value_format",
        "`auto`, `utf8`, `json`, `base64` or `hex` (default: `auto` for text and table, `base64` for JSON); `--value-format` wins. `value_encoding` is the older name.",
    ),
    (
        "output",
        "null_repr",
        "What a missing value prints as (default `null`).",
    ),
];

/// Every key of a `credentials.toml` profile (`[default]`, `[prod]`, …) and what it does.
pub(crate) const CREDENTIAL_KEYS: &[(&str, &str)] = &[
    (
        "endpoint_url",
        "S3-compatible endpoint, e.g. `http://127.0.0.1:9000` (`http://` allows plain HTTP).",
    ),
    ("region", "Region name."),
    (
        "access_key_id",
        "Access key id (with `secret_access_key`; otherwise the default AWS chain is used).",
    ),
    ("secret_access_key", "Secret access key."),
    ("session_token", "Session token of temporary credentials."),
    ("addressing_style", "`auto`, `path` or `virtual`."),
    (
        "verify_ssl",
        "`false` to skip TLS verification, or a CA bundle path.",
    ),
    (
        "connect_timeout",
        "TCP connect timeout in seconds (default 10).",
    ),
    (
        "read_timeout",
        "Per-request timeout in seconds (default 30).",
    ),
    (
        "max_attempts",
        "Attempts per request, retries included (default 3).",
    ),
    (
        "anonymous",
        "Send unsigned requests (public buckets; default false).",
    ),
];

/// Warn about keys `known` does not list: a misspelt key would otherwise be ignored.
fn warn_unknown(path: &Path, table: &toml::Table, known: &[(&str, &str)]) {
    for (section, value) in table {
        let Some(keys) = value.as_table() else {
            continue;
        };
        for key in keys.keys() {
            if !known
                .iter()
                .any(|(s, k)| (s.is_empty() || s == section) && k == key)
            {
                let near = known
                    .iter()
                    .map(|(_, k)| *k)
                    .find(|k| similar(k, key))
                    .map(|k| format!(" (did you mean {k:?}?)"))
                    .unwrap_or_default();
                eprintln!(
                    "warning: {}: unknown key {key:?} in [{section}] is ignored{near}",
                    path.display()
                );
            }
        }
    }
}

/// Whether two keys differ by at most two edits (a typo).
fn similar(a: &str, b: &str) -> bool {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push(
                (prev[j] + usize::from(ca != cb))
                    .min(prev[j + 1] + 1)
                    .min(cur[j] + 1),
            );
        }
        prev = cur;
    }
    prev[b.len()] <= 2
}

/// `docs/reference/config.md`: every key of `reader.toml` and `credentials.toml`.
pub(crate) fn reference_markdown() -> String {
    let mut out = String::from(
        "<!-- Generated by `cargo xtask codegen` from shardyfusion-cli/src/config.rs. Do not edit. -->\n\n\
         # `reader.toml` and `credentials.toml`\n\n\
         `shardy` reads `reader.toml` from `--config`, else `SHARDY_CONFIG`, else `./reader.toml`, else \
         `~/.config/shardy/reader.toml`; `credentials.toml` from `--credentials`, else \
         `SHARDY_CREDENTIALS`, else `./credentials.toml`, else `~/.config/shardy/credentials.toml` \
         (keep it `chmod 600`). Unknown keys are reported as warnings.\n\n## `reader.toml`\n",
    );
    let mut section = "";
    for (s, k, what) in READER_KEYS {
        if *s != section {
            section = s;
            out.push_str(&format!("\n### `[{s}]`\n\n| key | meaning |\n|---|---|\n"));
        }
        out.push_str(&format!("| `{k}` | {what} |\n"));
    }
    out.push_str(
        "\n## `credentials.toml`\n\nOne table per profile (`[default]`, `[prod]`, …; \
         `[reader].credentials_profile` picks one).\n\n| key | meaning |\n|---|---|\n",
    );
    for (k, what) in CREDENTIAL_KEYS {
        out.push_str(&format!("| `{k}` | {what} |\n"));
    }
    out
}

/// A TOML error without the offending line (it may hold a secret: a DSN password, a secret
/// key): the file, the line and column, and what is wrong.
fn redacted(path: &Path, text: &str, e: &toml::de::Error, what: &str) -> anyhow::Error {
    let at = e.span().map(|span| {
        let before = &text[..span.start.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        format!(" at line {line}, column {column}")
    });
    anyhow::anyhow!(
        "{} is not {what}{}: {}",
        path.display(),
        at.unwrap_or_default(),
        e.message()
    )
}

/// Load `reader.toml` (defaults when none is found).
pub(crate) fn load_reader(flag: Option<&Path>) -> Result<ReaderConfig> {
    let Some(path) = locate(flag, "SHARDY_CONFIG", "reader.toml")? else {
        return Ok(ReaderConfig::default());
    };
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let cfg: ReaderConfig =
        toml::from_str(&text).map_err(|e| redacted(&path, &text, &e, "a valid reader.toml"))?;
    if let Ok(table) = toml::from_str::<toml::Table>(&text) {
        let known: Vec<(&str, &str)> = READER_KEYS
            .iter()
            .map(|(s, k, _)| (*s, *k))
            .chain([("output", "value_encoding")])
            .collect();
        warn_unknown(&path, &table, &known);
    }
    if cfg
        .reader
        .reader_backend
        .as_deref()
        .is_some_and(|b| b != "slatedb")
    {
        bail!(
            "reader_backend {:?} is out of scope: only \"slatedb\" is supported",
            cfg.reader.reader_backend.unwrap_or_default()
        );
    }
    Ok(cfg)
}

/// Load the selected profile of `credentials.toml` (none when no file is found).
pub(crate) fn load_profile(flag: Option<&Path>, profile: &str) -> Result<Option<Profile>> {
    let Some(path) = locate(flag, "SHARDY_CREDENTIALS", "credentials.toml")? else {
        return Ok(None);
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if let Ok(meta) = std::fs::metadata(&path)
            && meta.permissions().mode() & 0o077 != 0
        {
            eprintln!(
                "warning: {} is readable by group or others (mode {:o}); run `chmod 600` on it",
                path.display(),
                meta.permissions().mode() & 0o777
            );
        }
    }
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let table: toml::Table =
        toml::from_str(&text).map_err(|e| redacted(&path, &text, &e, "valid TOML"))?;
    let known: Vec<(&str, &str)> = CREDENTIAL_KEYS.iter().map(|(k, _)| ("", *k)).collect();
    warn_unknown(&path, &table, &known);
    let value = table.get(profile).with_context(|| {
        format!(
            "credentials profile {profile:?} not found in {}",
            path.display()
        )
    })?;
    let p: Profile = value
        .clone()
        .try_into()
        .with_context(|| format!("profile {profile:?} in {} is invalid", path.display()))?;
    Ok(Some(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_key_parses() {
        let mut text = String::new();
        let mut section = "";
        for (s, k, _) in READER_KEYS {
            if *s != section {
                section = s;
                text.push_str(&format!("[{s}]\n"));
            }
            let value = match *k {
                "allowed_url_prefixes" => "[]",
                "max_workers" => "2",
                "pool_checkout_timeout" => "1.5",
                "ensure_table" | "unconditional_pointer_writes" => "true",
                "reader_backend" => "\"slatedb\"",
                _ => "\"x\"",
            };
            text.push_str(&format!("{k} = {value}\n"));
        }
        let cfg: ReaderConfig = toml::from_str(&text).unwrap();
        assert_eq!(cfg.output.value_format.as_deref(), Some("x"));
        let mut profile = String::new();
        for (k, _) in CREDENTIAL_KEYS {
            let value = match *k {
                "connect_timeout" | "read_timeout" => "1.0",
                "max_attempts" => "3",
                "anonymous" => "false",
                _ => "\"x\"",
            };
            profile.push_str(&format!("{k} = {value}\n"));
        }
        let p: Profile = toml::from_str(&profile).unwrap();
        assert_eq!(p.region.as_deref(), Some("x"));
    }

    #[test]
    fn typos_are_near_their_keys() {
        assert!(similar("current_url", "curent_url"));
        assert!(!similar("current_url", "format"));
    }
}
