//! Where full batches go: the spool (when retries may replay them), then the shard's sink,
//! inline (sequential mode) or through one worker task per shard with bounded queues and bytes
//! in flight (parallel mode).

use std::collections::HashMap;
use std::sync::Arc;

use shardyfusion_core::{Error, ErrorKind, Result, WriteOptions};

use crate::shard::{Batch, ShardCtx, ShardResult, ShardSink, ShardStats, SpoolWriter};

/// Where full batches go: the spool (when retries may replay them), then the shard's sink
/// (sequential mode) or worker (parallel mode).
pub(crate) struct Dispatcher<'a> {
    pub(crate) ctx: &'a ShardCtx,
    parallel: bool,
    spools: Vec<Option<SpoolWriter>>,
    sinks: Vec<Option<ShardSink>>,
    workers: Workers,
}

impl<'a> Dispatcher<'a> {
    /// A dispatcher for the `num_dbs` shards of `ctx`.
    pub(crate) fn new(ctx: &'a ShardCtx, options: &WriteOptions) -> Self {
        let n = ctx.num_dbs as usize;
        Dispatcher {
            ctx,
            parallel: options.parallel,
            spools: (0..n).map(|_| None).collect(),
            sinks: (0..n)
                .map(|i| Some(ShardSink::new(ctx.clone(), i as u32)))
                .collect(),
            workers: Workers::new(options),
        }
    }

    /// Close the spools (every batch has been dispatched).
    pub(crate) async fn finish_spools(&mut self) -> Result<()> {
        for s in self.spools.iter_mut() {
            if let Some(s) = s.take() {
                blocking(move || s.finish()).await?;
            }
        }
        Ok(())
    }

    /// Seal every shard (workers drain first) and return their results.
    pub(crate) async fn finish(self, stats: Vec<ShardStats>) -> Result<Vec<ShardResult>> {
        self.workers.finish(self.sinks, stats).await
    }

    /// After a failure: close every shard database this write opened (without the final
    /// flush), in sequential sinks and in the parallel workers alike.
    pub(crate) async fn abandon(self) {
        let mut sinks: Vec<ShardSink> = self.sinks.into_iter().flatten().collect();
        sinks.extend(self.workers.stop().await);
        for sink in sinks {
            sink.abandon().await;
        }
    }

    pub(crate) async fn dispatch(&mut self, i: usize, batch: Batch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let batch = if self.ctx.retry.as_ref().is_some_and(|r| r.max_retries > 0) {
            // Local file I/O runs on a blocking thread, never on an async worker.
            let spool = self.spools[i].take();
            let path = self.ctx.spool_path(i as u32);
            let (spool, batch) = blocking(move || {
                let mut spool = match spool {
                    Some(s) => s,
                    None => SpoolWriter::create(path)?,
                };
                spool.append(&batch)?;
                Ok((spool, batch))
            })
            .await?;
            self.spools[i] = Some(spool);
            batch
        } else {
            batch
        };
        if self.parallel {
            self.workers.send(i, batch, &mut self.sinks).await
        } else if let Some(sink) = self.sinks[i].as_mut() {
            sink.write(batch).await
        } else {
            Ok(())
        }
    }
}

/// Run blocking work (local files) on tokio's blocking pool.
pub(crate) async fn blocking<R: Send + 'static>(
    f: impl FnOnce() -> Result<R> + Send + 'static,
) -> Result<R> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        Error::new(
            ErrorKind::ShardWrite,
            format!("a blocking file task failed: {e}"),
        )
    })?
}

/// Parallel mode: one task per non-empty shard fed by a bounded channel; bytes in flight are
/// bounded globally and per worker.
struct Workers {
    queue: usize,
    global: Arc<tokio::sync::Semaphore>,
    per_worker_cap: usize,
    global_cap: usize,
    senders: HashMap<usize, WorkerInput>,
    handles: HashMap<usize, tokio::task::JoinHandle<Result<ShardSink>>>,
}

/// A worker's channel and its bytes-in-flight semaphore.
type WorkerInput = (
    tokio::sync::mpsc::Sender<(Batch, Permits)>,
    Arc<tokio::sync::Semaphore>,
);

struct Permits {
    _global: tokio::sync::OwnedSemaphorePermit,
    _worker: tokio::sync::OwnedSemaphorePermit,
}

fn permits_for(bytes: usize, cap: usize) -> u32 {
    u32::try_from(bytes.clamp(1, cap)).unwrap_or(u32::MAX)
}

impl Workers {
    fn new(options: &WriteOptions) -> Self {
        let global_cap = options.max_parallel_bytes_in_flight.min(u32::MAX as usize);
        Workers {
            queue: options.max_queue_size,
            global: Arc::new(tokio::sync::Semaphore::new(global_cap)),
            per_worker_cap: options.max_parallel_bytes_per_worker.min(global_cap),
            global_cap,
            senders: HashMap::new(),
            handles: HashMap::new(),
        }
    }

    async fn send(
        &mut self,
        i: usize,
        batch: Batch,
        sinks: &mut [Option<ShardSink>],
    ) -> Result<()> {
        if !self.senders.contains_key(&i) {
            let (tx, mut rx) = tokio::sync::mpsc::channel::<(Batch, Permits)>(self.queue);
            let mut sink = sinks[i]
                .take()
                .ok_or_else(|| Error::new(ErrorKind::ShardWrite, "shard worker started twice"))?;
            let handle = tokio::spawn(async move {
                while let Some((batch, _permits)) = rx.recv().await {
                    sink.write(batch).await?;
                }
                Ok(sink)
            });
            self.senders.insert(
                i,
                (
                    tx,
                    Arc::new(tokio::sync::Semaphore::new(self.per_worker_cap)),
                ),
            );
            self.handles.insert(i, handle);
        }
        let bytes = batch.bytes();
        let (tx, worker_sem) = self
            .senders
            .get(&i)
            .ok_or_else(|| Error::new(ErrorKind::ShardWrite, "worker missing"))?;
        let closed = || Error::new(ErrorKind::ShardWrite, "shard worker stopped");
        let g = self
            .global
            .clone()
            .acquire_many_owned(permits_for(bytes, self.global_cap))
            .await
            .map_err(|_| closed())?;
        let w = worker_sem
            .clone()
            .acquire_many_owned(permits_for(bytes, self.per_worker_cap))
            .await
            .map_err(|_| closed())?;
        if tx
            .send((
                batch,
                Permits {
                    _global: g,
                    _worker: w,
                },
            ))
            .await
            .is_err()
        {
            // The worker ended early: its error explains why.
            let handle = self.handles.remove(&i).ok_or_else(closed)?;
            return Err(join(handle).await.err().unwrap_or_else(closed));
        }
        Ok(())
    }

    async fn finish(
        mut self,
        mut sinks: Vec<Option<ShardSink>>,
        stats: Vec<ShardStats>,
    ) -> Result<Vec<ShardResult>> {
        for (i, sink) in sinks.iter_mut().enumerate() {
            if let Some(s) = sink.as_mut() {
                s.stats = stats[i].clone();
            }
        }
        self.senders.clear(); // close the channels: workers drain and return their sinks
        let mut failure = None;
        for (i, handle) in std::mem::take(&mut self.handles) {
            match join(handle).await {
                Ok(mut sink) => {
                    sink.stats = stats[i].clone();
                    sinks[i] = Some(sink);
                }
                Err(e) => failure = failure.or(Some(e)),
            }
        }
        if let Some(e) = failure {
            for sink in sinks.into_iter().flatten() {
                sink.abandon().await;
            }
            return Err(e);
        }
        // Seal every shard (concurrently), retrying from spools where needed. After a failure
        // the others stop retrying but still close, so every database is closed before
        // returning.
        let mut tasks = tokio::task::JoinSet::new();
        let mut given_up = None;
        for sink in sinks.into_iter().flatten() {
            given_up.get_or_insert_with(|| sink.given_up());
            tasks.spawn(sink.finish());
        }
        let given_up = given_up.unwrap_or_default();
        let mut results = Vec::new();
        let mut failure = None;
        while let Some(r) = tasks.join_next().await {
            let e = match r {
                Ok(Ok(res)) => {
                    results.push(res);
                    continue;
                }
                Ok(Err(e)) => e,
                Err(e) => Error::new(ErrorKind::ShardWrite, format!("shard task failed: {e}")),
            };
            // The write has failed: the other shards stop retrying (and close their attempts).
            given_up.store(true, std::sync::atomic::Ordering::Relaxed);
            failure = failure.or(Some(e));
        }
        if let Some(e) = failure {
            return Err(e);
        }
        results.sort_by_key(|r| r.db_id);
        Ok(results)
    }

    /// Stop every worker (after a failure elsewhere) and return the sinks they held.
    async fn stop(mut self) -> Vec<ShardSink> {
        self.senders.clear();
        let mut sinks = Vec::new();
        for (_, handle) in std::mem::take(&mut self.handles) {
            if let Ok(sink) = join(handle).await {
                sinks.push(sink);
            }
        }
        sinks
    }

    fn abort_all(&mut self) {
        for h in self.handles.values() {
            h.abort();
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.abort_all();
    }
}

async fn join(handle: tokio::task::JoinHandle<Result<ShardSink>>) -> Result<ShardSink> {
    handle
        .await
        .map_err(|e| Error::new(ErrorKind::ShardWrite, format!("shard worker failed: {e}")))?
}
