//! The PostgreSQL store.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use postgres::{Client, Config, NoTls, Transaction};
use serde_json::Value;
use shardyfusion_core::codec::{
    key_from_json, key_to_json, sharding_from_json, sharding_to_json, validate_manifest,
    writer_info_from_json, writer_info_to_json,
};
use shardyfusion_core::{
    Error, ErrorKind, FORMAT_VERSION, KeyEncoding, ManifestRef, ManifestStore, ParsedManifest,
    PublishObserver, RequiredBuildMeta, RequiredShardMeta, Result, Timestamp,
};

/// Table options.
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
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            table_name: "shardyfusion_manifests".to_owned(),
            pointer_table_name: "shardyfusion_pointer".to_owned(),
            ensure_table: true,
            connect_timeout: Duration::from_secs(5),
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
    redacted: String,
    opts: PostgresOptions,
    builds: String,
    shards: String,
    pointer: String,
    client: Mutex<Option<Client>>,
    ensured: Mutex<bool>,
}

impl Drop for Inner {
    /// The blocking client's destructor drives its own runtime, which must not happen on an async
    /// worker thread: close it on a plain thread when dropped inside a runtime.
    fn drop(&mut self) {
        let client = self
            .client
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
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
            .field("dsn", &self.inner.redacted)
            .field("options", &self.inner.opts)
            .finish()
    }
}

/// The DSN with any password replaced by `***`.
fn redact(dsn: &str) -> String {
    match (dsn.split_once("://"), dsn.rfind('@')) {
        (Some((scheme, rest)), Some(_)) => {
            let (userinfo, host) = rest.rsplit_once('@').unwrap_or(("", rest));
            let user = userinfo.split(':').next().unwrap_or("");
            if userinfo.contains(':') {
                format!("{scheme}://{user}:***@{host}")
            } else {
                dsn.to_owned()
            }
        }
        _ if dsn.contains("password") => "<connection string with password>".to_owned(),
        _ => dsn.to_owned(),
    }
}

fn store_err(inner: &Inner, what: &str, e: postgres::Error) -> Error {
    Error::new(
        ErrorKind::ManifestStore,
        format!("PostgreSQL {what} failed on {}: {e}", inner.redacted),
    )
    .with_source(e)
}

fn parse_err(msg: impl Into<String>) -> Error {
    Error::manifest_parse(msg)
}

impl PostgresManifestStore {
    /// A store for the database at `dsn` (URL or key=value form). Connects lazily.
    pub fn new(dsn: &str, opts: PostgresOptions) -> Result<Self> {
        check_identifier("table_name", &opts.table_name)?;
        check_identifier("pointer_table_name", &opts.pointer_table_name)?;
        let redacted = redact(dsn);
        let mut config = Config::from_str(dsn).map_err(|e| {
            Error::config(format!(
                "invalid PostgreSQL connection string {redacted}: {e}"
            ))
        })?;
        config.connect_timeout(opts.connect_timeout);
        Ok(PostgresManifestStore {
            inner: Arc::new(Inner {
                config,
                redacted,
                builds: format!("{}_builds", opts.table_name),
                shards: format!("{}_shards", opts.table_name),
                pointer: opts.pointer_table_name.clone(),
                opts,
                client: Mutex::new(None),
                ensured: Mutex::new(false),
            }),
        })
    }

    /// Run `f` with a connected client on a blocking thread.
    async fn with_client<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner, &mut Client) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut slot = inner.client.lock().unwrap_or_else(|p| p.into_inner());
            if slot.as_ref().is_none_or(Client::is_closed) {
                *slot = Some(
                    inner
                        .config
                        .connect(NoTls)
                        .map_err(|e| store_err(&inner, "connect", e))?,
                );
            }
            let client = slot
                .as_mut()
                .ok_or_else(|| Error::new(ErrorKind::ManifestStore, "no connection"))?;
            inner.ensure_tables(client)?;
            let out = f(&inner, client);
            if client.is_closed() {
                *slot = None;
            }
            out
        })
        .await
        .map_err(|e| {
            Error::new(
                ErrorKind::ManifestStore,
                format!("PostgreSQL worker failed: {e}"),
            )
        })?
    }
}

impl Inner {
    fn ensure_tables(&self, client: &mut Client) -> Result<()> {
        let mut done = self.ensured.lock().unwrap_or_else(|p| p.into_inner());
        if *done || !self.opts.ensure_table {
            return Ok(());
        }
        let (b, s, p) = (&self.builds, &self.shards, &self.pointer);
        let ddl = format!(
            "CREATE TABLE IF NOT EXISTS {b} (
  run_id           TEXT PRIMARY KEY,
  created_at       TIMESTAMPTZ NOT NULL DEFAULT NOW(),
  num_dbs          INTEGER NOT NULL,
  s3_prefix        TEXT NOT NULL,
  key_col          TEXT NOT NULL DEFAULT '_key',
  db_path_template TEXT NOT NULL DEFAULT 'db={{db_id:05d}}',
  shard_prefix     TEXT NOT NULL DEFAULT 'shards',
  key_encoding     TEXT NOT NULL DEFAULT 'u64be',
  sharding         JSONB NOT NULL,
  custom           JSONB NOT NULL DEFAULT '{{}}'
);
CREATE TABLE IF NOT EXISTS {s} (
  run_id        TEXT NOT NULL REFERENCES {b}(run_id),
  db_id         INTEGER NOT NULL,
  db_url        TEXT,
  attempt       INTEGER NOT NULL DEFAULT 0,
  row_count     INTEGER NOT NULL DEFAULT 0,
  db_bytes      BIGINT  NOT NULL DEFAULT 0,
  checkpoint_id TEXT,
  min_key       JSONB,
  max_key       JSONB,
  writer_info   JSONB,
  PRIMARY KEY (run_id, db_id)
);
CREATE TABLE IF NOT EXISTS {p} (
  updated_at    TIMESTAMPTZ NOT NULL DEFAULT NOW(),
  manifest_ref  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_{p}_updated_at ON {p} (updated_at DESC);"
        );
        // Concurrent first uses may race on CREATE ... IF NOT EXISTS; serialize them.
        let mut tx = client
            .transaction()
            .map_err(|e| store_err(self, "begin", e))?;
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext($1))",
            &[&self.builds],
        )
        .map_err(|e| store_err(self, "lock", e))?;
        tx.batch_execute(&ddl).map_err(|e| {
            Error::config(format!(
                "creating the manifest tables {b}, {s}, {p} on {} failed: {e}",
                self.redacted
            ))
            .with_source(e)
        })?;
        tx.commit().map_err(|e| store_err(self, "commit", e))?;
        *done = true;
        Ok(())
    }

    fn load(&self, client: &mut Client, run_id: &str) -> Result<ParsedManifest> {
        let row = client
            .query_opt(
                &format!(
                    "SELECT run_id, created_at, num_dbs, s3_prefix, key_col, db_path_template, shard_prefix, key_encoding, \
                     sharding, custom FROM {} WHERE run_id = $1",
                    self.builds
                ),
                &[&run_id],
            )
            .map_err(|e| store_err(self, "query", e))?
            .ok_or_else(|| parse_err(format!("Manifest not found: ref={run_id}")))?;
        let num_dbs: i32 = row.get(2);
        let key_encoding: String = row.get(7);
        let sharding: Value = row.get(8);
        let custom: Value = row.get(9);
        let build = RequiredBuildMeta {
            run_id: row.get(0),
            created_at: Timestamp::from_datetime(row.get::<_, DateTime<Utc>>(1)),
            num_dbs: u32::try_from(num_dbs)
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| parse_err(format!("num_dbs must be > 0, got {num_dbs}")))?,
            s3_prefix: row.get(3),
            key_col: row.get(4),
            db_path_template: row.get(5),
            shard_prefix: row.get(6),
            format_version: FORMAT_VERSION,
            key_encoding: KeyEncoding::from_str(&key_encoding)
                .map_err(|e| parse_err(e.message()))?,
            sharding: sharding_from_json(&sharding.to_string())?,
            custom: match custom {
                Value::Object(m) => m,
                Value::Null => Default::default(),
                other => {
                    return Err(parse_err(format!(
                        "custom must be a JSON object, got {other}"
                    )));
                }
            },
        };
        let rows = client
            .query(
                &format!(
                    "SELECT db_id, db_url, attempt, row_count, db_bytes, checkpoint_id, min_key, max_key, writer_info \
                     FROM {} WHERE run_id = $1 ORDER BY db_id",
                    self.shards
                ),
                &[&run_id],
            )
            .map_err(|e| store_err(self, "query", e))?;
        let mut shards = Vec::with_capacity(rows.len());
        for r in rows {
            let non_neg = |name: &str, v: i64| -> Result<u64> {
                u64::try_from(v)
                    .map_err(|_| parse_err(format!("shard {name} must be >= 0, got {v}")))
            };
            let key = |v: Option<Value>| {
                v.filter(|v| !v.is_null())
                    .map(|v| key_from_json(&v.to_string()))
                    .transpose()
            };
            let db_id = non_neg("db_id", i64::from(r.get::<_, i32>(0)))?;
            shards.push(RequiredShardMeta {
                db_id: u32::try_from(db_id).map_err(|_| parse_err("db_id too large"))?,
                db_url: r.get(1),
                attempt: u32::try_from(non_neg("attempt", i64::from(r.get::<_, i32>(2)))?)
                    .unwrap_or(u32::MAX),
                row_count: non_neg("row_count", i64::from(r.get::<_, i32>(3)))?,
                db_bytes: non_neg("db_bytes", r.get::<_, i64>(4))?,
                checkpoint_id: r.get(5),
                min_key: key(r.get(6))?,
                max_key: key(r.get(7))?,
                writer_info: writer_info_from_json(
                    r.get::<_, Option<Value>>(8)
                        .map(|v| v.to_string())
                        .as_deref(),
                )?,
            });
        }
        let m = ParsedManifest { build, shards };
        validate_manifest(&m)?;
        Ok(m)
    }

    fn insert_pointer(
        &self,
        tx: &mut Transaction<'_>,
        run_id: &str,
    ) -> std::result::Result<(), postgres::Error> {
        tx.execute(
            &format!(
                "INSERT INTO {} (updated_at, manifest_ref) VALUES (clock_timestamp(), $1)",
                self.pointer
            ),
            &[&run_id],
        )?;
        Ok(())
    }
}

fn json_of(text: &str) -> Result<Value> {
    serde_json::from_str(text).map_err(|e| {
        Error::new(
            ErrorKind::ManifestBuild,
            format!("internal JSON error: {e}"),
        )
    })
}

#[async_trait]
impl ManifestStore for PostgresManifestStore {
    async fn publish(
        &self,
        build: &RequiredBuildMeta,
        shards: &[RequiredShardMeta],
        observer: &dyn PublishObserver,
    ) -> Result<ManifestRef> {
        build.validate()?;
        let mut rows = Vec::new();
        for s in shards.iter().filter(|s| !s.is_empty()) {
            let row_count = i32::try_from(s.row_count).map_err(|_| {
                Error::new(
                    ErrorKind::ManifestBuild,
                    format!(
                        "shard {} has {} rows; the PostgreSQL store holds at most 2^31-1 per shard",
                        s.db_id, s.row_count
                    ),
                )
            })?;
            let db_bytes = i64::try_from(s.db_bytes)
                .map_err(|_| Error::new(ErrorKind::ManifestBuild, "db_bytes too large"))?;
            let key = |k: &Option<shardyfusion_core::Key>| {
                k.as_ref()
                    .and_then(key_to_json)
                    .map(|t| json_of(&t))
                    .transpose()
            };
            rows.push((
                s.db_id as i32,
                s.db_url.clone(),
                s.attempt as i32,
                row_count,
                db_bytes,
                s.checkpoint_id.clone(),
                key(&s.min_key)?,
                key(&s.max_key)?,
                json_of(&writer_info_to_json(&s.writer_info))?,
            ));
        }
        let build = build.clone();
        let sharding = json_of(&sharding_to_json(&build.sharding))?;
        let run_id = build.run_id.clone();
        let result = self
            .with_client(move |inner, client| {
                let publish = |client: &mut Client| -> std::result::Result<(), postgres::Error> {
                    let mut tx = client.transaction()?;
                    tx.execute(
                        &format!(
                            "INSERT INTO {} (run_id, created_at, num_dbs, s3_prefix, key_col, db_path_template, shard_prefix, \
                             key_encoding, sharding, custom) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                             ON CONFLICT (run_id) DO UPDATE SET created_at = EXCLUDED.created_at, num_dbs = EXCLUDED.num_dbs, \
                             s3_prefix = EXCLUDED.s3_prefix, key_col = EXCLUDED.key_col, db_path_template = EXCLUDED.db_path_template, \
                             shard_prefix = EXCLUDED.shard_prefix, key_encoding = EXCLUDED.key_encoding, \
                             sharding = EXCLUDED.sharding, custom = EXCLUDED.custom",
                            inner.builds
                        ),
                        &[
                            &build.run_id,
                            &build.created_at.as_datetime(),
                            &(build.num_dbs as i32),
                            &build.s3_prefix,
                            &build.key_col,
                            &build.db_path_template,
                            &build.shard_prefix,
                            &build.key_encoding.as_str(),
                            &sharding,
                            &Value::Object(build.custom.clone()),
                        ],
                    )?;
                    tx.execute(&format!("DELETE FROM {} WHERE run_id = $1", inner.shards), &[&build.run_id])?;
                    let stmt = tx.prepare(&format!(
                        "INSERT INTO {} (run_id, db_id, db_url, attempt, row_count, db_bytes, checkpoint_id, min_key, max_key, \
                         writer_info) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                        inner.shards
                    ))?;
                    for r in &rows {
                        tx.execute(&stmt, &[&build.run_id, &r.0, &r.1, &r.2, &r.3, &r.4, &r.5, &r.6, &r.7, &r.8])?;
                    }
                    inner.insert_pointer(&mut tx, &build.run_id)?;
                    tx.commit()
                };
                publish(client).map_err(|e| {
                    Error::new(
                        ErrorKind::PublishManifest,
                        format!("publishing run {} to PostgreSQL failed; nothing became current: {e}", build.run_id),
                    )
                    .with_source(store_err(inner, "publish", e))
                })?;
                Ok(build.created_at)
            })
            .await;
        let created_at = result.map_err(|e| {
            if e.kind() == ErrorKind::ManifestStore {
                Error::new(
                    ErrorKind::PublishManifest,
                    format!("publishing run {run_id} failed: {}", e.message()),
                )
                .with_source(e)
            } else {
                e
            }
        })?;
        observer.manifest_published(&run_id);
        observer.current_published(&run_id);
        Ok(ManifestRef {
            manifest_ref: run_id.clone(),
            run_id,
            published_at: created_at,
        })
    }

    async fn load_current(&self) -> Result<Option<ManifestRef>> {
        self.with_client(|inner, client| {
            let row = client
                .query_opt(
                    &format!(
                        "SELECT manifest_ref, updated_at FROM {} ORDER BY updated_at DESC LIMIT 1",
                        inner.pointer
                    ),
                    &[],
                )
                .map_err(|e| store_err(inner, "query", e))?;
            let row = match row {
                Some(r) => Some(r),
                None => client
                    .query_opt(
                        &format!(
                            "SELECT run_id, created_at FROM {} ORDER BY created_at DESC LIMIT 1",
                            inner.builds
                        ),
                        &[],
                    )
                    .map_err(|e| store_err(inner, "query", e))?,
            };
            Ok(row.map(|r| {
                let id: String = r.get(0);
                ManifestRef {
                    manifest_ref: id.clone(),
                    run_id: id,
                    published_at: Timestamp::from_datetime(r.get(1)),
                }
            }))
        })
        .await
    }

    async fn load_manifest(&self, manifest_ref: &str) -> Result<ParsedManifest> {
        let run_id = manifest_ref.to_owned();
        self.with_client(move |inner, client| inner.load(client, &run_id))
            .await
    }

    async fn list_manifests(&self, limit: usize) -> Result<Vec<ManifestRef>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with_client(move |inner, client| {
            let rows = client
                .query(&format!("SELECT run_id, created_at FROM {} ORDER BY created_at DESC, run_id DESC LIMIT $1", inner.builds), &[&limit])
                .map_err(|e| store_err(inner, "query", e))?;
            Ok(rows
                .iter()
                .map(|r| {
                    let id: String = r.get(0);
                    ManifestRef { manifest_ref: id.clone(), run_id: id, published_at: Timestamp::from_datetime(r.get(1)) }
                })
                .collect())
        })
        .await
    }

    async fn set_current(&self, manifest_ref: &str) -> Result<()> {
        let run_id = manifest_ref.to_owned();
        self.with_client(move |inner, client| {
            // Validate the manifest, then append the pointer row in one transaction.
            inner.load(client, &run_id)?;
            let mut tx = client
                .transaction()
                .map_err(|e| store_err(inner, "begin", e))?;
            let exists = tx
                .query_opt(
                    &format!("SELECT 1 FROM {} WHERE run_id = $1 FOR SHARE", inner.builds),
                    &[&run_id],
                )
                .map_err(|e| store_err(inner, "query", e))?;
            if exists.is_none() {
                return Err(parse_err(format!("Manifest not found: ref={run_id}")));
            }
            inner
                .insert_pointer(&mut tx, &run_id)
                .map_err(|e| store_err(inner, "insert pointer", e))?;
            tx.commit().map_err(|e| store_err(inner, "commit", e))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dsn_password_is_redacted() {
        assert_eq!(
            redact("postgres://u:s3cret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            redact("host=h password=s3cret"),
            "<connection string with password>"
        );
        let s = PostgresManifestStore::new(
            "postgres://u:s3cret@127.0.0.1:1/db",
            PostgresOptions::default(),
        )
        .unwrap();
        assert!(!format!("{s:?}").contains("s3cret"));
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
}
