//! Per-shard batch buffers: rows are encoded straight into the buffer of their shard; a buffer
//! goes to its shard when it holds `batch_size` rows or its share of the global caps.

use shardyfusion_core::{KeyEncoding, KeyRef, Result, WriteOptions};

use crate::shard::Batch;

/// The smallest per-shard byte share of `max_total_batched_bytes` (many shards, small cap).
const MIN_BYTE_SHARE: usize = 64 << 10;

/// Per-shard row buffers. Every shard of a write fills its buffer at the same time (hash
/// routing spreads rows evenly), so each gets an equal share of the global caps: the total
/// stays under them with an O(1) check per row, whatever the shard count.
pub(crate) struct Buffers {
    pub(crate) bufs: Vec<Batch>,
    /// Bytes of each shard's previous batch: the next one reserves that much up front.
    last_bytes: Vec<usize>,
    /// Rows and bytes at which a shard's buffer goes to its shard.
    row_share: usize,
    byte_share: usize,
}

impl Buffers {
    pub(crate) fn new(n: usize, batch_size: usize, options: &WriteOptions) -> Self {
        let n_shards = n.max(1);
        let row_share = options
            .max_total_batched_items
            .map_or(batch_size, |c| (c / n_shards).clamp(1, batch_size));
        let byte_share = options
            .max_total_batched_bytes
            .map_or(usize::MAX, |c| (c / n_shards).max(MIN_BYTE_SHARE));
        Buffers {
            bufs: (0..n).map(|_| Batch::default()).collect(),
            last_bytes: vec![0; n],
            row_share: row_share.max(1),
            byte_share,
        }
    }

    /// Append a row to shard `i`'s buffer, encoding its key in place.
    pub(crate) fn push(
        &mut self,
        i: usize,
        encoding: KeyEncoding,
        key: KeyRef<'_>,
        value: &[u8],
    ) -> Result<()> {
        if matches!(key, KeyRef::Str("") | KeyRef::Bytes([])) {
            return Err(shardyfusion_core::Error::config(
                "an empty key cannot be stored (SlateDB keys are at least one byte)",
            ));
        }
        let buf = &mut self.bufs[i];
        if buf.row_capacity() == 0 {
            // One allocation per batch instead of repeated doubling.
            *buf = Batch::with_capacity(self.row_share.min(65_536), self.last_bytes[i]);
        }
        buf.push_encoded(|out| encoding.encode_into(key, out), value)
    }

    /// Whether shard `i`'s buffer is due to go to its shard.
    pub(crate) fn full(&self, i: usize) -> bool {
        let b = &self.bufs[i];
        b.len() >= self.row_share || b.bytes() >= self.byte_share
    }

    pub(crate) fn take(&mut self, i: usize) -> Batch {
        if !self.bufs[i].is_empty() {
            self.last_bytes[i] = self.bufs[i].bytes();
        }
        std::mem::take(&mut self.bufs[i])
    }
}
