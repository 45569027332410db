//! One shard: its attempts, batches, rate limits, spool (for replaying retries) and result.

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use shardyfusion_core::{
    DbPathTemplate, DuplicateKeys, Error, ErrorKind, Key, KeyRef, MetricEvent, MetricValue,
    MetricsCollector, Result, RetryConfig, attempt_claim_url, attempt_claims_dir,
    shard_attempt_url,
};

use shardyfusion_storage::StorageResolver;
use shardyfusion_storage::object_store::{PutMode, PutOptions};

use crate::adapter::{AdapterFactory, ShardAdapter};
use crate::ratelimit::{LimiterType, TokenBucket};

pub(crate) use crate::batch::KvBatch as Batch;

/// Everything a shard needs that is shared by the whole write.
#[derive(Clone)]
pub(crate) struct ShardCtx {
    pub(crate) factory: Arc<dyn AdapterFactory>,
    /// Reaches the attempt claims.
    pub(crate) resolver: StorageResolver,
    pub(crate) s3_prefix: String,
    pub(crate) shard_prefix: String,
    pub(crate) run_id: String,
    pub(crate) template: DbPathTemplate,
    pub(crate) local_root: PathBuf,
    pub(crate) batch_size: usize,
    /// Shards of the write (all of them are open at once).
    pub(crate) num_dbs: u32,
    pub(crate) retry: Option<RetryConfig>,
    pub(crate) max_writes_per_second: Option<f64>,
    pub(crate) max_write_bytes_per_second: Option<f64>,
    pub(crate) metrics: Option<Arc<dyn MetricsCollector>>,
    pub(crate) started: Instant,
    /// Set once the write has failed: shards stop retrying.
    pub(crate) given_up: Arc<AtomicBool>,
    /// What a repeated key does.
    pub(crate) on_duplicate: DuplicateKeys,
}

impl ShardCtx {
    pub(crate) fn elapsed_ms(&self) -> i64 {
        i64::try_from(self.started.elapsed().as_millis()).unwrap_or(i64::MAX)
    }

    pub(crate) fn emit(&self, event: MetricEvent, fields: &[(&'static str, MetricValue<'_>)]) {
        if let Some(m) = &self.metrics {
            m.emit(event, fields);
        }
    }

    fn url(&self, db_id: u32, attempt: u32) -> String {
        shard_attempt_url(
            &self.s3_prefix,
            &self.shard_prefix,
            &self.run_id,
            &self.template,
            db_id,
            attempt,
        )
    }

    fn local_dir(&self, db_id: u32, attempt: u32) -> PathBuf {
        self.local_root
            .join(format!("run_id={}", self.run_id))
            .join(format!("db={db_id:05}"))
            .join(format!("attempt={attempt:02}"))
    }

    /// Claim attempt `attempt` of shard `db_id` for this process: a create-only object under
    /// the run's claims, so that two runs of one engine task (a retry, a speculative
    /// duplicate) never open the same attempt URL. `false`: someone else holds it.
    async fn claim(&self, db_id: u32, attempt: u32) -> Result<bool> {
        let url = attempt_claim_url(&self.s3_prefix, &self.run_id, db_id, attempt);
        let loc = self.resolver.resolve(&url)?;
        let opts = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match loc.store.put_opts(&loc.path, Vec::new().into(), opts).await {
            Ok(_) => Ok(true),
            Err(shardyfusion_storage::object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(Error::new(
                ErrorKind::ShardWrite,
                format!("claiming attempt {attempt} of shard {db_id} at {url}: {e}"),
            )
            .with_source(e)),
        }
    }

    pub(crate) fn spool_path(&self, db_id: u32) -> PathBuf {
        self.local_root
            .join(format!("run_id={}", self.run_id))
            .join("_spool")
            .join(format!("db={db_id:05}.bin"))
    }
}

/// The outcome of one shard.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardResult {
    /// Shard id.
    pub db_id: u32,
    /// Winning attempt URL (`None` = empty shard, not written).
    pub db_url: Option<String>,
    /// Winning attempt number.
    pub attempt: u32,
    /// Rows written.
    pub row_count: u64,
    /// Smallest logical key.
    pub min_key: Option<Key>,
    /// Largest logical key.
    pub max_key: Option<Key>,
    /// Opaque stamp taken after sealing.
    pub checkpoint_id: Option<String>,
    /// Materialized size (SlateDB: 0).
    pub db_bytes: u64,
    /// Wall time of the winning attempt.
    pub duration_ms: i64,
    /// Rows whose key repeated an earlier row's key in the same batch (the later row won).
    pub duplicate_keys: u64,
    /// URLs of every attempt made (winner included).
    pub attempt_urls: Vec<String>,
    /// The version of the writer that wrote it (a commit refuses results of another version).
    pub writer_version: String,
}

/// Delete a finished run's attempt claims (best effort).
pub(crate) async fn release_claims(resolver: &StorageResolver, s3_prefix: &str, run_id: &str) {
    let Ok(prefix) = resolver.resolve(s3_prefix) else {
        return;
    };
    let dir = prefix.child(&[&attempt_claims_dir(run_id)]);
    if let Err(e) = shardyfusion_storage::delete_prefix(prefix.store.as_ref(), &dir).await {
        tracing::warn!(run_id, error = %e, "deleting the run's attempt claims failed");
    }
}

/// Row count and min/max logical key of a shard.
#[derive(Debug, Default, Clone)]
pub(crate) struct ShardStats {
    pub(crate) rows: u64,
    pub(crate) min: Option<Key>,
    pub(crate) max: Option<Key>,
}

impl ShardStats {
    /// Count a row and keep its key if it is a new minimum or maximum (allocating only then).
    pub(crate) fn observe(&mut self, k: KeyRef<'_>) {
        self.rows += 1;
        if self
            .min
            .as_ref()
            .is_none_or(|m| k.logical_cmp(m.as_key_ref()).is_lt())
        {
            self.min = Some(k.to_key());
        }
        if self
            .max
            .as_ref()
            .is_none_or(|m| k.logical_cmp(m.as_key_ref()).is_gt())
        {
            self.max = Some(k.to_key());
        }
    }
}

/// Appends `<u64 LE key_len><u64 LE value_len><key><value>` records.
pub(crate) struct SpoolWriter {
    path: PathBuf,
    out: BufWriter<std::fs::File>,
}

fn spool_err(path: &std::path::Path, e: std::io::Error) -> Error {
    Error::new(
        ErrorKind::ShardWrite,
        format!("local spool {}: {e}", path.display()),
    )
    .with_source(e)
}

impl SpoolWriter {
    pub(crate) fn create(path: PathBuf) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| spool_err(dir, e))?;
        }
        let f = std::fs::File::create(&path).map_err(|e| spool_err(&path, e))?;
        Ok(SpoolWriter {
            out: BufWriter::with_capacity(1 << 20, f),
            path,
        })
    }

    pub(crate) fn append(&mut self, batch: &Batch) -> Result<()> {
        for (k, v) in batch.iter() {
            let r = self
                .out
                .write_all(&(k.len() as u64).to_le_bytes())
                .and_then(|()| self.out.write_all(&(v.len() as u64).to_le_bytes()))
                .and_then(|()| self.out.write_all(k))
                .and_then(|()| self.out.write_all(v));
            r.map_err(|e| spool_err(&self.path, e))?;
        }
        Ok(())
    }

    pub(crate) fn finish(mut self) -> Result<()> {
        self.out.flush().map_err(|e| spool_err(&self.path, e))
    }
}

/// Reads a spool back in batches.
struct SpoolReader {
    path: PathBuf,
    input: BufReader<std::fs::File>,
}

impl SpoolReader {
    fn open(path: PathBuf) -> Result<Self> {
        let f = std::fs::File::open(&path).map_err(|e| spool_err(&path, e))?;
        Ok(SpoolReader {
            input: BufReader::with_capacity(1 << 20, f),
            path,
        })
    }

    fn next_batch(&mut self, max: usize) -> Result<Batch> {
        let mut batch = Batch::with_capacity(max.min(65_536), 0);
        let mut lens = [0u8; 16];
        let (mut k, mut v) = (Vec::new(), Vec::new());
        while batch.len() < max {
            match self.input.read_exact(&mut lens) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(spool_err(&self.path, e)),
            }
            let (kl, vl) = lens.split_at(8);
            let kl = u64::from_le_bytes(kl.try_into().unwrap_or_default()) as usize;
            let vl = u64::from_le_bytes(vl.try_into().unwrap_or_default()) as usize;
            k.resize(kl, 0);
            v.resize(vl, 0);
            self.input
                .read_exact(&mut k)
                .and_then(|()| self.input.read_exact(&mut v))
                .map_err(|e| spool_err(&self.path, e))?;
            batch.push(&k, &v);
        }
        Ok(batch)
    }
}

/// One shard being written: the current attempt's adapter plus what is needed to retry.
///
/// Dropped with a database still open (the write future was cancelled), it closes that
/// database on the current runtime.
pub(crate) struct ShardSink {
    ctx: ShardCtx,
    db_id: u32,
    attempt: u32,
    /// Attempts made so far (attempt numbers may skip numbers other tasks claimed).
    tries: u32,
    adapter: Option<Box<dyn ShardAdapter>>,
    attempt_started: Option<Instant>,
    ops: Option<TokenBucket>,
    bytes: Option<TokenBucket>,
    /// A retryable failure of the streaming attempt; the shard is replayed from the spool.
    failed: Option<Error>,
    attempt_urls: Vec<String>,
    pub(crate) stats: ShardStats,
    /// Repeated keys found by the current attempt.
    duplicates: u64,
}

impl ShardSink {
    pub(crate) fn new(ctx: ShardCtx, db_id: u32) -> Self {
        ShardSink {
            ctx,
            db_id,
            attempt: 0,
            tries: 0,
            adapter: None,
            attempt_started: None,
            ops: None,
            bytes: None,
            failed: None,
            attempt_urls: Vec::new(),
            stats: ShardStats::default(),
            duplicates: 0,
        }
    }

    fn fresh_limiters(&mut self) {
        let m = self.ctx.metrics.clone();
        self.ops = self
            .ctx
            .max_writes_per_second
            .map(|r| TokenBucket::new(r, LimiterType::Ops, m.clone()));
        self.bytes = self
            .ctx
            .max_write_bytes_per_second
            .map(|r| TokenBucket::new(r, LimiterType::Bytes, m));
    }

    async fn open_attempt(&mut self) -> Result<()> {
        while !self.ctx.claim(self.db_id, self.attempt).await? {
            self.attempt += 1;
        }
        let url = self.ctx.url(self.db_id, self.attempt);
        let dir = self.ctx.local_dir(self.db_id, self.attempt);
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| spool_err(&dir, e))?;
        self.ctx.emit(
            MetricEvent::WriteShardStarted,
            &[
                ("elapsed_ms", MetricValue::Int(self.ctx.elapsed_ms())),
                ("db_id", MetricValue::Int(i64::from(self.db_id))),
            ],
        );
        self.attempt_started = Some(Instant::now());
        self.attempt_urls.push(url.clone());
        self.duplicates = 0;
        self.fresh_limiters();
        self.adapter = Some(
            self.ctx
                .factory
                .open(&url, &dir, self.ctx.num_dbs)
                .await
                .map_err(|e| wrap(e, self.db_id, &url))?,
        );
        Ok(())
    }

    async fn write_now(&mut self, mut batch: Batch) -> Result<()> {
        if self.adapter.is_none() {
            self.open_attempt().await?;
        }
        // Sorted here (the adapter's own sort then finds it sorted), so repeats are adjacent.
        let (repeats, first) = batch.sort_counting_duplicates();
        if repeats > 0 {
            if self.ctx.on_duplicate == DuplicateKeys::Error {
                let key = first.unwrap_or_default();
                return Err(Error::config(format!(
                    "the input repeats key {} (encoded bytes {}) in shard {}; duplicates are \
                     refused (on_duplicate = error): deduplicate the input, or keep the last \
                     row of each key",
                    String::from_utf8_lossy(&key),
                    hex(&key),
                    self.db_id
                )));
            }
            self.duplicates += repeats;
        }
        if let Some(b) = &self.ops {
            b.acquire(batch.len() as f64).await;
        }
        if let Some(b) = &self.bytes {
            b.acquire(batch.bytes() as f64).await;
        }
        let start = Instant::now();
        let rows = batch.len();
        let adapter = self
            .adapter
            .as_mut()
            .ok_or_else(|| Error::new(ErrorKind::ShardWrite, "adapter missing"))?;
        adapter.write_batch(batch).await?;
        self.ctx.emit(
            MetricEvent::WriteBatchWritten,
            &[
                ("elapsed_ms", MetricValue::Int(self.ctx.elapsed_ms())),
                ("batch_size", MetricValue::Int(rows as i64)),
                (
                    "batch_ms",
                    MetricValue::Int(start.elapsed().as_millis() as i64),
                ),
                ("db_id", MetricValue::Int(i64::from(self.db_id))),
            ],
        );
        Ok(())
    }

    /// Write one batch of the streaming attempt. A retryable failure is remembered (the shard
    /// is replayed from its spool at the end) when retries are configured; any other failure is
    /// returned and fails the write.
    pub(crate) async fn write(&mut self, batch: Batch) -> Result<()> {
        if self.failed.is_some() {
            return Ok(());
        }
        if let Err(e) = self.write_now(batch).await {
            self.fail_streaming(e).await?;
        }
        Ok(())
    }

    /// Close the current attempt's database without its final flush (it will never be
    /// published).
    async fn drop_attempt(&mut self) {
        if let Some(mut a) = self.adapter.take()
            && let Err(e) = a.abandon().await
        {
            tracing::warn!(db_id = self.db_id, error = %e, "closing a failed shard attempt failed");
        }
    }

    async fn fail_streaming(&mut self, e: Error) -> Result<()> {
        self.drop_attempt().await;
        if self.ctx.retry.as_ref().is_some_and(|r| r.max_retries > 0) && e.is_retryable() {
            tracing::warn!(db_id = self.db_id, attempt = self.attempt, error = %e, "shard attempt failed; will retry from the spool");
            self.failed = Some(e);
            Ok(())
        } else {
            Err(e)
        }
    }

    async fn seal_attempt(&mut self) -> Result<ShardResult> {
        let url = self.attempt_urls.last().cloned().unwrap_or_default();
        let adapter = self
            .adapter
            .as_mut()
            .ok_or_else(|| Error::new(ErrorKind::ShardWrite, "adapter missing"))?;
        adapter.flush().await?;
        adapter.seal().await?;
        let checkpoint_id = uuid::Uuid::new_v4().simple().to_string();
        let db_bytes = adapter.db_bytes();
        adapter.close().await?;
        self.adapter = None;
        let duration_ms = self
            .attempt_started
            .map_or(0, |s| s.elapsed().as_millis() as i64);
        self.ctx.emit(
            MetricEvent::WriteShardCompleted,
            &[
                ("elapsed_ms", MetricValue::Int(self.ctx.elapsed_ms())),
                ("duration_ms", MetricValue::Int(duration_ms)),
                ("row_count", MetricValue::Int(self.stats.rows as i64)),
                ("db_id", MetricValue::Int(i64::from(self.db_id))),
            ],
        );
        Ok(ShardResult {
            db_id: self.db_id,
            db_url: Some(url),
            attempt: self.attempt,
            row_count: self.stats.rows,
            min_key: self.stats.min.clone(),
            max_key: self.stats.max.clone(),
            checkpoint_id: Some(checkpoint_id),
            db_bytes,
            duration_ms,
            duplicate_keys: self.duplicates,
            attempt_urls: self.attempt_urls.clone(),
            writer_version: crate::engine::WRITER_VERSION.to_owned(),
        })
    }

    /// Finish the shard: seal the streaming attempt, or replay failed attempts from the spool
    /// with backoff until one succeeds or retries run out.
    pub(crate) async fn finish(mut self) -> Result<ShardResult> {
        if self.stats.rows == 0 {
            return Ok(ShardResult {
                db_id: self.db_id,
                db_url: None,
                attempt: 0,
                row_count: 0,
                min_key: None,
                max_key: None,
                checkpoint_id: None,
                db_bytes: 0,
                duration_ms: 0,
                duplicate_keys: 0,
                attempt_urls: Vec::new(),
                writer_version: crate::engine::WRITER_VERSION.to_owned(),
            });
        }
        if self.failed.is_none() {
            match self.seal_attempt().await {
                Ok(r) => return Ok(r),
                Err(e) => self.fail_streaming(e).await?,
            }
        }
        let retry = self.ctx.retry.clone().unwrap_or_default();
        loop {
            let failed = self
                .failed
                .take()
                .unwrap_or_else(|| Error::new(ErrorKind::ShardWrite, "attempt failed"));
            // Another shard failed the write: no point in retrying this one.
            if self.ctx.given_up.load(Ordering::Relaxed) {
                return Err(failed);
            }
            if self.tries >= retry.max_retries {
                if self.tries > 0 {
                    self.ctx.emit(
                        MetricEvent::WriteShardRetryExhausted,
                        &[
                            ("elapsed_ms", MetricValue::Int(self.ctx.elapsed_ms())),
                            ("db_id", MetricValue::Int(i64::from(self.db_id))),
                            ("attempts", MetricValue::Int(i64::from(self.tries) + 1)),
                        ],
                    );
                }
                return Err(failed);
            }
            let backoff = retry.backoff(self.tries);
            self.ctx.emit(
                MetricEvent::WriteShardRetried,
                &[
                    ("elapsed_ms", MetricValue::Int(self.ctx.elapsed_ms())),
                    ("db_id", MetricValue::Int(i64::from(self.db_id))),
                    ("attempt", MetricValue::Int(i64::from(self.attempt))),
                    ("backoff_s", MetricValue::Float(backoff.as_secs_f64())),
                ],
            );
            tokio::time::sleep(backoff).await;
            if self.ctx.given_up.load(Ordering::Relaxed) {
                return Err(failed);
            }
            self.attempt += 1;
            self.tries += 1;
            match self.replay().await {
                Ok(r) => return Ok(r),
                Err(e) => {
                    self.drop_attempt().await;
                    if !e.is_retryable() {
                        return Err(e);
                    }
                    tracing::warn!(db_id = self.db_id, attempt = self.attempt, error = %e, "shard attempt failed");
                    self.failed = Some(e);
                }
            }
        }
    }

    async fn replay(&mut self) -> Result<ShardResult> {
        let path = self.ctx.spool_path(self.db_id);
        // Local file reads run on a blocking thread, never on an async worker.
        let mut spool = crate::dispatch::blocking(move || SpoolReader::open(path)).await?;
        self.open_attempt().await?;
        let max = self.ctx.batch_size;
        loop {
            let batch;
            (spool, batch) = crate::dispatch::blocking(move || {
                let batch = spool.next_batch(max)?;
                Ok((spool, batch))
            })
            .await?;
            if batch.is_empty() {
                break;
            }
            self.write_now(batch).await?;
        }
        self.seal_attempt().await
    }

    /// The flag that tells every shard of this write to stop retrying.
    pub(crate) fn given_up(&self) -> Arc<AtomicBool> {
        self.ctx.given_up.clone()
    }

    /// Give the shard up after a failure elsewhere: close its open database without the final
    /// flush (nothing of it will be published).
    pub(crate) async fn abandon(mut self) {
        self.drop_attempt().await;
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Drop for ShardSink {
    fn drop(&mut self) {
        if let Some(mut a) = self.adapter.take()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(async move {
                let _ = a.abandon().await;
            });
        }
    }
}

/// Errors from inside a shard attempt are `ShardWrite` unless they already carry a kind that
/// says more (`DbAdapter` for bad settings or incompatible data).
fn wrap(e: Error, db_id: u32, url: &str) -> Error {
    match e.kind() {
        ErrorKind::ShardWrite | ErrorKind::DbAdapter | ErrorKind::ConfigValidation => e,
        _ => Error::new(
            ErrorKind::ShardWrite,
            format!("shard {db_id} at {url}: {}", e.message()),
        )
        .with_source(e),
    }
}
