//! Checked conversions between database rows and the manifest model, each failure naming its column.

use super::{BuildRow, ShardRow};
use crate::codec::{
    custom_from_json, custom_to_json, key_from_json, key_to_json, sharding_from_json,
    sharding_to_json, writer_info_from_json, writer_info_to_json,
};
use crate::encoding::KeyEncoding;
use crate::error::{Error, ErrorKind, Result};
use crate::model::{FORMAT_VERSION, RequiredBuildMeta, RequiredShardMeta};

/// An integer read from `column` of run `run_id` that must fit `u32`.
fn read_u32(run_id: &str, column: &str, v: i64) -> Result<u32> {
    u32::try_from(v).map_err(|_| out_of_range(run_id, column, v, "0..=4294967295"))
}

/// An integer read from `column` of run `run_id` that must not be negative.
fn read_u64(run_id: &str, column: &str, v: i64) -> Result<u64> {
    u64::try_from(v).map_err(|_| out_of_range(run_id, column, v, ">= 0"))
}

fn out_of_range(run_id: &str, column: &str, v: i64, range: &str) -> Error {
    Error::manifest_parse(format!(
        "column {column} of run {run_id:?} holds {v}, outside the allowed range {range}"
    ))
}

/// A model integer checked against what the database column holds (`max`).
fn write_int(what: &str, column: &str, v: u64, max: i64) -> Result<i64> {
    i64::try_from(v).ok().filter(|n| *n <= max).ok_or_else(|| {
        Error::new(
            ErrorKind::ManifestBuild,
            format!("{what}: {column} {v} does not fit the store's column (at most {max})"),
        )
    })
}

/// The model form of a build row read from the database.
pub(super) fn build_from_row(row: BuildRow) -> Result<RequiredBuildMeta> {
    let id = row.run_id;
    let num_dbs = read_u32(&id, "num_dbs", row.num_dbs)?;
    if num_dbs == 0 {
        return Err(Error::manifest_parse(format!(
            "column num_dbs of run {id:?} must be > 0, got 0"
        )));
    }
    let key_encoding = row.key_encoding.parse::<KeyEncoding>().map_err(|e| {
        Error::manifest_parse(format!(
            "column key_encoding of run {id:?}: {}",
            e.message()
        ))
    })?;
    let sharding = sharding_from_json(&row.sharding).map_err(|e| in_column(&id, "sharding", e))?;
    let custom =
        custom_from_json(row.custom.as_deref()).map_err(|e| in_column(&id, "custom", e))?;
    Ok(RequiredBuildMeta {
        created_at: row.created_at,
        num_dbs,
        s3_prefix: row.s3_prefix,
        key_col: row.key_col,
        sharding,
        db_path_template: row.db_path_template,
        shard_prefix: row.shard_prefix,
        format_version: FORMAT_VERSION,
        key_encoding,
        custom,
        run_id: id,
    })
}

/// The model form of a shard row of run `run_id` read from the database.
pub(super) fn shard_from_row(run_id: &str, row: ShardRow) -> Result<RequiredShardMeta> {
    let key = |column: &str, text: Option<String>| {
        text.as_deref()
            .map(key_from_json)
            .transpose()
            .map_err(|e| in_column(run_id, column, e))
    };
    Ok(RequiredShardMeta {
        db_id: read_u32(run_id, "db_id", row.db_id)?,
        db_url: row.db_url,
        attempt: read_u32(run_id, "attempt", row.attempt)?,
        row_count: read_u64(run_id, "row_count", row.row_count)?,
        db_bytes: read_u64(run_id, "db_bytes", row.db_bytes)?,
        min_key: key("min_key", row.min_key)?,
        max_key: key("max_key", row.max_key)?,
        checkpoint_id: row.checkpoint_id,
        writer_info: writer_info_from_json(row.writer_info.as_deref())
            .map_err(|e| in_column(run_id, "writer_info", e))?,
    })
}

fn in_column(run_id: &str, column: &str, e: Error) -> Error {
    Error::manifest_parse(format!(
        "column {column} of run {run_id:?}: {}",
        e.message()
    ))
}

/// The row form of a build to publish; `integer_max` is the backend's `INTEGER` ceiling.
pub(super) fn build_to_row(b: &RequiredBuildMeta, integer_max: i64) -> Result<BuildRow> {
    let what = format!("run {:?}", b.run_id);
    Ok(BuildRow {
        run_id: b.run_id.clone(),
        created_at: b.created_at,
        num_dbs: write_int(&what, "num_dbs", u64::from(b.num_dbs), integer_max)?,
        s3_prefix: b.s3_prefix.clone(),
        key_col: b.key_col.clone(),
        db_path_template: b.db_path_template.clone(),
        shard_prefix: b.shard_prefix.clone(),
        key_encoding: b.key_encoding.as_str().to_owned(),
        sharding: sharding_to_json(&b.sharding),
        custom: Some(custom_to_json(&b.custom)),
    })
}

/// The row form of a shard to publish; `integer_max` is the backend's `INTEGER` ceiling.
pub(super) fn shard_to_row(s: &RequiredShardMeta, integer_max: i64) -> Result<ShardRow> {
    let what = format!("shard {}", s.db_id);
    Ok(ShardRow {
        db_id: write_int(&what, "db_id", u64::from(s.db_id), integer_max)?,
        db_url: s.db_url.clone(),
        attempt: write_int(&what, "attempt", u64::from(s.attempt), integer_max)?,
        row_count: write_int(&what, "row_count", s.row_count, integer_max)?,
        db_bytes: write_int(&what, "db_bytes", s.db_bytes, i64::MAX)?,
        checkpoint_id: s.checkpoint_id.clone(),
        min_key: s.min_key.as_ref().and_then(key_to_json),
        max_key: s.max_key.as_ref().and_then(key_to_json),
        writer_info: Some(writer_info_to_json(&s.writer_info)),
    })
}
