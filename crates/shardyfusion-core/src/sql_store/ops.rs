//! The five store operations over a [`SqlBackend`]: transactions, create-only publish, pointer moves, loads.

use super::convert::{build_from_row, build_to_row, shard_from_row, shard_to_row};
use super::{RefRow, SqlBackend};
use crate::codec::validate_manifest;
use crate::error::{Error, ErrorKind, Result};
use crate::model::{ManifestRef, ParsedManifest, RequiredBuildMeta, RequiredShardMeta};
use crate::time::Timestamp;

/// The smallest step between two pointer rows (the timestamps' resolution).
const TICK: std::time::Duration = std::time::Duration::from_micros(1);

fn to_ref(r: RefRow) -> ManifestRef {
    ManifestRef {
        manifest_ref: r.run_id.clone(),
        run_id: r.run_id,
        published_at: r.at,
    }
}

/// Run `f` in a write transaction: commit when it succeeds, roll back when it (or the begin, or
/// the commit) fails.
fn in_write_tx<B: SqlBackend, T>(db: &mut B, f: impl FnOnce(&mut B) -> Result<T>) -> Result<T> {
    let out = db
        .begin_write()
        .and_then(|()| f(db))
        .and_then(|v| db.commit().map(|()| v));
    if out.is_err() {
        // The backend discards a session it cannot roll back; the first error is the one to report.
        let _ = db.rollback();
    }
    out
}

/// Append a pointer row naming `run_id`, strictly newer than the previous one, and check it is
/// now the newest. Runs inside the write transaction, so no other writer can interleave.
fn move_pointer<B: SqlBackend>(db: &mut B, run_id: &str) -> Result<Timestamp> {
    let previous = db.latest_pointer()?;
    let mut at = db.now()?;
    if let Some(p) = &previous
        && at <= p.at
    {
        // A clock that stepped back (or a tie) must not leave the new row behind the old one.
        at = p.at.plus(TICK);
    }
    db.insert_pointer(run_id, at)?;
    match db.latest_pointer()? {
        Some(now) if now.run_id == run_id && now.at == at => Ok(at),
        other => Err(Error::new(
            ErrorKind::ManifestStore,
            format!(
                "the pointer row naming {run_id:?} written at {at} in {} is not the newest afterwards \
                 (newest: {other:?}, before: {previous:?}); rolled back, the pointer did not move",
                db.describe()
            ),
        )),
    }
}

/// Load and validate the manifest of `run_id` (inside or outside a transaction).
fn load<B: SqlBackend>(db: &mut B, run_id: &str) -> Result<ParsedManifest> {
    let row = db
        .build_row(run_id)?
        .ok_or_else(|| Error::manifest_parse(format!("Manifest not found: ref={run_id}")))?;
    if row.run_id != run_id {
        return Err(Error::manifest_parse(format!(
            "Manifest not found: ref={run_id} (the database returned run {:?})",
            row.run_id
        )));
    }
    let build = build_from_row(row)?;
    let mut shards = db
        .shard_rows(run_id)?
        .into_iter()
        .map(|r| shard_from_row(run_id, r))
        .collect::<Result<Vec<_>>>()?;
    shards.sort_by_key(|s| s.db_id);
    let m = ParsedManifest { build, shards };
    validate_manifest(&m)?;
    Ok(m)
}

/// Persist a manifest and make it current in one write transaction (SPEC 8.3 with 15.1 and
/// 15.2). Only non-empty shards are stored.
///
/// Errors: invalid input or values the columns cannot hold → `ManifestBuild`; a run id that
/// already has a build row → `ConfigValidation` ("run id already published"), nothing written;
/// a database failure → `PublishManifest` (retryable; nothing became current).
pub fn publish<B: SqlBackend>(
    db: &mut B,
    build: &RequiredBuildMeta,
    shards: &[RequiredShardMeta],
) -> Result<ManifestRef> {
    build.validate()?;
    let mut kept: Vec<RequiredShardMeta> =
        shards.iter().filter(|s| !s.is_empty()).cloned().collect();
    kept.sort_by_key(|s| s.db_id);
    validate_manifest(&ParsedManifest {
        build: build.clone(),
        shards: kept.clone(),
    })
    .map_err(|e| {
        Error::new(
            ErrorKind::ManifestBuild,
            format!(
                "run {:?} is not a valid manifest: {}",
                build.run_id,
                e.message()
            ),
        )
    })?;
    let build_row = build_to_row(build, B::INTEGER_MAX)?;
    let shard_rows = kept
        .iter()
        .map(|s| shard_to_row(s, B::INTEGER_MAX))
        .collect::<Result<Vec<_>>>()?;
    let run_id = build.run_id.as_str();
    in_write_tx(db, |db| {
        if !db.insert_build(&build_row)? {
            return Err(Error::run_id_published(run_id, db.describe()));
        }
        db.insert_shards(run_id, &shard_rows)?;
        move_pointer(db, run_id)
    })
    .map_err(|e| publish_failed(run_id, e))?;
    Ok(ManifestRef {
        manifest_ref: run_id.to_owned(),
        run_id: run_id.to_owned(),
        published_at: build.created_at,
    })
}

/// A failed database publish: store trouble (`ManifestStore`, e.g. a lost connection) becomes
/// `PublishManifest` ("nothing became current"); other kinds pass through.
pub fn publish_failed(run_id: &str, e: Error) -> Error {
    if e.kind() != ErrorKind::ManifestStore {
        return e;
    }
    Error::new(
        ErrorKind::PublishManifest,
        format!(
            "publishing run {run_id:?} failed; nothing became current: {}",
            e.message()
        ),
    )
    .with_source(e)
}

/// The current pointer: the newest pointer row, else the newest build, else `None`.
pub fn load_current<B: SqlBackend>(db: &mut B) -> Result<Option<ManifestRef>> {
    if let Some(p) = db.latest_pointer()? {
        return Ok(Some(to_ref(p)));
    }
    Ok(db.newest_build()?.map(to_ref))
}

/// Load and validate one manifest; an unknown ref is `ManifestParse` ("Manifest not found").
/// Its `db_url`s must lie within its own recorded prefix or under `allowed` (SPEC 15.3).
pub fn load_manifest<B: SqlBackend>(
    db: &mut B,
    manifest_ref: &str,
    allowed: &[String],
) -> Result<ParsedManifest> {
    let mut m = load(db, manifest_ref)?;
    crate::trust::confine_to_recorded_prefix(&mut m, allowed)?;
    Ok(m)
}

/// Published manifests by `created_at`, newest first, at most `limit`.
pub fn list_manifests<B: SqlBackend>(db: &mut B, limit: usize) -> Result<Vec<ManifestRef>> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    Ok(db.list_builds(limit)?.into_iter().map(to_ref).collect())
}

/// Make an existing manifest current (rollback): in one write transaction, load and validate
/// it, then append a pointer row after the previous one. An unknown or invalid manifest is
/// `ManifestParse` and the pointer does not move. Returns the new pointer.
pub fn set_current<B: SqlBackend>(db: &mut B, manifest_ref: &str) -> Result<ManifestRef> {
    in_write_tx(db, |db| {
        load(db, manifest_ref)?;
        let at = move_pointer(db, manifest_ref)?;
        Ok(ManifestRef {
            manifest_ref: manifest_ref.to_owned(),
            run_id: manifest_ref.to_owned(),
            published_at: at,
        })
    })
}
