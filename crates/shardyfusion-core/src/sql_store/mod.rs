//! The one implementation of the database manifest stores (PostgreSQL, SQLite file) over a small blocking backend trait.
//!
//! The store crates own the SQL dialect (placeholders, column types, the locking statement, how
//! a driver row becomes a [`BuildRow`] or [`ShardRow`]) and implement [`SqlBackend`] with their
//! blocking drivers; the operations here ([`publish`], [`load_current`], [`load_manifest`],
//! [`list_manifests`], [`set_current`]) own the logic, the validation and every error message.
//! Nothing here does I/O itself: the store crates call these functions on
//! tokio's `spawn_blocking`.
//!
//! Invariants enforced here, once for both databases:
//!
//! * **Nothing published is written again** (SPEC 15.1): the build row is inserted create-only;
//!   an existing row for the run id is `ConfigValidation` ("run id already published").
//! * **The pointer moves only on purpose** (SPEC 15.2): `publish` and `set_current` run in one
//!   write transaction that excludes every other writer, read the previous pointer row, append a
//!   row strictly newer than it, and check that the new row is the newest before committing.
//! * **Checked conversions**: every integer read from or written to the database is converted
//!   with a range check naming the column; NULLs and wrong types are `ManifestParse`.

mod convert;
mod ops;
#[cfg(test)]
mod tests;

pub use ops::{list_manifests, load_current, load_manifest, publish, publish_failed, set_current};

use crate::error::Result;
use crate::time::Timestamp;

/// One `<table>_builds` row, as a backend reads or writes it. JSON columns travel as JSON text.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildRow {
    /// `run_id`.
    pub run_id: String,
    /// `created_at`.
    pub created_at: Timestamp,
    /// `num_dbs` (an `INTEGER` column).
    pub num_dbs: i64,
    /// `s3_prefix`.
    pub s3_prefix: String,
    /// `key_col`.
    pub key_col: String,
    /// `db_path_template`.
    pub db_path_template: String,
    /// `shard_prefix`.
    pub shard_prefix: String,
    /// `key_encoding`.
    pub key_encoding: String,
    /// `sharding` JSON text.
    pub sharding: String,
    /// `custom` JSON text (`None` = SQL NULL, read as `{}`).
    pub custom: Option<String>,
}

/// One `<table>_shards` row, as a backend reads or writes it. JSON columns travel as JSON text.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardRow {
    /// `db_id` (an `INTEGER` column).
    pub db_id: i64,
    /// `db_url`.
    pub db_url: Option<String>,
    /// `attempt` (an `INTEGER` column).
    pub attempt: i64,
    /// `row_count` (an `INTEGER` column).
    pub row_count: i64,
    /// `db_bytes` (a `BIGINT` column).
    pub db_bytes: i64,
    /// `checkpoint_id`.
    pub checkpoint_id: Option<String>,
    /// `min_key` JSON text.
    pub min_key: Option<String>,
    /// `max_key` JSON text.
    pub max_key: Option<String>,
    /// `writer_info` JSON text.
    pub writer_info: Option<String>,
}

/// A run id with a time: a pointer row (`manifest_ref`, `updated_at`) or a build row
/// (`run_id`, `created_at`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefRow {
    /// The run id (the ref of a database store).
    pub run_id: String,
    /// `updated_at` of a pointer row, `created_at` of a build row.
    pub at: Timestamp,
}

/// What a database must provide for the shared store logic: blocking, one session (connection)
/// at a time. Implementations map driver failures to `ManifestStore` errors (retryable) and
/// unreadable values (NULL, wrong type) to `ManifestParse` errors naming the column; messages
/// name the database through [`describe`](SqlBackend::describe) and never hold a secret.
pub trait SqlBackend {
    /// The largest value the backend's `INTEGER` columns hold (`num_dbs`, `db_id`, `attempt`,
    /// `row_count`); `BIGINT` columns hold any `i64`.
    const INTEGER_MAX: i64;

    /// The database, for messages (e.g. `PostgreSQL postgres://u:***@h/db`), without secrets.
    fn describe(&self) -> &str;

    /// Begin a write transaction that excludes every other writer of the pointer table until it
    /// ends (PostgreSQL: a self-conflicting table lock; SQLite: `BEGIN IMMEDIATE`). Readers are
    /// not blocked.
    fn begin_write(&mut self) -> Result<()>;
    /// Commit the write transaction.
    fn commit(&mut self) -> Result<()>;
    /// Roll the write transaction back (also after a failed `begin_write` or `commit`, so it
    /// must accept being called when no transaction is open). A backend that cannot roll back
    /// must discard its session rather than reuse it.
    fn rollback(&mut self) -> Result<()>;

    /// The database's clock (PostgreSQL: `clock_timestamp()`; SQLite: the process clock).
    fn now(&mut self) -> Result<Timestamp>;
    /// The newest pointer row (`ORDER BY updated_at DESC`, ties broken by insertion order where
    /// the table records it), or `None` when the table is empty.
    fn latest_pointer(&mut self) -> Result<Option<RefRow>>;
    /// The newest build row by `created_at`, or `None` when there is none.
    fn newest_build(&mut self) -> Result<Option<RefRow>>;
    /// Build rows by `created_at DESC, run_id DESC`, at most `limit`.
    fn list_builds(&mut self, limit: i64) -> Result<Vec<RefRow>>;
    /// The build row of `run_id`.
    fn build_row(&mut self, run_id: &str) -> Result<Option<BuildRow>>;
    /// The shard rows of `run_id`, in any order.
    fn shard_rows(&mut self, run_id: &str) -> Result<Vec<ShardRow>>;

    /// Insert `row` unless a build row with its run id exists (create-only, never an update):
    /// `Ok(true)` when inserted, `Ok(false)` when the run id was already there.
    fn insert_build(&mut self, row: &BuildRow) -> Result<bool>;
    /// Insert the shard rows of `run_id`.
    fn insert_shards(&mut self, run_id: &str, rows: &[ShardRow]) -> Result<()>;
    /// Append a pointer row `(updated_at = at, manifest_ref = run_id)`.
    fn insert_pointer(&mut self, run_id: &str, at: Timestamp) -> Result<()>;
}
