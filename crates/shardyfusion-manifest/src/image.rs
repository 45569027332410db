//! Build and parse the format-v4 manifest: a complete SQLite database image with the tables
//! `build_meta` (one row) and `shards` (one row per non-empty shard).

use std::io::Cursor;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, MAIN_DB, Row, params};
use shardyfusion_core::codec::{
    custom_from_json, custom_to_json, key_from_json, key_to_json, sharding_from_json,
    sharding_to_json, validate_manifest, writer_info_from_json, writer_info_to_json,
};
use shardyfusion_core::{
    Error, ErrorKind, KeyEncoding, ParsedManifest, RequiredBuildMeta, RequiredShardMeta, Result,
    Timestamp,
};

/// The 16 bytes every SQLite image starts with.
pub const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// `CREATE TABLE build_meta`, byte for byte as the Python writer stores it.
pub(crate) const BUILD_META_DDL: &str = "CREATE TABLE build_meta (
    run_id           TEXT    NOT NULL,
    created_at       TEXT    NOT NULL,
    num_dbs          INTEGER NOT NULL,
    s3_prefix        TEXT    NOT NULL,
    key_col          TEXT    NOT NULL,
    sharding         TEXT    NOT NULL,
    db_path_template TEXT    NOT NULL,
    shard_prefix     TEXT    NOT NULL,
    format_version   INTEGER NOT NULL,
    key_encoding     TEXT    NOT NULL,
    custom           TEXT    NOT NULL DEFAULT '{}'
)";

/// `CREATE TABLE shards`, byte for byte as the Python writer stores it.
pub(crate) const SHARDS_DDL: &str = "CREATE TABLE shards (
    db_id         INTEGER NOT NULL PRIMARY KEY,
    db_url        TEXT,
    attempt       INTEGER NOT NULL,
    row_count     INTEGER NOT NULL,
    db_bytes      INTEGER NOT NULL,
    min_key       TEXT,
    max_key       TEXT,
    checkpoint_id TEXT,
    writer_info   TEXT    NOT NULL DEFAULT '{}'
)";

fn build_err(e: rusqlite::Error) -> Error {
    Error::new(
        ErrorKind::ManifestBuild,
        format!("building the manifest image failed: {e}"),
    )
    .with_source(e)
}

fn i64_of(what: &str, v: u64) -> Result<i64> {
    i64::try_from(v).map_err(|_| {
        Error::new(
            ErrorKind::ManifestBuild,
            format!("{what} {v} does not fit a signed 64-bit integer"),
        )
    })
}

/// Build the manifest image of a snapshot. Shard rows are written in ascending `db_id`; rows
/// of empty shards (`db_url` = `None`) are left out.
///
/// ```
/// use shardyfusion_core::RequiredBuildMeta;
/// use shardyfusion_manifest::{build_manifest, parse_manifest};
/// let build = RequiredBuildMeta::new("run1", 4, "s3://bucket/prefix");
/// let bytes = build_manifest(&build, &[]).unwrap();
/// assert!(bytes.starts_with(b"SQLite format 3\0"));
/// assert_eq!(parse_manifest(&bytes).unwrap().build, build);
/// ```
pub fn build_manifest(build: &RequiredBuildMeta, shards: &[RequiredShardMeta]) -> Result<Vec<u8>> {
    build.validate()?;
    let mut rows: Vec<&RequiredShardMeta> = shards.iter().filter(|s| !s.is_empty()).collect();
    rows.sort_by_key(|s| s.db_id);
    let image = ParsedManifest {
        build: build.clone(),
        shards: rows.iter().map(|s| (*s).clone()).collect(),
    };
    validate_manifest(&image)
        .map_err(|e| Error::new(ErrorKind::ManifestBuild, e.message().to_owned()))?;

    let mut conn = Connection::open_in_memory().map_err(build_err)?;
    conn.execute_batch("PRAGMA page_size = 4096")
        .map_err(build_err)?;
    conn.execute(BUILD_META_DDL, []).map_err(build_err)?;
    conn.execute(SHARDS_DDL, []).map_err(build_err)?;
    {
        let tx = conn.transaction().map_err(build_err)?;
        tx.execute(
            "INSERT INTO build_meta (run_id, created_at, num_dbs, s3_prefix, key_col, sharding, db_path_template, \
             shard_prefix, format_version, key_encoding, custom) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                build.run_id,
                build.created_at.to_iso(),
                i64::from(build.num_dbs),
                build.s3_prefix,
                build.key_col,
                sharding_to_json(&build.sharding),
                build.db_path_template,
                build.shard_prefix,
                i64::from(build.format_version),
                build.key_encoding.as_str(),
                custom_to_json(&build.custom),
            ],
        )
        .map_err(build_err)?;
        {
            let mut stmt = tx
                .prepare(
                    "INSERT INTO shards (db_id, db_url, attempt, row_count, db_bytes, min_key, max_key, checkpoint_id, \
                     writer_info) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )
                .map_err(build_err)?;
            for s in &rows {
                stmt.execute(params![
                    i64::from(s.db_id),
                    s.db_url,
                    i64::from(s.attempt),
                    i64_of("row_count", s.row_count)?,
                    i64_of("db_bytes", s.db_bytes)?,
                    s.min_key.as_ref().and_then(key_to_json),
                    s.max_key.as_ref().and_then(key_to_json),
                    s.checkpoint_id,
                    writer_info_to_json(&s.writer_info),
                ])
                .map_err(build_err)?;
            }
        }
        tx.commit().map_err(build_err)?;
    }
    let data = conn.serialize(MAIN_DB).map_err(build_err)?;
    Ok(data.to_vec())
}

fn parse_err(why: impl std::fmt::Display) -> Error {
    Error::manifest_parse(format!("manifest: {why}"))
}

/// The error of a failed read of `table`.
pub(crate) fn read_err(table: &str) -> impl Fn(rusqlite::Error) -> Error + '_ {
    move |e| parse_err(format!("cannot read table {table}: {e}"))
}

/// Open an image read-only in memory after checking the magic bytes.
pub(crate) fn open_image(bytes: &[u8]) -> Result<Connection> {
    if !bytes.starts_with(SQLITE_MAGIC) {
        return Err(Error::manifest_parse(
            "Unsupported manifest format: expected SQLite (magic bytes missing)",
        ));
    }
    let mut conn = Connection::open_in_memory()
        .map_err(|e| parse_err(format!("cannot open an in-memory database: {e}")))?;
    conn.deserialize_read_exact(MAIN_DB, Cursor::new(bytes), bytes.len(), true)
        .map_err(|e| parse_err(format!("cannot load the SQLite image: {e}")))?;
    Ok(conn)
}

/// Column access by name with strict types.
pub(crate) struct Columns {
    names: Vec<String>,
    table: &'static str,
}

impl Columns {
    /// The columns of `table` in `SELECT *` order. Read through `PRAGMA table_info` rather than
    /// the statement's column names: a corrupt image can hold names that are not UTF-8, which
    /// rusqlite's name accessors panic on.
    pub(crate) fn of(conn: &Connection, table: &'static str) -> Result<Self> {
        let mut stmt = conn
            .prepare(&format!("PRAGMA table_info({table})"))
            .map_err(|e| parse_err(format!("cannot read the schema of table {table}: {e}")))?;
        let mut rows = stmt
            .query([])
            .map_err(|e| parse_err(format!("cannot read the schema of table {table}: {e}")))?;
        let mut names = Vec::new();
        while let Some(row) = rows
            .next()
            .map_err(|e| parse_err(format!("cannot read the schema of table {table}: {e}")))?
        {
            match row.get_ref(1) {
                Ok(ValueRef::Text(t)) => names.push(
                    std::str::from_utf8(t)
                        .map_err(|_| {
                            parse_err(format!("table {table} has a column name that is not UTF-8"))
                        })?
                        .to_owned(),
                ),
                _ => {
                    return Err(parse_err(format!(
                        "table {table} has an unreadable column name"
                    )));
                }
            }
        }
        if names.is_empty() {
            return Err(parse_err(format!("required table {table} is missing")));
        }
        Ok(Columns { names, table })
    }

    fn idx(&self, name: &str) -> Result<usize> {
        self.names
            .iter()
            .position(|n| n == name)
            .ok_or_else(|| parse_err(format!("table {} has no column {name:?}", self.table)))
    }

    pub(crate) fn has(&self, name: &str) -> bool {
        self.names.iter().any(|n| n == name)
    }

    fn value<'r>(&self, row: &'r Row<'_>, name: &str) -> Result<ValueRef<'r>> {
        let i = self.idx(name)?;
        row.get_ref(i)
            .map_err(|e| parse_err(format!("{}.{name}: {e}", self.table)))
    }

    pub(crate) fn int(&self, row: &Row<'_>, name: &str) -> Result<i64> {
        match self.value(row, name)? {
            ValueRef::Integer(i) => Ok(i),
            other => Err(parse_err(format!(
                "{}.{name} must be an INTEGER, got {:?}",
                self.table,
                other.data_type()
            ))),
        }
    }

    pub(crate) fn opt_text(&self, row: &Row<'_>, name: &str) -> Result<Option<String>> {
        match self.value(row, name)? {
            ValueRef::Null => Ok(None),
            ValueRef::Text(t) => std::str::from_utf8(t)
                .map(|s| Some(s.to_owned()))
                .map_err(|_| parse_err(format!("{}.{name} is not valid UTF-8", self.table))),
            other => Err(parse_err(format!(
                "{}.{name} must be TEXT, got {:?}",
                self.table,
                other.data_type()
            ))),
        }
    }

    pub(crate) fn text(&self, row: &Row<'_>, name: &str) -> Result<String> {
        self.opt_text(row, name)?
            .ok_or_else(|| parse_err(format!("{}.{name} must not be NULL", self.table)))
    }
}

fn non_negative(table: &str, name: &str, v: i64) -> Result<i64> {
    if v < 0 {
        return Err(parse_err(format!("{table}.{name} must be >= 0, got {v}")));
    }
    Ok(v)
}

pub(crate) fn read_build_meta(conn: &Connection) -> Result<RequiredBuildMeta> {
    let cols = Columns::of(conn, "build_meta")?;
    let mut stmt = conn
        .prepare("SELECT * FROM build_meta ORDER BY rowid LIMIT 1")
        .map_err(read_err("build_meta"))?;
    let mut rows = stmt.query([]).map_err(read_err("build_meta"))?;
    let row = rows
        .next()
        .map_err(read_err("build_meta"))?
        .ok_or_else(|| parse_err("table build_meta has no row"))?;
    let format_version = cols.int(row, "format_version")?;
    if format_version != 4 {
        return Err(parse_err(format!(
            "unsupported format_version {format_version} (expected 4)"
        )));
    }
    let num_dbs = cols.int(row, "num_dbs")?;
    if num_dbs <= 0 || num_dbs > i64::from(u32::MAX) {
        return Err(parse_err(format!(
            "num_dbs must be in [1, 2^32-1], got {num_dbs}"
        )));
    }
    let key_encoding: KeyEncoding = cols
        .text(row, "key_encoding")?
        .parse()
        .map_err(|e: Error| parse_err(e.message()))?;
    let custom = if cols.has("custom") {
        custom_from_json(cols.opt_text(row, "custom")?.as_deref())?
    } else {
        Default::default()
    };
    Ok(RequiredBuildMeta {
        run_id: cols.text(row, "run_id")?,
        created_at: Timestamp::parse(&cols.text(row, "created_at")?)?,
        num_dbs: num_dbs as u32,
        s3_prefix: cols.text(row, "s3_prefix")?,
        key_col: cols.text(row, "key_col")?,
        sharding: sharding_from_json(&cols.text(row, "sharding")?)?,
        db_path_template: cols.text(row, "db_path_template")?,
        shard_prefix: cols.text(row, "shard_prefix")?,
        format_version: 4,
        key_encoding,
        custom,
    })
}

pub(crate) fn read_shard_row(cols: &Columns, row: &Row<'_>) -> Result<RequiredShardMeta> {
    let t = "shards";
    let db_id = non_negative(t, "db_id", cols.int(row, "db_id")?)?;
    let u32_of = |name: &str, v: i64| -> Result<u32> {
        u32::try_from(v).map_err(|_| parse_err(format!("shards.{name} {v} is too large")))
    };
    Ok(RequiredShardMeta {
        db_id: u32_of("db_id", db_id)?,
        db_url: cols.opt_text(row, "db_url")?,
        attempt: u32_of(
            "attempt",
            non_negative(t, "attempt", cols.int(row, "attempt")?)?,
        )?,
        row_count: non_negative(t, "row_count", cols.int(row, "row_count")?)? as u64,
        db_bytes: non_negative(t, "db_bytes", cols.int(row, "db_bytes")?)? as u64,
        min_key: cols
            .opt_text(row, "min_key")?
            .map(|k| key_from_json(&k))
            .transpose()?,
        max_key: cols
            .opt_text(row, "max_key")?
            .map(|k| key_from_json(&k))
            .transpose()?,
        checkpoint_id: cols.opt_text(row, "checkpoint_id")?,
        writer_info: if cols.has("writer_info") {
            writer_info_from_json(cols.opt_text(row, "writer_info")?.as_deref())?
        } else {
            Default::default()
        },
    })
}

/// Parse and validate a manifest image (SPEC 4.10). Any failure is `ManifestParse`.
pub fn parse_manifest(bytes: &[u8]) -> Result<ParsedManifest> {
    let conn = open_image(bytes)?;
    let build = read_build_meta(&conn)?;
    let cols = Columns::of(&conn, "shards")?;
    let mut stmt = conn
        .prepare("SELECT * FROM shards ORDER BY db_id")
        .map_err(read_err("shards"))?;
    let mut rows = stmt.query([]).map_err(read_err("shards"))?;
    let mut shards = Vec::new();
    while let Some(row) = rows.next().map_err(read_err("shards"))? {
        shards.push(read_shard_row(&cols, row)?);
        if shards.len() > build.num_dbs as usize {
            break; // validate_manifest reports it
        }
    }
    let manifest = ParsedManifest { build, shards };
    validate_manifest(&manifest)?;
    Ok(manifest)
}
