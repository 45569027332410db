//! `shardy cleanup`: delete stale shard attempts of a run, and optionally old runs' shard data.
//! Manifests and run records are never deleted.

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use clap::Args;
use serde_json::{Map, Value, json};
use shardyfusion::storage::object_store::path::Path;
use shardyfusion::storage::object_store::{ObjectStore, ObjectStoreExt};
use shardyfusion::{
    DEFAULT_RUN_REGISTRY_PREFIX, Timestamp, attempt_claims_dir, run_id_of_record_dir,
};

use crate::Ctx;

/// Options of `shardy cleanup`.
#[derive(Debug, Args)]
pub(crate) struct CleanupArgs {
    /// Only report what would be deleted.
    #[arg(long)]
    dry_run: bool,
    /// Also delete shard data of runs not in the manifest history.
    #[arg(long)]
    include_old_runs: bool,
    /// Protect runs published within this window (`7d`, `24h`).
    #[arg(long, value_name = "7d|24h")]
    older_than: Option<String>,
    /// Protect the newest N runs (N ≥ 1).
    #[arg(long, value_name = "N")]
    keep_last: Option<usize>,
    /// Retries of each storage request (S3 `max_attempts` = N + 1; default from the S3
    /// settings).
    #[arg(long, value_name = "N")]
    max_retries: Option<u32>,
}

impl CleanupArgs {
    /// The S3 `max_attempts` that `--max-retries` asks for.
    pub(crate) fn max_attempts(&self) -> Option<u32> {
        self.max_retries.map(|n| n.saturating_add(1))
    }
}

fn parse_window(s: &str) -> Result<std::time::Duration> {
    let (n, unit) = s.split_at(s.len().saturating_sub(1));
    let n: u64 = n
        .parse()
        .with_context(|| format!("--older-than takes an integer and d or h, got {s:?}"))?;
    match unit {
        "d" => Ok(std::time::Duration::from_secs(n * 86_400)),
        "h" => Ok(std::time::Duration::from_secs(n * 3_600)),
        _ => bail!("--older-than takes an integer and d or h, got {s:?}"),
    }
}

/// Every object key under `prefix`.
async fn list_all(store: &dyn ObjectStore, prefix: &Path) -> Result<Vec<Path>> {
    use futures::StreamExt as _;
    let mut out = Vec::new();
    let mut s = store.list(Some(prefix));
    while let Some(m) = s.next().await {
        out.push(m?.location);
    }
    Ok(out)
}

async fn delete(store: &dyn ObjectStore, keys: &[Path]) -> Result<()> {
    let keys = futures::stream::iter(keys.iter().cloned().map(Ok).collect::<Vec<_>>());
    shardyfusion::storage::delete_objects(store, futures::StreamExt::boxed(keys)).await?;
    Ok(())
}

/// Whether a run record (`run.yaml`) says a writer may still be building: `running` with a lease
/// that has not expired. A record that cannot be read as one counts as live too, so cleanup
/// never deletes on a guess.
fn record_is_live(yaml: &[u8], now: Timestamp) -> bool {
    let Ok(doc) = serde_yaml_ng::from_slice::<serde_yaml_ng::Value>(yaml) else {
        return true;
    };
    if doc.get("status").and_then(|v| v.as_str()) != Some("running") {
        return false;
    }
    match doc
        .get("lease_expires_at")
        .and_then(|v| v.as_str())
        .map(Timestamp::parse)
    {
        Some(Ok(lease)) => now.seconds_until(lease) > 0.0,
        _ => true,
    }
}

/// Run ids with a live run record under `<prefix>/runs/` (SPEC 13.2: protect leased `running`
/// runs, whose shards a writer may be building right now).
async fn leased_runs(store: &dyn ObjectStore, runs_root: &Path) -> Result<BTreeSet<String>> {
    let now = Timestamp::now();
    let mut live = BTreeSet::new();
    for key in list_all(store, runs_root).await? {
        if key.filename() != Some("run.yaml") {
            continue;
        }
        let Some(id) = key
            .parts()
            .filter_map(|p| run_id_of_record_dir(p.as_ref()).map(str::to_owned))
            .next()
        else {
            continue;
        };
        let body = store.get(&key).await?.bytes().await?;
        if record_is_live(&body, now) {
            live.insert(id);
        }
    }
    Ok(live)
}

/// The attempt prefix (`…/attempt=NN`) an object key belongs to.
fn attempt_of(key: &str) -> Option<String> {
    let idx = key.find("/attempt=")?;
    let rest = &key[idx + 1..];
    let end = rest.find('/').map_or(key.len(), |e| idx + 1 + e);
    Some(key[..end].to_owned())
}

pub(crate) async fn run(ctx: &Ctx, args: &CleanupArgs) -> Result<ExitCode> {
    if args.keep_last == Some(0) {
        bail!("--keep-last must be >= 1");
    }
    let window = args.older_than.as_deref().map(parse_window).transpose()?;
    let prefix = ctx.prefix.clone().context(
        "cleanup needs the snapshot prefix (object-store backend or [reader].s3_prefix)",
    )?;
    let target_ref = match (&ctx.manifest_ref, ctx.offset) {
        (Some(r), _) => r.clone(),
        (None, Some(n)) => ctx
            .store
            .list_manifests(n + 1)
            .await?
            .get(n)
            .map(|m| m.manifest_ref.clone())
            .context("--offset out of range")?,
        (None, None) => {
            ctx.store
                .load_current()
                .await?
                .context("CURRENT pointer not found: nothing to clean up")?
                .manifest_ref
        }
    };
    let manifest = ctx.store.load_manifest(&target_ref).await?;
    let loc = ctx.resolver.resolve(&prefix)?;
    let store = loc.store.as_ref();
    let shard_root = loc.child(&[&manifest.build.shard_prefix]);
    let run_dir = loc.child(&[
        &manifest.build.shard_prefix,
        &format!("run_id={}", manifest.build.run_id),
    ]);

    // Stale attempts of the target run: every attempt directory that is not a winner.
    let winners: BTreeSet<String> = manifest
        .shards
        .iter()
        .filter_map(|s| s.db_url.as_deref())
        .filter_map(|u| ctx.resolver.resolve(u).ok())
        .map(|l| l.path.to_string())
        .collect();
    let mut attempts: BTreeMap<String, Vec<Path>> = BTreeMap::new();
    for key in list_all(store, &run_dir).await? {
        if let Some(a) = attempt_of(key.as_ref()) {
            attempts.entry(a).or_default().push(key);
        }
    }
    let mut stale = Vec::new();
    let (mut total_objects, mut total_prefixes) = (0usize, 0usize);
    for (attempt, keys) in &attempts {
        if winners.contains(attempt) {
            continue;
        }
        if !args.dry_run {
            delete(store, keys).await?;
        }
        let db_id = attempt
            .split('/')
            .rev()
            .nth(1)
            .and_then(|d| d.rsplit('=').next())
            .and_then(|n| n.parse::<u64>().ok());
        stale.push(json!({"db_id": db_id, "prefix_url": format!("{}/{}", loc.url, attempt.strip_prefix(loc.path.as_ref()).unwrap_or(attempt).trim_start_matches('/')), "objects_deleted": if args.dry_run { 0 } else { keys.len() }}));
        total_objects += if args.dry_run { 0 } else { keys.len() };
        total_prefixes += 1;
    }

    let mut record: Map<String, Value> = Map::new();
    record.insert("op".into(), json!("cleanup"));
    record.insert("dry_run".into(), json!(args.dry_run));
    record.insert("run_id".into(), json!(manifest.build.run_id));

    // Old runs: delete run_id=<id>/ directories that no given flag protects.
    if args.include_old_runs || window.is_some() || args.keep_last.is_some() {
        let history = ctx.store.list_manifests(10_000).await?;
        let mut protected_sets: Vec<BTreeSet<String>> = Vec::new();
        if args.include_old_runs {
            protected_sets.push(history.iter().map(|m| m.run_id.clone()).collect());
        }
        if let Some(w) = window {
            let now = Timestamp::now();
            protected_sets.push(
                history
                    .iter()
                    .filter(|m| m.published_at.seconds_until(now) <= w.as_secs_f64())
                    .map(|m| m.run_id.clone())
                    .collect(),
            );
        }
        if let Some(n) = args.keep_last {
            protected_sets.push(history.iter().take(n).map(|m| m.run_id.clone()).collect());
        }
        let mut protected: BTreeSet<String> = protected_sets.iter().skip(1).fold(
            protected_sets.first().cloned().unwrap_or_default(),
            |acc, s| acc.intersection(s).cloned().collect(),
        );
        protected.insert(manifest.build.run_id.clone());
        let leased = leased_runs(store, &loc.child(&[DEFAULT_RUN_REGISTRY_PREFIX])).await?;
        for id in &leased {
            if protected.insert(id.clone()) {
                eprintln!(
                    "note: run {id} is still running under an unexpired lease: its shard data is kept"
                );
            }
        }
        let listing = store.list_with_delimiter(Some(&shard_root)).await?;
        let mut old = Vec::new();
        for dir in listing.common_prefixes {
            let Some(id) = dir
                .filename()
                .and_then(|n| n.strip_prefix("run_id="))
                .map(str::to_owned)
            else {
                continue;
            };
            if protected.contains(&id) {
                continue;
            }
            let mut keys = list_all(store, &dir).await?;
            // The run's attempt claims (the writer deletes them when a build ends; a killed
            // build leaves them).
            keys.extend(list_all(store, &loc.child(&[&attempt_claims_dir(&id)])).await?);
            if !args.dry_run {
                delete(store, &keys).await?;
                total_objects += keys.len();
            }
            total_prefixes += 1;
            old.push(json!({"run_id": id, "prefix_url": format!("{}/{}/run_id={id}", loc.url, manifest.build.shard_prefix), "objects_deleted": if args.dry_run { 0 } else { keys.len() }}));
        }
        record.insert("old_runs".into(), Value::Array(old));
    }
    record.insert("stale_attempts".into(), Value::Array(stale));
    record.insert("total_objects_deleted".into(), json!(total_objects));
    record.insert("total_prefixes_removed".into(), json!(total_prefixes));
    let summary = format!(
        "{} prefixes, {total_objects} objects{}",
        total_prefixes,
        if args.dry_run { " (dry run)" } else { "" }
    );
    ctx.out.record(&record, || vec![summary]);
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempt_prefixes_and_windows() {
        assert_eq!(
            attempt_of("p/shards/run_id=r/db=00001/attempt=01/manifest/1.manifest").as_deref(),
            Some("p/shards/run_id=r/db=00001/attempt=01")
        );
        assert_eq!(attempt_of("p/shards/run_id=r/db=00001/x"), None);
        assert_eq!(parse_window("7d").unwrap().as_secs(), 7 * 86_400);
        assert_eq!(parse_window("24h").unwrap().as_secs(), 86_400);
        assert!(parse_window("3w").is_err());
    }

    #[test]
    fn max_retries_is_attempts_minus_one() {
        use clap::Parser as _;
        #[derive(clap::Parser)]
        struct T {
            #[command(flatten)]
            a: CleanupArgs,
        }
        assert_eq!(
            T::parse_from(["t", "--max-retries", "0"]).a.max_attempts(),
            Some(1)
        );
        assert_eq!(
            T::parse_from(["t", "--max-retries", "4"]).a.max_attempts(),
            Some(5)
        );
        assert_eq!(T::parse_from(["t"]).a.max_attempts(), None);
    }

    #[test]
    fn run_record_leases() {
        let now = Timestamp::parse("2026-12-01T10:00:00Z").unwrap();
        let rec = |status: &str, lease: &str| {
            format!("status: {status}\nlease_expires_at: '{lease}'\nrun_id: abc\n")
        };
        assert!(record_is_live(
            rec("running", "2026-12-01T10:05:00.000000Z").as_bytes(),
            now
        ));
        assert!(!record_is_live(
            rec("running", "2026-12-01T09:55:00.000000Z").as_bytes(),
            now
        ));
        assert!(!record_is_live(
            rec("succeeded", "2026-12-01T10:05:00.000000Z").as_bytes(),
            now
        ));
        assert!(!record_is_live(
            rec("failed", "2026-12-01T10:05:00.000000Z").as_bytes(),
            now
        ));
        assert!(record_is_live(rec("running", "not a time").as_bytes(), now));
        assert!(record_is_live(b"{unbalanced", now));
    }
}
