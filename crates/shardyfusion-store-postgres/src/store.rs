//! `PostgresManifestStore` and its options: the async `ManifestStore` face of the shared SQL logic, every driver call on `spawn_blocking`.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use postgres::{Client, Config};
use shardyfusion_core::sql_store;
use shardyfusion_core::{
    Error, ErrorKind, ManifestRef, ManifestStore, ParsedManifest, PublishObserver,
    RequiredBuildMeta, RequiredShardMeta, Result,
};

use crate::backend::{PgSession, Tables, store_err};
use crate::dsn;
use crate::tls::{Connector, TlsPlan};

/// Table and connection options.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PostgresOptions {
    /// Base name: tables `<table_name>_builds` and `<table_name>_shards`.
    pub table_name: String,
    /// Pointer table.
    pub pointer_table_name: String,
    /// Create the tables and index when missing.
    pub ensure_table: bool,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// A PEM file of extra root certificates to trust (with the `tls` feature): the server
    /// certificate is then verified even under `sslmode=prefer`.
    pub tls_root_cert: Option<PathBuf>,
    /// URL prefixes that `db_url`s may name besides the manifest's own recorded prefix
    /// (SPEC 15.3 trust boundary).
    pub allowed_url_prefixes: Vec<String>,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            table_name: "shardyfusion_manifests".to_owned(),
            pointer_table_name: "shardyfusion_pointer".to_owned(),
            ensure_table: true,
            connect_timeout: Duration::from_secs(5),
            tls_root_cert: None,
            allowed_url_prefixes: Vec::new(),
        }
    }
}

impl PostgresOptions {
    /// Options with the given base table name and pointer table.
    pub fn with_tables(
        table_name: impl Into<String>,
        pointer_table_name: impl Into<String>,
    ) -> Self {
        PostgresOptions {
            table_name: table_name.into(),
            pointer_table_name: pointer_table_name.into(),
            ..Self::default()
        }
    }

    /// Trust the root certificates in this PEM file too (needs the `tls` feature).
    #[must_use]
    pub fn with_tls_root_cert(mut self, path: impl Into<PathBuf>) -> Self {
        self.tls_root_cert = Some(path.into());
        self
    }
}

fn check_identifier(what: &str, name: &str) -> Result<()> {
    let mut b = name.bytes();
    let ok = matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
        && name.len() <= 48;
    if ok {
        Ok(())
    } else {
        Err(Error::config(format!(
            "{what} must be a plain SQL identifier ([A-Za-z_][A-Za-z0-9_]*, at most 48 chars), got {name:?}"
        )))
    }
}

/// A `ManifestStore` on PostgreSQL.
#[derive(Clone)]
pub struct PostgresManifestStore {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    tls: TlsPlan,
    /// `PostgreSQL <redacted dsn>`, for messages.
    describe: String,
    opts: PostgresOptions,
    tables: Tables,
    conn: Mutex<Conn>,
}

/// The cached connection state, touched only on blocking threads.
#[derive(Default)]
struct Conn {
    connector: Option<Connector>,
    client: Option<Client>,
    ensured: bool,
}

impl Drop for Inner {
    /// The blocking client's destructor drives its own runtime, which must not happen on an async
    /// worker thread: close it on a plain thread when dropped inside a runtime.
    fn drop(&mut self) {
        let client = self
            .conn
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .client
            .take();
        if let Some(client) = client {
            if tokio::runtime::Handle::try_current().is_ok() {
                std::thread::spawn(move || drop(client));
            } else {
                drop(client);
            }
        }
    }
}

impl fmt::Debug for PostgresManifestStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresManifestStore")
            .field("db", &self.inner.describe)
            .field("options", &self.inner.opts)
            .finish()
    }
}

impl PostgresManifestStore {
    /// A store for the database at `dsn` (URL or key=value form). Connects lazily; nothing here
    /// does I/O. `sslmode` in the DSN chooses TLS (see the crate docs); `sslmode=require`
    /// without the `tls` feature is a `ConfigValidation` error.
    pub fn new(dsn: &str, opts: PostgresOptions) -> Result<Self> {
        check_identifier("table_name", &opts.table_name)?;
        check_identifier("pointer_table_name", &opts.pointer_table_name)?;
        shardyfusion_core::validate_allowed_url_prefixes(&opts.allowed_url_prefixes)?;
        let redacted = dsn::redact(dsn);
        let mut config = dsn::parse(dsn, &redacted)?;
        config.connect_timeout(opts.connect_timeout);
        let tls = TlsPlan::new(&config, opts.tls_root_cert.as_deref(), &redacted)?;
        Ok(PostgresManifestStore {
            inner: Arc::new(Inner {
                config,
                tls,
                describe: format!("PostgreSQL {redacted}"),
                tables: Tables::new(&opts.table_name, &opts.pointer_table_name),
                opts,
                conn: Mutex::new(Conn::default()),
            }),
        })
    }

    /// Run `f` with a connected session on a blocking thread.
    async fn with_session<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut PgSession<'_>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = inner.conn.lock().unwrap_or_else(|p| p.into_inner());
            let conn = &mut *conn;
            let out = inner.run(conn, f);
            if conn.client.as_ref().is_some_and(Client::is_closed) {
                conn.client = None;
            }
            out
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

impl Inner {
    fn run<T>(
        &self,
        conn: &mut Conn,
        f: impl FnOnce(&mut PgSession<'_>) -> Result<T>,
    ) -> Result<T> {
        if conn.client.is_none() {
            let connector = match conn.connector.take() {
                Some(c) => c,
                None => self.tls.connector()?,
            };
            let client = connector.connect(&self.config);
            conn.connector = Some(connector);
            conn.client = Some(client.map_err(|e| store_err(&self.describe, "connect", e))?);
        }
        let client = conn
            .client
            .as_mut()
            .ok_or_else(|| Error::new(ErrorKind::ManifestStore, "no PostgreSQL connection"))?;
        if !conn.ensured && self.opts.ensure_table {
            self.ensure_tables(client)?;
            conn.ensured = true;
        }
        let mut session = PgSession::new(client, &self.tables, &self.describe);
        let out = f(&mut session);
        if session.broken {
            conn.client = None;
        }
        out
    }

    fn ensure_tables(&self, client: &mut Client) -> Result<()> {
        let t = &self.tables;
        // Concurrent first uses may race on CREATE ... IF NOT EXISTS; serialize them.
        let mut tx = client
            .transaction()
            .map_err(|e| store_err(&self.describe, "begin", e))?;
        tx.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&t.builds])
            .map_err(|e| store_err(&self.describe, "lock", e))?;
        tx.batch_execute(&t.ddl()).map_err(|e| {
            Error::config(format!(
                "creating the manifest tables {}, {}, {} on {} failed: {e}",
                t.builds, t.shards, t.pointer, self.describe
            ))
            .with_source(e)
        })?;
        tx.commit()
            .map_err(|e| store_err(&self.describe, "commit", e))
    }
}

#[async_trait]
impl ManifestStore for PostgresManifestStore {
    async fn publish(
        &self,
        build: &RequiredBuildMeta,
        shards: &[RequiredShardMeta],
        observer: &dyn PublishObserver,
    ) -> Result<ManifestRef> {
        let (build, shards) = (build.clone(), shards.to_vec());
        let run_id = build.run_id.clone();
        let r = self
            .with_session(move |db| sql_store::publish(db, &build, &shards))
            .await
            .map_err(|e| sql_store::publish_failed(&run_id, e))?;
        observer.manifest_published(&r.manifest_ref);
        observer.current_published(&r.manifest_ref);
        Ok(r)
    }

    async fn load_current(&self) -> Result<Option<ManifestRef>> {
        self.with_session(|db| sql_store::load_current(db)).await
    }

    async fn load_manifest(&self, manifest_ref: &str) -> Result<ParsedManifest> {
        let run_id = manifest_ref.to_owned();
        let allowed = self.inner.opts.allowed_url_prefixes.clone();
        self.with_session(move |db| sql_store::load_manifest(db, &run_id, &allowed))
            .await
    }

    async fn list_manifests(&self, limit: usize) -> Result<Vec<ManifestRef>> {
        self.with_session(move |db| sql_store::list_manifests(db, limit))
            .await
    }

    async fn set_current(&self, manifest_ref: &str) -> Result<()> {
        let run_id = manifest_ref.to_owned();
        self.with_session(move |db| sql_store::set_current(db, &run_id).map(drop))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_password() {
        for dsn in [
            "postgres://u:s3cret@127.0.0.1:1/db",
            "postgres://u@127.0.0.1:1/db?password=s3cret",
            "host=127.0.0.1 port=1 password='s3cret'",
        ] {
            let s = PostgresManifestStore::new(dsn, PostgresOptions::default()).unwrap();
            assert!(!format!("{s:?}").contains("s3cret"), "{s:?}");
        }
    }

    #[test]
    fn table_names_are_identifiers() {
        let err = PostgresManifestStore::new(
            "postgres://u@h/db",
            PostgresOptions::with_tables("x; DROP", "p"),
        )
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ConfigValidation);
        assert!(err.message().contains("\"x; DROP\""), "{err}");
    }

    #[cfg(not(feature = "tls"))]
    #[test]
    fn sslmode_require_without_the_tls_feature_says_to_enable_it() {
        let err = PostgresManifestStore::new(
            "postgres://u:s3cret@h/db?sslmode=require",
            PostgresOptions::default(),
        )
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ConfigValidation);
        assert!(err.message().contains("`tls` cargo feature"), "{err}");
        assert!(err.message().contains("sslmode=require"), "{err}");
        assert!(!err.message().contains("s3cret"), "{err}");
        let err = PostgresManifestStore::new(
            "host=h",
            PostgresOptions::default().with_tls_root_cert("/etc/ssl/ca.pem"),
        )
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ConfigValidation);
        for ok in [
            "host=h sslmode=prefer",
            "postgres://h/db?sslmode=disable",
            "host=h",
        ] {
            PostgresManifestStore::new(ok, PostgresOptions::default()).unwrap();
        }
    }
}
