//! Commit of a write: winner per shard, the manifest build row, the two-phase publish through
//! the manifest store, and deletion of losing attempts.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use shardyfusion_core::{
    Error, ErrorKind, FORMAT_VERSION, ManifestSharding, ManifestStore, MetricEvent, MetricValue,
    MetricsCollector, PublishObserver, RequiredBuildMeta, RequiredShardMeta, Result, RoutingValue,
    Timestamp, WriteConfig, WriterInfo, attempt_claims_dir, parse_attempt_claim, shard_attempt_url,
};
use shardyfusion_storage::StorageResolver;

use crate::result::{BuildDurations, BuildResult, BuildStats};
use crate::shard::ShardResult;

/// Everything the commit of one write needs besides its shard results.
pub(crate) struct Commit<'a> {
    pub(crate) config: &'a WriteConfig,
    pub(crate) store: &'a Arc<dyn ManifestStore>,
    pub(crate) resolver: &'a StorageResolver,
    pub(crate) run_id: &'a str,
    pub(crate) key_col: &'a str,
    pub(crate) num_dbs: u32,
    pub(crate) routing_values: Option<Vec<RoutingValue>>,
    pub(crate) started: Instant,
    pub(crate) sharding_ms: u64,
    pub(crate) write_ms: u64,
    pub(crate) run_record_ref: Option<String>,
}

impl Commit<'_> {
    /// Winners and coverage, the two-phase publish, best-effort deletion of losing attempts.
    pub(crate) async fn publish(self, results: Vec<ShardResult>) -> Result<BuildResult> {
        let cfg = self.config;
        let out = cfg.output();
        let metrics = cfg.metrics_collector().cloned();
        let num_attempt_results = results.len();
        let (winners, losers) = select_winners(results, self.num_dbs)?;

        // Publish: manifest, then pointer.
        let manifest_start = Instant::now();
        let build = RequiredBuildMeta {
            run_id: self.run_id.to_owned(),
            created_at: Timestamp::now(),
            num_dbs: self.num_dbs,
            s3_prefix: cfg.s3_prefix().to_owned(),
            key_col: self.key_col.to_owned(),
            sharding: ManifestSharding::from_spec(cfg.sharding(), self.routing_values.clone()),
            db_path_template: out.db_path_template.as_str().to_owned(),
            shard_prefix: out.shard_prefix.clone(),
            format_version: FORMAT_VERSION,
            key_encoding: cfg.key_encoding(),
            custom: cfg.custom_manifest_fields().clone(),
        };
        let shard_rows: Vec<RequiredShardMeta> = winners
            .iter()
            .map(|w| RequiredShardMeta {
                db_id: w.db_id,
                db_url: w.db_url.clone(),
                attempt: w.attempt,
                row_count: w.row_count,
                db_bytes: w.db_bytes,
                min_key: w.min_key.clone(),
                max_key: w.max_key.clone(),
                checkpoint_id: w.checkpoint_id.clone(),
                writer_info: WriterInfo {
                    attempt: i64::from(w.attempt),
                    duration_ms: w.duration_ms,
                    stage_id: None,
                    task_attempt_id: None,
                },
            })
            .collect();
        let observer = Observer {
            metrics: metrics.clone(),
            started: self.started,
        };
        let manifest_ref = self.store.publish(&build, &shard_rows, &observer).await?;
        let manifest_ms = manifest_start.elapsed().as_millis() as u64;

        // Best-effort cleanup of failed attempts: those the results name, and those only the
        // run's claims know of (an engine task that died before returning its result).
        let mut losers = losers;
        losers.extend(self.claimed_losers(&winners).await);
        losers.sort();
        losers.dedup();
        for url in &losers {
            delete_prefix(self.resolver, url).await;
        }

        let result = BuildResult {
            run_id: self.run_id.to_owned(),
            num_dbs: self.num_dbs,
            stats: BuildStats {
                durations: BuildDurations {
                    sharding_ms: self.sharding_ms,
                    write_ms: self.write_ms,
                    manifest_ms,
                    total_ms: self.started.elapsed().as_millis() as u64,
                },
                num_attempt_results,
                num_winners: winners.len(),
                rows_written: winners.iter().map(|w| w.row_count).sum(),
                duplicate_keys: winners.iter().map(|w| w.duplicate_keys).sum(),
            },
            winners,
            manifest_ref,
            run_record_ref: self.run_record_ref,
        };
        if let Some(m) = &metrics {
            m.emit(
                MetricEvent::WriteCompleted,
                &[
                    (
                        "elapsed_ms",
                        MetricValue::Int(self.started.elapsed().as_millis() as i64),
                    ),
                    (
                        "rows_written",
                        MetricValue::Int(result.stats.rows_written as i64),
                    ),
                ],
            );
        }
        Ok(result)
    }
}

/// Emits the publish events at the moment each phase is durable.
struct Observer {
    metrics: Option<Arc<dyn MetricsCollector>>,
    started: Instant,
}

impl PublishObserver for Observer {
    fn manifest_published(&self, _manifest_ref: &str) {
        if let Some(m) = &self.metrics {
            m.emit(
                MetricEvent::WriteManifestPublished,
                &[(
                    "elapsed_ms",
                    MetricValue::Int(self.started.elapsed().as_millis() as i64),
                )],
            );
        }
    }
    fn current_published(&self, manifest_ref: &str) {
        if let Some(m) = &self.metrics {
            m.emit(
                MetricEvent::WriteCurrentPublished,
                &[
                    (
                        "elapsed_ms",
                        MetricValue::Int(self.started.elapsed().as_millis() as i64),
                    ),
                    ("manifest_ref", MetricValue::Str(manifest_ref)),
                ],
            );
        }
    }
}

/// Winner per shard by the minimum of `(attempt, task_attempt_id, db_url)`; every `db_id` in
/// `[0, num_dbs)` needs a result. Returns the non-empty winners (ascending) and the URLs of every
/// other attempt.
pub(crate) fn select_winners(
    results: Vec<ShardResult>,
    num_dbs: u32,
) -> Result<(Vec<ShardResult>, Vec<String>)> {
    let mut by_id: HashMap<u32, Vec<ShardResult>> = HashMap::new();
    for r in results {
        if r.db_id >= num_dbs {
            return Err(Error::new(
                ErrorKind::ShardCoverage,
                format!("shard result for db_id {} outside [0, {num_dbs})", r.db_id),
            ));
        }
        by_id.entry(r.db_id).or_default().push(r);
    }
    let mut winners = Vec::new();
    let mut losers = Vec::new();
    for db_id in 0..num_dbs {
        let mut candidates = by_id.remove(&db_id).ok_or_else(|| {
            Error::new(
                ErrorKind::ShardCoverage,
                format!("no result for shard {db_id} of {num_dbs}: results must cover every db_id"),
            )
        })?;
        candidates.sort_by(|a, b| {
            (a.attempt, i64::MAX, a.db_url.as_deref().unwrap_or("")).cmp(&(
                b.attempt,
                i64::MAX,
                b.db_url.as_deref().unwrap_or(""),
            ))
        });
        let winner = candidates.remove(0);
        for c in candidates.iter().chain(std::iter::once(&winner)) {
            losers.extend(
                c.attempt_urls
                    .iter()
                    .filter(|u| Some(u.as_str()) != winner.db_url.as_deref())
                    .cloned(),
            );
        }
        if winner.db_url.is_some() {
            winners.push(winner);
        }
    }
    losers.sort();
    losers.dedup();
    Ok((winners, losers))
}

impl Commit<'_> {
    /// URLs of the attempts this run claimed that did not win (best effort: a listing failure
    /// leaves them for `shardy cleanup`).
    async fn claimed_losers(&self, winners: &[ShardResult]) -> Vec<String> {
        use futures::TryStreamExt as _;
        let Ok(prefix) = self.resolver.resolve(self.config.s3_prefix()) else {
            return Vec::new();
        };
        let dir = prefix.child(&[&attempt_claims_dir(self.run_id)]);
        let listed: Vec<_> = match prefix.store.list(Some(&dir)).try_collect().await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(run_id = self.run_id, error = %e, "listing the run's attempt claims failed");
                return Vec::new();
            }
        };
        let won: HashMap<u32, u32> = winners.iter().map(|w| (w.db_id, w.attempt)).collect();
        let out = self.config.output();
        listed
            .iter()
            .filter_map(|m| parse_attempt_claim(m.location.filename()?))
            .filter(|(db, attempt)| won.get(db) != Some(attempt))
            .map(|(db, attempt)| {
                shard_attempt_url(
                    self.config.s3_prefix(),
                    &out.shard_prefix,
                    self.run_id,
                    &out.db_path_template,
                    db,
                    attempt,
                )
            })
            .collect()
    }
}

/// Delete every object under `url + "/"`, logging failures.
async fn delete_prefix(resolver: &StorageResolver, url: &str) {
    let Ok(loc) = resolver.resolve(url) else {
        return;
    };
    match shardyfusion_storage::delete_prefix(loc.store.as_ref(), &loc.path).await {
        Ok(n) => tracing::info!(url, objects = n, "deleted a failed shard attempt"),
        Err(e) => tracing::warn!(url, error = %e, "cleanup of a failed attempt stopped"),
    }
}
