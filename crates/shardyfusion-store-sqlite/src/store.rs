//! The SQLite-file store.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use shardyfusion_core::codec::{
    custom_from_json, custom_to_json, key_from_json, key_to_json, sharding_from_json,
    sharding_to_json, validate_manifest, writer_info_from_json, writer_info_to_json,
};
use shardyfusion_core::{
    Error, ErrorKind, FORMAT_VERSION, KeyEncoding, ManifestRef, ManifestStore, ParsedManifest,
    PublishObserver, RequiredBuildMeta, RequiredShardMeta, Result, Timestamp,
};

const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// A `ManifestStore` in a local SQLite file (created on first use).
#[derive(Debug, Clone)]
pub struct SqliteManifestStore {
    path: PathBuf,
    table_name: String,
    pointer_table_name: String,
    /// Set once the file is in WAL mode with the tables created (both persist in the file).
    initialized: Arc<AtomicBool>,
}

/// Retry an operation that fails with `SQLITE_BUSY`/`SQLITE_LOCKED`: switching a new file to WAL
/// and creating tables take locks that the busy timeout does not always cover when several
/// connections initialize the same file at once.
fn retry_busy<T>(mut op: impl FnMut() -> rusqlite::Result<T>) -> rusqlite::Result<T> {
    let mut tries = 0;
    loop {
        match op() {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if matches!(
                    e.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) && tries < 200 =>
            {
                tries += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

fn db_err(path: &Path, what: &str, e: rusqlite::Error) -> Error {
    Error::new(
        ErrorKind::ManifestStore,
        format!(
            "SQLite manifest store {}: {what} failed: {e}",
            path.display()
        ),
    )
    .with_source(e)
}

impl SqliteManifestStore {
    /// A store in the file at `path`, with the default table names.
    pub fn new(path: impl AsRef<Path>) -> Self {
        SqliteManifestStore {
            path: path.as_ref().to_path_buf(),
            table_name: "shardyfusion_manifests".to_owned(),
            pointer_table_name: "shardyfusion_pointer".to_owned(),
            initialized: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Use other table names (plain SQL identifiers).
    pub fn with_tables(mut self, table_name: &str, pointer_table_name: &str) -> Result<Self> {
        for (what, name) in [
            ("table_name", table_name),
            ("pointer_table_name", pointer_table_name),
        ] {
            let mut b = name.bytes();
            let ok = matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
                && b.all(|c| c.is_ascii_alphanumeric() || c == b'_');
            if !ok {
                return Err(Error::config(format!(
                    "{what} must be a plain SQL identifier, got {name:?}"
                )));
            }
        }
        self.table_name = table_name.to_owned();
        self.pointer_table_name = pointer_table_name.to_owned();
        self.initialized = Arc::new(AtomicBool::new(false));
        Ok(self)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn names(&self) -> (String, String, String) {
        (
            format!("{}_builds", self.table_name),
            format!("{}_shards", self.table_name),
            self.pointer_table_name.clone(),
        )
    }

    fn open(&self) -> Result<Connection> {
        let conn = Connection::open(&self.path).map_err(|e| db_err(&self.path, "open", e))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| db_err(&self.path, "busy_timeout", e))?;
        if self.initialized.load(Ordering::Acquire) {
            return Ok(conn);
        }
        let (b, s, p) = self.names();
        let ddl = format!(
            "CREATE TABLE IF NOT EXISTS {b} (
  run_id           TEXT PRIMARY KEY,
  created_at       TEXT NOT NULL,
  num_dbs          INTEGER NOT NULL,
  s3_prefix        TEXT NOT NULL,
  key_col          TEXT NOT NULL DEFAULT '_key',
  db_path_template TEXT NOT NULL DEFAULT 'db={{db_id:05d}}',
  shard_prefix     TEXT NOT NULL DEFAULT 'shards',
  key_encoding     TEXT NOT NULL DEFAULT 'u64be',
  sharding         TEXT NOT NULL,
  custom           TEXT NOT NULL DEFAULT '{{}}'
);
CREATE TABLE IF NOT EXISTS {s} (
  run_id        TEXT NOT NULL REFERENCES {b}(run_id),
  db_id         INTEGER NOT NULL,
  db_url        TEXT,
  attempt       INTEGER NOT NULL DEFAULT 0,
  row_count     INTEGER NOT NULL DEFAULT 0,
  db_bytes      INTEGER NOT NULL DEFAULT 0,
  checkpoint_id TEXT,
  min_key       TEXT,
  max_key       TEXT,
  writer_info   TEXT,
  PRIMARY KEY (run_id, db_id)
);
CREATE TABLE IF NOT EXISTS {p} (
  id            INTEGER PRIMARY KEY AUTOINCREMENT,
  updated_at    TEXT NOT NULL,
  manifest_ref  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_{p}_updated_at ON {p} (updated_at DESC);"
        );
        retry_busy(|| {
            let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
            if !mode.eq_ignore_ascii_case("wal") {
                let _: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
            }
            conn.execute_batch(&ddl)
        })
        .map_err(|e| db_err(&self.path, "initializing the database", e))?;
        self.initialized.store(true, Ordering::Release);
        Ok(conn)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Self, Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let conn = me.open()?;
            f(&me, conn)
        })
        .await
        .map_err(|e| {
            Error::new(
                ErrorKind::ManifestStore,
                format!("SQLite worker failed: {e}"),
            )
        })?
    }

    fn load(&self, conn: &Connection, run_id: &str) -> Result<ParsedManifest> {
        let (b, s, _) = self.names();
        let e = |e| db_err(&self.path, "query", e);
        let row = conn
            .query_row(
                &format!(
                    "SELECT run_id, created_at, num_dbs, s3_prefix, key_col, db_path_template, shard_prefix, key_encoding, \
                     sharding, custom FROM {b} WHERE run_id = ?1"
                ),
                [run_id],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, String>(5)?,
                        r.get::<_, String>(6)?,
                        r.get::<_, String>(7)?,
                        r.get::<_, String>(8)?,
                        r.get::<_, Option<String>>(9)?,
                    ))
                },
            )
            .optional()
            .map_err(e)?
            .ok_or_else(|| Error::manifest_parse(format!("Manifest not found: ref={run_id}")))?;
        let build = RequiredBuildMeta {
            run_id: row.0,
            created_at: Timestamp::parse(&row.1)?,
            num_dbs: u32::try_from(row.2)
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| {
                    Error::manifest_parse(format!("num_dbs must be > 0, got {}", row.2))
                })?,
            s3_prefix: row.3,
            key_col: row.4,
            db_path_template: row.5,
            shard_prefix: row.6,
            format_version: FORMAT_VERSION,
            key_encoding: row
                .7
                .parse::<KeyEncoding>()
                .map_err(|e| Error::manifest_parse(e.message()))?,
            sharding: sharding_from_json(&row.8)?,
            custom: custom_from_json(row.9.as_deref())?,
        };
        let mut stmt = conn
            .prepare(&format!(
                "SELECT db_id, db_url, attempt, row_count, db_bytes, checkpoint_id, min_key, max_key, writer_info \
                 FROM {s} WHERE run_id = ?1 ORDER BY db_id"
            ))
            .map_err(e)?;
        let rows = stmt
            .query_map([run_id], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, Option<String>>(5)?,
                    r.get::<_, Option<String>>(6)?,
                    r.get::<_, Option<String>>(7)?,
                    r.get::<_, Option<String>>(8)?,
                ))
            })
            .map_err(e)?;
        let mut shards = Vec::new();
        for r in rows {
            let r = r.map_err(e)?;
            let nn = |name: &str, v: i64| -> Result<u64> {
                u64::try_from(v).map_err(|_| {
                    Error::manifest_parse(format!("shard {name} must be >= 0, got {v}"))
                })
            };
            let small = |name: &str, v: i64| -> Result<u32> {
                u32::try_from(nn(name, v)?)
                    .map_err(|_| Error::manifest_parse(format!("shard {name} {v} is too large")))
            };
            shards.push(RequiredShardMeta {
                db_id: small("db_id", r.0)?,
                db_url: r.1,
                attempt: small("attempt", r.2)?,
                row_count: nn("row_count", r.3)?,
                db_bytes: nn("db_bytes", r.4)?,
                checkpoint_id: r.5,
                min_key: r.6.as_deref().map(key_from_json).transpose()?,
                max_key: r.7.as_deref().map(key_from_json).transpose()?,
                writer_info: writer_info_from_json(r.8.as_deref())?,
            });
        }
        let m = ParsedManifest { build, shards };
        validate_manifest(&m)?;
        Ok(m)
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
        build.validate()?;
        let build = build.clone();
        let mut rows: Vec<RequiredShardMeta> =
            shards.iter().filter(|s| !s.is_empty()).cloned().collect();
        rows.sort_by_key(|s| s.db_id);
        for s in &rows {
            for (name, v) in [("row_count", s.row_count), ("db_bytes", s.db_bytes)] {
                if i64::try_from(v).is_err() {
                    return Err(Error::new(
                        ErrorKind::ManifestBuild,
                        format!("shard {} {name} {v} does not fit SQLite INTEGER", s.db_id),
                    ));
                }
            }
        }
        let run_id = build.run_id.clone();
        let created_at = build.created_at;
        self.blocking(move |me, mut conn| {
            let (b, s, p) = me.names();
            let publish = |conn: &mut Connection| -> rusqlite::Result<()> {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                tx.execute(
                    &format!(
                        "INSERT INTO {b} (run_id, created_at, num_dbs, s3_prefix, key_col, db_path_template, shard_prefix, \
                         key_encoding, sharding, custom) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
                         ON CONFLICT (run_id) DO UPDATE SET created_at = excluded.created_at, num_dbs = excluded.num_dbs, \
                         s3_prefix = excluded.s3_prefix, key_col = excluded.key_col, db_path_template = excluded.db_path_template, \
                         shard_prefix = excluded.shard_prefix, key_encoding = excluded.key_encoding, \
                         sharding = excluded.sharding, custom = excluded.custom"
                    ),
                    params![
                        build.run_id,
                        build.created_at.to_key_string(),
                        i64::from(build.num_dbs),
                        build.s3_prefix,
                        build.key_col,
                        build.db_path_template,
                        build.shard_prefix,
                        build.key_encoding.as_str(),
                        sharding_to_json(&build.sharding),
                        custom_to_json(&build.custom),
                    ],
                )?;
                tx.execute(&format!("DELETE FROM {s} WHERE run_id = ?1"), [&build.run_id])?;
                {
                    let mut stmt = tx.prepare(&format!(
                        "INSERT INTO {s} (run_id, db_id, db_url, attempt, row_count, db_bytes, checkpoint_id, min_key, max_key, \
                         writer_info) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
                    ))?;
                    for r in &rows {
                        stmt.execute(params![
                            build.run_id,
                            i64::from(r.db_id),
                            r.db_url,
                            i64::from(r.attempt),
                            r.row_count as i64,
                            r.db_bytes as i64,
                            r.checkpoint_id,
                            r.min_key.as_ref().and_then(key_to_json),
                            r.max_key.as_ref().and_then(key_to_json),
                            writer_info_to_json(&r.writer_info),
                        ])?;
                    }
                }
                tx.execute(
                    &format!("INSERT INTO {p} (updated_at, manifest_ref) VALUES (?1, ?2)"),
                    params![Timestamp::now().to_key_string(), build.run_id],
                )?;
                tx.commit()
            };
            publish(&mut conn).map_err(|e| {
                Error::new(
                    ErrorKind::PublishManifest,
                    format!("publishing run {} to {} failed; nothing became current: {e}", build.run_id, me.path.display()),
                )
                .with_source(e)
            })
        })
        .await
        .map_err(|e| {
            if e.kind() == ErrorKind::ManifestStore {
                Error::new(ErrorKind::PublishManifest, format!("publishing run {run_id} failed: {}", e.message())).with_source(e)
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
        self.blocking(|me, conn| {
            let (b, _, p) = me.names();
            let e = |e| db_err(&me.path, "query", e);
            let row: Option<(String, String)> = conn
                .query_row(&format!("SELECT manifest_ref, updated_at FROM {p} ORDER BY updated_at DESC, id DESC LIMIT 1"), [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()
                .map_err(e)?;
            let row = match row {
                Some(r) => Some(r),
                None => conn
                    .query_row(&format!("SELECT run_id, created_at FROM {b} ORDER BY created_at DESC LIMIT 1"), [], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })
                    .optional()
                    .map_err(e)?,
            };
            row.map(|(id, ts)| Ok(ManifestRef { manifest_ref: id.clone(), run_id: id, published_at: Timestamp::parse(&ts)? }))
                .transpose()
        })
        .await
    }

    async fn load_manifest(&self, manifest_ref: &str) -> Result<ParsedManifest> {
        let run_id = manifest_ref.to_owned();
        self.blocking(move |me, conn| me.load(&conn, &run_id)).await
    }

    async fn list_manifests(&self, limit: usize) -> Result<Vec<ManifestRef>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.blocking(move |me, conn| {
            let (b, _, _) = me.names();
            let e = |e| db_err(&me.path, "query", e);
            let mut stmt =
                conn.prepare(&format!("SELECT run_id, created_at FROM {b} ORDER BY created_at DESC, run_id DESC LIMIT ?1")).map_err(e)?;
            let rows = stmt.query_map([limit], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))).map_err(e)?;
            let mut out = Vec::new();
            for r in rows {
                let (id, ts) = r.map_err(e)?;
                out.push(ManifestRef { manifest_ref: id.clone(), run_id: id, published_at: Timestamp::parse(&ts)? });
            }
            Ok(out)
        })
        .await
    }

    async fn set_current(&self, manifest_ref: &str) -> Result<()> {
        let run_id = manifest_ref.to_owned();
        self.blocking(move |me, mut conn| {
            me.load(&conn, &run_id)?;
            let (b, _, p) = me.names();
            let e = |e| db_err(&me.path, "set_current", e);
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(e)?;
            let exists: Option<i64> = tx
                .query_row(
                    &format!("SELECT 1 FROM {b} WHERE run_id = ?1"),
                    [&run_id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(e)?;
            if exists.is_none() {
                return Err(Error::manifest_parse(format!(
                    "Manifest not found: ref={run_id}"
                )));
            }
            tx.execute(
                &format!("INSERT INTO {p} (updated_at, manifest_ref) VALUES (?1, ?2)"),
                params![Timestamp::now().to_key_string(), run_id],
            )
            .map_err(e)?;
            tx.commit().map_err(e)
        })
        .await
    }
}
