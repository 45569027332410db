//! The PostgreSQL dialect of the shared store logic: schema, table lock, `$N` placeholders and checked row reads.

use chrono::{DateTime, Utc};
use postgres::types::{FromSql, Type};
use postgres::{Client, Row};
use shardyfusion_core::sql_store::{BuildRow, RefRow, ShardRow, SqlBackend};
use shardyfusion_core::{Error, ErrorKind, Result, Timestamp};

/// How long a writer waits for another writer's table lock before failing (retryable).
const LOCK_TIMEOUT: &str = "30s";

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

    /// The schema of SPEC 8.3.
    pub(crate) fn ddl(&self) -> String {
        let (b, s, p) = (&self.builds, &self.shards, &self.pointer);
        format!(
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
        )
    }
}

/// A driver failure as a retryable `ManifestStore` error naming the database and the step.
pub(crate) fn store_err(describe: &str, what: &str, e: postgres::Error) -> Error {
    // The driver's own text for server errors is just "db error"; the server's message and
    // SQLSTATE say what happened.
    let detail = match e.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => e.to_string(),
    };
    Error::new(
        ErrorKind::ManifestStore,
        format!("{describe}: {what} failed: {detail}"),
    )
    .with_source(e)
}

/// One connected client, implementing the shared logic's backend. Blocking: used only on
/// `spawn_blocking` threads.
pub(crate) struct PgSession<'a> {
    client: &'a mut Client,
    tables: &'a Tables,
    describe: &'a str,
    /// Set when a rollback failed: the connection must not be reused.
    pub(crate) broken: bool,
}

impl<'a> PgSession<'a> {
    pub(crate) fn new(client: &'a mut Client, tables: &'a Tables, describe: &'a str) -> Self {
        PgSession {
            client,
            tables,
            describe,
            broken: false,
        }
    }

    fn err(&self, what: &'static str) -> impl Fn(postgres::Error) -> Error + '_ {
        move |e| store_err(self.describe, what, e)
    }

    fn ref_rows(
        &mut self,
        sql: &str,
        (table, id_col, at_col): (&str, &str, &str),
        limit: Option<i64>,
    ) -> Result<Vec<RefRow>> {
        let rows = match limit {
            Some(l) => self.client.query(sql, &[&l]),
            None => self.client.query(sql, &[]),
        }
        .map_err(|e| store_err(self.describe, "query", e))?;
        rows.iter()
            .map(|r| {
                Ok(RefRow {
                    run_id: get(r, table, id_col)?,
                    at: timestamp(r, table, at_col)?,
                })
            })
            .collect()
    }
}

/// Column `name` of `table`: NULL where a value is required, or a type the column should not
/// have, is `ManifestParse` naming the column.
fn get<'r, T: FromSql<'r>>(row: &'r Row, table: &str, name: &str) -> Result<T> {
    row.try_get::<_, T>(name).map_err(|e| {
        Error::manifest_parse(format!(
            "PostgreSQL column {table}.{name} is unreadable: {e}"
        ))
        .with_source(e)
    })
}

fn timestamp(row: &Row, table: &str, name: &str) -> Result<Timestamp> {
    get::<DateTime<Utc>>(row, table, name).map(Timestamp::from_datetime)
}

/// An integer column of any width (`SMALLINT`, `INTEGER`, `BIGINT`), widened without loss.
fn int(row: &Row, table: &str, name: &str) -> Result<i64> {
    let ty = row
        .columns()
        .iter()
        .find(|c| c.name() == name)
        .map(|c| c.type_().clone());
    let v = match ty {
        Some(Type::INT2) => get::<Option<i16>>(row, table, name)?.map(i64::from),
        Some(Type::INT4) => get::<Option<i32>>(row, table, name)?.map(i64::from),
        _ => get::<Option<i64>>(row, table, name)?,
    };
    v.ok_or_else(|| {
        Error::manifest_parse(format!(
            "PostgreSQL column {table}.{name} is NULL, expected an integer"
        ))
    })
}

/// A model integer as an `INTEGER` parameter (the shared logic already checked the range).
fn int4(column: &str, v: i64) -> Result<i32> {
    i32::try_from(v).map_err(|_| {
        Error::new(
            ErrorKind::ManifestBuild,
            format!("{column} {v} does not fit a PostgreSQL INTEGER column"),
        )
    })
}

impl SqlBackend for PgSession<'_> {
    /// `i32::MAX`: `num_dbs`, `db_id`, `attempt` and `row_count` are `INTEGER` columns.
    const INTEGER_MAX: i64 = 2_147_483_647;

    fn describe(&self) -> &str {
        self.describe
    }

    /// `LOCK TABLE <pointer> IN SHARE ROW EXCLUSIVE MODE`: self-conflicting and conflicting with
    /// any `INSERT` into the pointer table (also from writers that do not take it, such as the
    /// Python store), not with readers.
    fn begin_write(&mut self) -> Result<()> {
        let sql = format!(
            "BEGIN; SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'; LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE",
            self.tables.pointer
        );
        self.client
            .batch_execute(&sql)
            .map_err(self.err("beginning the write transaction"))
    }

    fn commit(&mut self) -> Result<()> {
        self.client
            .batch_execute("COMMIT")
            .map_err(self.err("COMMIT"))
    }

    fn rollback(&mut self) -> Result<()> {
        let out = self
            .client
            .batch_execute("ROLLBACK")
            .map_err(self.err("ROLLBACK"));
        self.broken |= out.is_err();
        out
    }

    fn now(&mut self) -> Result<Timestamp> {
        let row = self
            .client
            .query_one("SELECT clock_timestamp() AS now", &[])
            .map_err(self.err("reading the clock"))?;
        timestamp(&row, "clock_timestamp()", "now")
    }

    fn latest_pointer(&mut self) -> Result<Option<RefRow>> {
        let sql = format!(
            "SELECT manifest_ref, updated_at FROM {} ORDER BY updated_at DESC LIMIT 1",
            self.tables.pointer
        );
        let pointer = self.tables.pointer.clone();
        Ok(self
            .ref_rows(&sql, (&pointer, "manifest_ref", "updated_at"), None)?
            .pop())
    }

    fn newest_build(&mut self) -> Result<Option<RefRow>> {
        Ok(self.list_builds(1)?.pop())
    }

    fn list_builds(&mut self, limit: i64) -> Result<Vec<RefRow>> {
        let sql = format!(
            "SELECT run_id, created_at FROM {} ORDER BY created_at DESC, run_id DESC LIMIT $1",
            self.tables.builds
        );
        let builds = self.tables.builds.clone();
        self.ref_rows(&sql, (&builds, "run_id", "created_at"), Some(limit))
    }

    fn build_row(&mut self, run_id: &str) -> Result<Option<BuildRow>> {
        let t = &self.tables.builds;
        let row = self
            .client
            .query_opt(
                &format!(
                    "SELECT run_id, created_at, num_dbs, s3_prefix, key_col, db_path_template, shard_prefix, \
                     key_encoding, sharding::text AS sharding, custom::text AS custom FROM {t} WHERE run_id = $1"
                ),
                &[&run_id],
            )
            .map_err(|e| store_err(self.describe, "query", e))?;
        let Some(r) = row else { return Ok(None) };
        Ok(Some(BuildRow {
            run_id: get(&r, t, "run_id")?,
            created_at: timestamp(&r, t, "created_at")?,
            num_dbs: int(&r, t, "num_dbs")?,
            s3_prefix: get(&r, t, "s3_prefix")?,
            key_col: get(&r, t, "key_col")?,
            db_path_template: get(&r, t, "db_path_template")?,
            shard_prefix: get(&r, t, "shard_prefix")?,
            key_encoding: get(&r, t, "key_encoding")?,
            sharding: get(&r, t, "sharding")?,
            custom: get(&r, t, "custom")?,
        }))
    }

    fn shard_rows(&mut self, run_id: &str) -> Result<Vec<ShardRow>> {
        let t = &self.tables.shards;
        let rows = self
            .client
            .query(
                &format!(
                    "SELECT db_id, db_url, attempt, row_count, db_bytes, checkpoint_id, min_key::text AS min_key, \
                     max_key::text AS max_key, writer_info::text AS writer_info FROM {t} WHERE run_id = $1 ORDER BY db_id"
                ),
                &[&run_id],
            )
            .map_err(|e| store_err(self.describe, "query", e))?;
        rows.iter()
            .map(|r| {
                Ok(ShardRow {
                    db_id: int(r, t, "db_id")?,
                    db_url: get(r, t, "db_url")?,
                    attempt: int(r, t, "attempt")?,
                    row_count: int(r, t, "row_count")?,
                    db_bytes: int(r, t, "db_bytes")?,
                    checkpoint_id: get(r, t, "checkpoint_id")?,
                    min_key: get(r, t, "min_key")?,
                    max_key: get(r, t, "max_key")?,
                    writer_info: get(r, t, "writer_info")?,
                })
            })
            .collect()
    }

    fn insert_build(&mut self, b: &BuildRow) -> Result<bool> {
        let num_dbs = int4("num_dbs", b.num_dbs)?;
        let custom = b.custom.as_deref().unwrap_or("{}");
        let n = self
            .client
            .execute(
                &format!(
                    "INSERT INTO {} (run_id, created_at, num_dbs, s3_prefix, key_col, db_path_template, shard_prefix, \
                     key_encoding, sharding, custom) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::text::jsonb, $10::text::jsonb) \
                     ON CONFLICT (run_id) DO NOTHING",
                    self.tables.builds
                ),
                &[
                    &b.run_id,
                    &b.created_at.as_datetime(),
                    &num_dbs,
                    &b.s3_prefix,
                    &b.key_col,
                    &b.db_path_template,
                    &b.shard_prefix,
                    &b.key_encoding,
                    &b.sharding,
                    &custom,
                ],
            )
            .map_err(self.err("inserting the build row"))?;
        Ok(n == 1)
    }

    fn insert_shards(&mut self, run_id: &str, rows: &[ShardRow]) -> Result<()> {
        let stmt = self
            .client
            .prepare(&format!(
                "INSERT INTO {} (run_id, db_id, db_url, attempt, row_count, db_bytes, checkpoint_id, min_key, max_key, \
                 writer_info) VALUES ($1, $2, $3, $4, $5, $6, $7, $8::text::jsonb, $9::text::jsonb, $10::text::jsonb)",
                self.tables.shards
            ))
            .map_err(self.err("inserting shard rows"))?;
        for r in rows {
            let (db_id, attempt, row_count) = (
                int4("db_id", r.db_id)?,
                int4("attempt", r.attempt)?,
                int4("row_count", r.row_count)?,
            );
            self.client
                .execute(
                    &stmt,
                    &[
                        &run_id,
                        &db_id,
                        &r.db_url,
                        &attempt,
                        &row_count,
                        &r.db_bytes,
                        &r.checkpoint_id,
                        &r.min_key,
                        &r.max_key,
                        &r.writer_info,
                    ],
                )
                .map_err(|e| store_err(self.describe, "inserting shard rows", e))?;
        }
        Ok(())
    }

    fn insert_pointer(&mut self, run_id: &str, at: Timestamp) -> Result<()> {
        self.client
            .execute(
                &format!(
                    "INSERT INTO {} (updated_at, manifest_ref) VALUES ($1, $2)",
                    self.tables.pointer
                ),
                &[&at.as_datetime(), &run_id],
            )
            .map_err(self.err("inserting the pointer row"))?;
        Ok(())
    }
}
