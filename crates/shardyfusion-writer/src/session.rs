//! One write in progress, on the shard side: rows (already routed) go into per-shard buffers,
//! full buffers to the dispatcher, and the session ends in shard results or, after a failure,
//! with every opened shard database closed. Inputs (records, Arrow batches) only call `push`.

use shardyfusion_core::{Error, ErrorKind, KeyEncoding, KeyRef, Result, WriteOptions};

use crate::buffers::Buffers;
use crate::dispatch::Dispatcher;
use crate::shard::{ShardCtx, ShardResult, ShardStats};

/// The shard side of one write.
pub(crate) struct Session<'a> {
    buffers: Buffers,
    stats: Vec<ShardStats>,
    out: Dispatcher<'a>,
    encoding: KeyEncoding,
    options: &'a WriteOptions,
    /// Whether this write's keys are integers (fixed by its first row).
    integer_keys: Option<bool>,
    /// The shards an engine partition may write (`None`: all).
    owned: Option<Vec<bool>>,
}

impl<'a> Session<'a> {
    pub(crate) fn new(
        ctx: &'a ShardCtx,
        encoding: KeyEncoding,
        options: &'a WriteOptions,
        owned: Option<&[u32]>,
    ) -> Self {
        let n = ctx.num_dbs as usize;
        let owned = owned.map(|ids| {
            let mut mask = vec![false; n];
            for &i in ids {
                if let Some(m) = mask.get_mut(i as usize) {
                    *m = true;
                }
            }
            mask
        });
        Session {
            buffers: Buffers::new(n, ctx.batch_size, options),
            stats: vec![ShardStats::default(); n],
            out: Dispatcher::new(ctx, options),
            encoding,
            options,
            integer_keys: None,
            owned,
        }
    }

    /// Add one routed row: its key is encoded straight into the buffer of shard `db_id`; a full
    /// buffer (or one over the global caps) goes to its shard.
    pub(crate) async fn push(&mut self, db_id: u32, key: KeyRef<'_>, value: &[u8]) -> Result<()> {
        let i = db_id as usize;
        if i >= self.stats.len() {
            return Err(Error::new(
                ErrorKind::ShardAssignment,
                format!(
                    "routing produced db_id {db_id} outside [0, {})",
                    self.stats.len()
                ),
            ));
        }
        if let Some(owned) = &self.owned
            && !owned[i]
        {
            return Err(Error::new(
                ErrorKind::ShardAssignment,
                format!(
                    "key {key} routes to shard {db_id}, which this partition does not write: \
                     partition the input by shard (route_batch) so each task gets whole shards"
                ),
            ));
        }
        let is_int = matches!(key, KeyRef::Int(_));
        if *self.integer_keys.get_or_insert(is_int) != is_int {
            return Err(Error::config(format!(
                "key {key} mixes integer and string/bytes keys in one write; use one key type"
            )));
        }
        self.buffers.push(i, self.encoding, key, value)?;
        self.stats[i].observe(key);
        if self.options.sort_within_partitions {
            return Ok(()); // whole shards are sorted and written at the end
        }
        if self.buffers.full(i) {
            self.out.dispatch(i, self.buffers.take(i)).await?;
        }
        Ok(())
    }

    /// Write what is still buffered and close the spools.
    async fn drain(&mut self) -> Result<()> {
        let batch_size = self.out.ctx.batch_size;
        for i in 0..self.stats.len() {
            let mut rest = self.buffers.take(i);
            if self.options.sort_within_partitions {
                rest.sort();
            }
            for batch in rest.chunks(batch_size) {
                self.out.dispatch(i, batch).await?;
            }
        }
        self.out.finish_spools().await
    }

    /// Seal every shard and return the results (on failure every database is closed first).
    pub(crate) async fn finish(mut self) -> Result<Vec<ShardResult>> {
        if let Err(e) = self.drain().await {
            self.abandon().await;
            return Err(e);
        }
        self.out.finish(self.stats).await
    }

    /// Give the write up: close every shard database it opened (without the final flush).
    pub(crate) async fn abandon(self) {
        self.out.abandon().await;
    }
}
