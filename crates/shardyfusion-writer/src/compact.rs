//! Compaction of a closed shard into one sorted run, so a get probes one table instead of
//! every L0 SST the build flushed (SlateDB has no `Db::compact`: a standalone compactor runs
//! one full compaction, then the replaced SSTs are deleted).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use shardyfusion_core::{Error, ErrorKind, Result};
use slatedb::CompactorBuilder;
use slatedb::admin::Admin;
use slatedb::compactor::{CompactionScheduler, CompactionSchedulerSupplier, CompactionSpec};
use slatedb::compactor::{CompactorStateView, SourceId};
use slatedb::config::{CompactionWorkerOptions, CompactorOptions};
use slatedb::object_store::ObjectStore;
use slatedb::object_store::path::Path;

use crate::adapter::SlateDbOptions;

/// How often the compactor and this module look at the shard's manifest.
const POLL: Duration = Duration::from_millis(5);

/// Shards with at most this many tables (L0 SSTs plus sorted runs) are left as they are: a warm
/// get checks each table's bloom filter in memory (measured ~0.65 µs per table), so four cost
/// at most ~20 % more than one, while compacting a small shard costs a fixed ~0.3 s of
/// compactor round trips.
pub(crate) const COMPACT_ABOVE_TABLES: usize = 4;

/// Proposes one compaction of everything (L0 newest first, then the sorted runs) into one run
/// while the shard has more than one table and nothing is running.
struct OneRun;

impl CompactionScheduler for OneRun {
    fn propose(&self, state: &CompactorStateView) -> Vec<CompactionSpec> {
        let busy = state
            .compactions()
            .is_some_and(|c| c.recent_compactions().any(|c| c.active()));
        let m = state.manifest();
        if busy || m.l0().len() + m.compacted().len() <= 1 {
            return Vec::new();
        }
        let mut sources: Vec<SourceId> = m.l0().iter().map(|v| SourceId::SstView(v.id)).collect();
        sources.extend(m.compacted().iter().map(|r| SourceId::SortedRun(r.id)));
        let destination = m.compacted().last().map_or(0, |r| r.id);
        vec![CompactionSpec::new(sources, destination)]
    }
}

impl CompactionSchedulerSupplier for OneRun {
    fn compaction_scheduler(
        &self,
        _options: &CompactorOptions,
    ) -> Box<dyn CompactionScheduler + Send + Sync> {
        Box::new(OneRun)
    }
}

fn failed(url: &str, e: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::ShardWrite,
        format!("compacting shard {url} into one sorted run: {e}"),
    )
}

/// Whether the shard at `path` has more than one table (L0 SSTs plus sorted runs).
async fn tables(admin: &Admin, url: &str) -> Result<(usize, usize)> {
    let m = admin
        .read_manifest(None)
        .await
        .map_err(|e| failed(url, e))?
        .ok_or_else(|| failed(url, "the shard has no manifest"))?;
    Ok((m.l0().len(), m.compacted().len()))
}

/// Compact the closed shard database at `path` into one sorted run (nothing to do when it
/// has at most [`COMPACT_ABOVE_TABLES`] tables), then delete the SSTs it replaced. `url` names it in errors.
pub(crate) async fn compact_to_one_run(
    store: Arc<dyn ObjectStore>,
    path: Path,
    url: &str,
    options: &SlateDbOptions,
) -> Result<()> {
    let admin = Admin::builder(path.clone(), store.clone()).build();
    let (l0, runs) = tables(&admin, url).await?;
    if l0 + runs <= COMPACT_ABOVE_TABLES {
        return Ok(());
    }
    let worker = CompactionWorkerOptions {
        max_concurrent_compactions: 1,
        compactions_poll_interval: POLL,
        // One input at a time, read in modest steps: many shards may compact at once.
        max_fetch_tasks: 1,
        bytes_to_fetch: 1 << 20,
        max_subcompactions: 1,
        max_sst_size: 64 << 20,
        min_filter_keys: if options.legacy_readers {
            u32::MAX
        } else {
            CompactionWorkerOptions::default().min_filter_keys
        },
        object_store_max_retries: Some(options.object_store_max_retries),
        ..CompactionWorkerOptions::default()
    };
    let compactor_options = CompactorOptions {
        poll_interval: POLL,
        commit_compacted_interval: POLL,
        max_concurrent_compactions: 1,
        worker: Some(worker),
        object_store_max_retries: Some(options.object_store_max_retries),
        ..CompactorOptions::default()
    };
    let mut builder = CompactorBuilder::new(path.clone(), store.clone())
        .with_options(compactor_options)
        .with_scheduler_supplier(Arc::new(OneRun));
    if options.legacy_readers {
        builder = builder.with_filter_policies(vec![]);
    }
    let compactor = Arc::new(builder.build());
    let running = tokio::spawn({
        let c = compactor.clone();
        async move { c.run().await }
    });
    let deadline = options.close_timeout.map(|t| Instant::now() + t);
    let outcome = loop {
        if running.is_finished() {
            break Err(failed(url, "the compactor stopped before it finished"));
        }
        match tables(&admin, url).await {
            Ok((0, 1)) => break Ok(()),
            Ok(_) => {}
            Err(e) => break Err(e),
        }
        if deadline.is_some_and(|d| Instant::now() > d) {
            break Err(failed(url, "timed out (close_timeout)"));
        }
        tokio::time::sleep(POLL).await;
    };
    let stopped = compactor.stop().await;
    let ran = running.await;
    outcome?;
    if let Err(e) = stopped {
        return Err(failed(url, e));
    }
    if let Ok(Err(e)) = ran {
        return Err(failed(url, e));
    }
    delete_replaced(&admin, store.as_ref(), &path, url).await
}

/// Delete the SSTs under `compacted/` that the final manifest no longer names (the L0 SSTs
/// the compaction replaced; the shard is new and nothing else reads it yet).
async fn delete_replaced(
    admin: &Admin,
    store: &dyn ObjectStore,
    path: &Path,
    url: &str,
) -> Result<()> {
    let m = admin
        .read_manifest(None)
        .await
        .map_err(|e| failed(url, e))?
        .ok_or_else(|| failed(url, "the shard has no manifest"))?;
    let live: HashSet<String> = m
        .compacted()
        .iter()
        .flat_map(|r| r.sst_views())
        .chain(m.l0().iter())
        .map(|v| v.sst.id.value().to_string())
        .collect();
    let listing = store.list(Some(&path.clone().join("compacted")));
    let dead = listing.filter_map(move |meta| {
        let keep = meta.as_ref().is_ok_and(|m| {
            let name = m.location.filename().unwrap_or_default();
            live.contains(name.strip_suffix(".sst").unwrap_or(name))
        });
        futures::future::ready((!keep).then(|| meta.map(|m| m.location)))
    });
    shardyfusion_storage::delete_objects(store, dead.boxed())
        .await
        .map(|_| ())
        .map_err(|e| failed(url, e))
}
