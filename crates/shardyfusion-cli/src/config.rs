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

/// Load `reader.toml` (defaults when none is found).
pub(crate) fn load_reader(flag: Option<&Path>) -> Result<ReaderConfig> {
    let Some(path) = locate(flag, "SHARDY_CONFIG", "reader.toml")? else {
        return Ok(ReaderConfig::default());
    };
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let cfg: ReaderConfig = toml::from_str(&text)
        .with_context(|| format!("{} is not a valid reader.toml", path.display()))?;
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
        toml::from_str(&text).with_context(|| format!("{} is not valid TOML", path.display()))?;
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
