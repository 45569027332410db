//! The SQLite dialect of the shared store logic: schema, `BEGIN IMMEDIATE`, `?N` placeholders and checked row reads.

use std::path::Path;
use std::time::Duration;

use rusqlite::types::FromSql;
use rusqlite::{Connection, OptionalExtension, Row, params};
use shardyfusion_core::sql_store::{BuildRow, RefRow, ShardRow, SqlBackend};
use shardyfusion_core::{Error, ErrorKind, Result, Timestamp};

/// How long a statement waits for another connection's lock before failing with `SQLITE_BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The three table names of one store.
#[derive(Debug, Clone)]
pub(crate) struct Tables {
    pub(crate) builds: String,
    pub(crate) shards: String,
    pub(crate) pointer: String,
}

impl Tables {
    pub(crate) fn new(table_name: &str, pointer_table_name: &str) -> Self {
        Tables {
            builds: format!("{table_name}_builds"),
            shards: format!("{table_name}_shards"),
            pointer: pointer_table_name.to_owned(),
        }
    }

    fn ddl(&self) -> String {
        let (b, s, p) = (&self.builds, &self.shards, &self.pointer);
        format!(
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
        )
    }
}

pub(crate) fn db_err(describe: &str, what: &str, e: rusqlite::Error) -> Error {
    Error::new(
        ErrorKind::ManifestStore,
        format!("{describe}: {what} failed: {e}"),
    )
    .with_source(e)
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

/// One connection to the store's file, implementing the shared logic's backend. Blocking: used
/// only on `spawn_blocking` threads.
pub(crate) struct SqliteSession<'a> {
    conn: Connection,
    tables: &'a Tables,
    describe: &'a str,
}

impl<'a> SqliteSession<'a> {
    /// Open the file (creating it), set the busy timeout and, unless `initialized`, switch to WAL
    /// and create the tables.
    pub(crate) fn open(
        path: &Path,
        tables: &'a Tables,
        describe: &'a str,
        initialized: bool,
    ) -> Result<Self> {
        let conn = Connection::open(path).map_err(|e| db_err(describe, "open", e))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| db_err(describe, "setting the busy timeout", e))?;
        if !initialized {
            let ddl = tables.ddl();
            retry_busy(|| {
                let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
                if !mode.eq_ignore_ascii_case("wal") {
                    let _: String =
                        conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
                }
                conn.execute_batch(&ddl)
            })
            .map_err(|e| db_err(describe, "initializing the database", e))?;
        }
        Ok(SqliteSession {
            conn,
            tables,
            describe,
        })
    }

    fn err(&self, what: &str) -> impl Fn(rusqlite::Error) -> Error + '_ {
        let what = what.to_owned();
        move |e| db_err(self.describe, &what, e)
    }

    /// Rows of `(id_col, at_col)` from `table` selected by `sql`.
    fn ref_rows(
        &self,
        sql: &str,
        (table, id_col, at_col): (&str, &str, &str),
        limit: Option<i64>,
    ) -> Result<Vec<RefRow>> {
        let mut stmt = self.conn.prepare(sql).map_err(self.err("query"))?;
        let mut rows = match limit {
            Some(l) => stmt.query([l]),
            None => stmt.query([]),
        }
        .map_err(self.err("query"))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(self.err("query"))? {
            out.push(RefRow {
                run_id: col(r, table, 0, id_col)?,
                at: ts(r, table, 1, at_col)?,
            });
        }
        Ok(out)
    }
}

/// Column `idx` (called `name` in messages) of `table`: NULL or a wrong type is `ManifestParse`.
fn col<T: FromSql>(row: &Row<'_>, table: &str, idx: usize, name: &str) -> Result<T> {
    row.get::<_, T>(idx).map_err(|e| {
        Error::manifest_parse(format!("SQLite column {table}.{name} is unreadable: {e}"))
            .with_source(e)
    })
}

fn ts(row: &Row<'_>, table: &str, idx: usize, name: &str) -> Result<Timestamp> {
    let text: String = col(row, table, idx, name)?;
    Timestamp::parse(&text).map_err(|e| {
        Error::manifest_parse(format!(
            "SQLite column {table}.{name} holds {text:?}, not a timestamp: {}",
            e.message()
        ))
    })
}

impl SqlBackend for SqliteSession<'_> {
    const INTEGER_MAX: i64 = i64::MAX;

    fn describe(&self) -> &str {
        self.describe
    }

    fn begin_write(&mut self) -> Result<()> {
        self.conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(self.err("BEGIN IMMEDIATE"))
    }

    fn commit(&mut self) -> Result<()> {
        self.conn
            .execute_batch("COMMIT")
            .map_err(self.err("COMMIT"))
    }

    fn rollback(&mut self) -> Result<()> {
        if self.conn.is_autocommit() {
            return Ok(());
        }
        self.conn
            .execute_batch("ROLLBACK")
            .map_err(self.err("ROLLBACK"))
    }

    fn now(&mut self) -> Result<Timestamp> {
        Ok(Timestamp::now())
    }

    fn latest_pointer(&mut self) -> Result<Option<RefRow>> {
        let sql = format!(
            "SELECT manifest_ref, updated_at FROM {} ORDER BY updated_at DESC, id DESC LIMIT 1",
            self.tables.pointer
        );
        let cols = (self.tables.pointer.as_str(), "manifest_ref", "updated_at");
        Ok(self.ref_rows(&sql, cols, None)?.pop())
    }

    fn newest_build(&mut self) -> Result<Option<RefRow>> {
        Ok(self.list_builds(1)?.pop())
    }

    fn list_builds(&mut self, limit: i64) -> Result<Vec<RefRow>> {
        let sql = format!(
            "SELECT run_id, created_at FROM {} ORDER BY created_at DESC, run_id DESC LIMIT ?1",
            self.tables.builds
        );
        let cols = (self.tables.builds.as_str(), "run_id", "created_at");
        self.ref_rows(&sql, cols, Some(limit))
    }

    fn build_row(&mut self, run_id: &str) -> Result<Option<BuildRow>> {
        let t = &self.tables.builds;
        self.conn
            .query_row(
                &format!(
                    "SELECT run_id, created_at, num_dbs, s3_prefix, key_col, db_path_template, shard_prefix, \
                     key_encoding, sharding, custom FROM {t} WHERE run_id = ?1"
                ),
                [run_id],
                |r| Ok(read_build(r, t)),
            )
            .optional()
            .map_err(self.err("query"))?
            .transpose()
    }

    fn shard_rows(&mut self, run_id: &str) -> Result<Vec<ShardRow>> {
        let t = &self.tables.shards;
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT db_id, db_url, attempt, row_count, db_bytes, checkpoint_id, min_key, max_key, writer_info \
                 FROM {t} WHERE run_id = ?1 ORDER BY db_id"
            ))
            .map_err(self.err("query"))?;
        let mut rows = stmt.query([run_id]).map_err(self.err("query"))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(self.err("query"))? {
            out.push(ShardRow {
                db_id: col(r, t, 0, "db_id")?,
                db_url: col(r, t, 1, "db_url")?,
                attempt: col(r, t, 2, "attempt")?,
                row_count: col(r, t, 3, "row_count")?,
                db_bytes: col(r, t, 4, "db_bytes")?,
                checkpoint_id: col(r, t, 5, "checkpoint_id")?,
                min_key: col(r, t, 6, "min_key")?,
                max_key: col(r, t, 7, "max_key")?,
                writer_info: col(r, t, 8, "writer_info")?,
            });
        }
        Ok(out)
    }

    fn insert_build(&mut self, b: &BuildRow) -> Result<bool> {
        let n = self
            .conn
            .execute(
                &format!(
                    "INSERT INTO {} (run_id, created_at, num_dbs, s3_prefix, key_col, db_path_template, shard_prefix, \
                     key_encoding, sharding, custom) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
                     ON CONFLICT (run_id) DO NOTHING",
                    self.tables.builds
                ),
                params![
                    b.run_id,
                    b.created_at.to_key_string(),
                    b.num_dbs,
                    b.s3_prefix,
                    b.key_col,
                    b.db_path_template,
                    b.shard_prefix,
                    b.key_encoding,
                    b.sharding,
                    b.custom.as_deref().unwrap_or("{}"),
                ],
            )
            .map_err(self.err("inserting the build row"))?;
        Ok(n == 1)
    }

    fn insert_shards(&mut self, run_id: &str, rows: &[ShardRow]) -> Result<()> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "INSERT INTO {} (run_id, db_id, db_url, attempt, row_count, db_bytes, checkpoint_id, min_key, max_key, \
                 writer_info) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                self.tables.shards
            ))
            .map_err(self.err("inserting shard rows"))?;
        for r in rows {
            stmt.execute(params![
                run_id,
                r.db_id,
                r.db_url,
                r.attempt,
                r.row_count,
                r.db_bytes,
                r.checkpoint_id,
                r.min_key,
                r.max_key,
                r.writer_info,
            ])
            .map_err(|e| db_err(self.describe, "inserting shard rows", e))?;
        }
        Ok(())
    }

    fn insert_pointer(&mut self, run_id: &str, at: Timestamp) -> Result<()> {
        self.conn
            .execute(
                &format!(
                    "INSERT INTO {} (updated_at, manifest_ref) VALUES (?1, ?2)",
                    self.tables.pointer
                ),
                params![at.to_key_string(), run_id],
            )
            .map_err(self.err("inserting the pointer row"))?;
        Ok(())
    }
}

fn read_build(r: &Row<'_>, t: &str) -> Result<BuildRow> {
    Ok(BuildRow {
        run_id: col(r, t, 0, "run_id")?,
        created_at: ts(r, t, 1, "created_at")?,
        num_dbs: col(r, t, 2, "num_dbs")?,
        s3_prefix: col(r, t, 3, "s3_prefix")?,
        key_col: col(r, t, 4, "key_col")?,
        db_path_template: col(r, t, 5, "db_path_template")?,
        shard_prefix: col(r, t, 6, "shard_prefix")?,
        key_encoding: col(r, t, 7, "key_encoding")?,
        sharding: col(r, t, 8, "sharding")?,
        custom: col(r, t, 9, "custom")?,
    })
}
