//! Per-shard batch buffers: rows are encoded straight into the buffer of their shard, with
//! global item and byte totals for the caps that flush the largest buffer first.

use shardyfusion_core::{KeyEncoding, KeyRef, Result, WriteOptions};

use crate::shard::Batch;

/// Per-shard row buffers with global totals.
pub(crate) struct Buffers {
    batch_size: usize,
    pub(crate) bufs: Vec<Batch>,
    /// Bytes of each shard's previous batch: the next one reserves that much up front.
    last_bytes: Vec<usize>,
    total_items: usize,
    total_bytes: usize,
}

impl Buffers {
    pub(crate) fn new(n: usize, batch_size: usize) -> Self {
        Buffers {
            batch_size,
            bufs: (0..n).map(|_| Batch::default()).collect(),
            last_bytes: vec![0; n],
            total_items: 0,
            total_bytes: 0,
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
        let buf = &mut self.bufs[i];
        if buf.row_capacity() == 0 {
            // One allocation per batch instead of repeated doubling.
            *buf = Batch::with_capacity(self.batch_size.min(65_536), self.last_bytes[i]);
        }
        let before = buf.bytes();
        buf.push_encoded(|out| encoding.encode_into(key, out), value)?;
        self.total_items += 1;
        self.total_bytes += buf.bytes() - before;
        Ok(())
    }

    pub(crate) fn take(&mut self, i: usize) -> Batch {
        self.total_items -= self.bufs[i].len();
        self.total_bytes -= self.bufs[i].bytes();
        if !self.bufs[i].is_empty() {
            self.last_bytes[i] = self.bufs[i].bytes();
        }
        std::mem::take(&mut self.bufs[i])
    }

    /// The shard to flush when a global cap is exceeded: the largest buffer (bytes, then items).
    pub(crate) fn over_cap(&self, options: &WriteOptions) -> Option<usize> {
        let over = options
            .max_total_batched_items
            .is_some_and(|c| self.total_items > c)
            || options
                .max_total_batched_bytes
                .is_some_and(|c| self.total_bytes > c);
        if !over {
            return None; // the common case: no scan of every shard's buffer per row
        }
        let largest =
            (0..self.bufs.len()).max_by_key(|&i| (self.bufs[i].bytes(), self.bufs[i].len()))?;
        (!self.bufs[largest].is_empty()).then_some(largest)
    }
}
