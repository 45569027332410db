//! `SqliteManifestStore`: the async `ManifestStore` face of the shared SQL logic, every file access on `spawn_blocking`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use shardyfusion_core::sql_store;
use shardyfusion_core::{
    Error, ErrorKind, ManifestRef, ManifestStore, ParsedManifest, PublishObserver,
    RequiredBuildMeta, RequiredShardMeta, Result,
};

use crate::backend::{SqliteSession, Tables};

/// A `ManifestStore` in a local SQLite file (created on first use).
#[derive(Debug, Clone)]
pub struct SqliteManifestStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    tables: Tables,
    /// `SQLite file <path>`, for messages.
    describe: String,
    /// Set once the file is in WAL mode with the tables created (both persist in the file).
    initialized: AtomicBool,
    /// URL prefixes `db_url`s may name besides the manifest's recorded prefix (SPEC 15.3).
    allowed: Vec<String>,
}

fn check_identifier(what: &str, name: &str) -> Result<()> {
    let mut b = name.bytes();
    let ok = matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::config(format!(
            "{what} must be a plain SQL identifier ([A-Za-z_][A-Za-z0-9_]*), got {name:?}"
        )))
    }
}

impl SqliteManifestStore {
    /// A store in the file at `path`, with the default table names. Touches no file until used.
    pub fn new(path: impl AsRef<Path>) -> Self {
        Self::build(
            path.as_ref().to_path_buf(),
            "shardyfusion_manifests",
            "shardyfusion_pointer",
        )
    }

    fn build(path: PathBuf, table_name: &str, pointer_table_name: &str) -> Self {
        SqliteManifestStore {
            inner: Arc::new(Inner {
                describe: format!("SQLite manifest store {}", path.display()),
                tables: Tables::new(table_name, pointer_table_name),
                path,
                initialized: AtomicBool::new(false),
                allowed: Vec::new(),
            }),
        }
    }

    /// Also follow `db_url`s under these URL prefixes (by default only the bucket or directory
    /// of a manifest's own recorded prefix is trusted; SPEC 15.3). An unusable entry is
    /// `ConfigValidation`.
    pub fn with_allowed_url_prefixes<S: AsRef<str>>(
        self,
        prefixes: impl IntoIterator<Item = S>,
    ) -> Result<Self> {
        let i = &self.inner;
        let mut allowed = i.allowed.clone();
        allowed.extend(prefixes.into_iter().map(|p| p.as_ref().to_owned()));
        shardyfusion_core::validate_allowed_url_prefixes(&allowed)?;
        Ok(SqliteManifestStore {
            inner: Arc::new(Inner {
                path: i.path.clone(),
                tables: i.tables.clone(),
                describe: i.describe.clone(),
                initialized: AtomicBool::new(i.initialized.load(Ordering::Acquire)),
                allowed,
            }),
        })
    }

    /// Use other table names (plain SQL identifiers).
    pub fn with_tables(self, table_name: &str, pointer_table_name: &str) -> Result<Self> {
        check_identifier("table_name", table_name)?;
        check_identifier("pointer_table_name", pointer_table_name)?;
        let allowed = self.inner.allowed.clone();
        Self::build(self.inner.path.clone(), table_name, pointer_table_name)
            .with_allowed_url_prefixes(allowed)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Run `f` with a fresh connection on a blocking thread (the connection closes there too).
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut SqliteSession<'_>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let initialized = inner.initialized.load(Ordering::Acquire);
            let mut session =
                SqliteSession::open(&inner.path, &inner.tables, &inner.describe, initialized)?;
            inner.initialized.store(true, Ordering::Release);
            f(&mut session)
        })
        .await
        .map_err(|e| {
            Error::new(
                ErrorKind::ManifestStore,
                format!("{}: the blocking worker failed: {e}", self.inner.describe),
            )
        })?
    }
}

#[async_trait]
impl ManifestStore for SqliteManifestStore {
    async fn publish(
        &self,
        build: &RequiredBuildMeta,
        shards: &[RequiredShardMeta],
        observer: &dyn PublishObserver,
    ) -> Result<ManifestRef> {
        let (build, shards) = (build.clone(), shards.to_vec());
        let run_id = build.run_id.clone();
        let r = self
            .blocking(move |db| sql_store::publish(db, &build, &shards))
            .await
            .map_err(|e| sql_store::publish_failed(&run_id, e))?;
        observer.manifest_published(&r.manifest_ref);
        observer.current_published(&r.manifest_ref);
        Ok(r)
    }

    async fn load_current(&self) -> Result<Option<ManifestRef>> {
        self.blocking(|db| sql_store::load_current(db)).await
    }

    async fn load_manifest(&self, manifest_ref: &str) -> Result<ParsedManifest> {
        let run_id = manifest_ref.to_owned();
        let allowed = self.inner.allowed.clone();
        self.blocking(move |db| sql_store::load_manifest(db, &run_id, &allowed))
            .await
    }

    async fn list_manifests(&self, limit: usize) -> Result<Vec<ManifestRef>> {
        self.blocking(move |db| sql_store::list_manifests(db, limit))
            .await
    }

    async fn set_current(&self, manifest_ref: &str) -> Result<()> {
        let run_id = manifest_ref.to_owned();
        self.blocking(move |db| sql_store::set_current(db, &run_id).map(drop))
            .await
    }
}
