//! [`KvBatch`]: the encoded key/value pairs of one write batch, stored back to back in one
//! buffer so a batch costs a handful of allocations however many rows it holds, and SlateDB
//! gets every key and value as a zero-copy slice of that buffer.

use bytes::Bytes;

/// One row's place in the buffer, with the key's first 8 bytes (zero padded, big-endian) so
/// sorting compares integers and only falls back to the bytes on a tie.
#[derive(Debug, Clone, Copy)]
struct Entry {
    prefix: u64,
    off: usize,
    key_len: u32,
    value_len: u32,
}

impl Entry {
    fn key<'a>(&self, data: &'a [u8]) -> &'a [u8] {
        &data[self.off..self.off + self.key_len as usize]
    }
    fn value<'a>(&self, data: &'a [u8]) -> &'a [u8] {
        let start = self.off + self.key_len as usize;
        &data[start..start + self.value_len as usize]
    }
}

fn prefix_of(key: &[u8]) -> u64 {
    let mut p = [0u8; 8];
    let n = key.len().min(8);
    p[..n].copy_from_slice(&key[..n]);
    u64::from_be_bytes(p)
}

/// Encoded key/value pairs of one write batch (keys already in the snapshot's key encoding).
///
/// Keys are at most `u32::MAX` bytes and values at most `u32::MAX` bytes (SlateDB's own limits
/// are tighter).
#[derive(Debug, Default, Clone)]
pub struct KvBatch {
    data: Vec<u8>,
    entries: Vec<Entry>,
}

impl KvBatch {
    /// An empty batch with room for `rows` rows and `bytes` bytes of keys and values.
    pub fn with_capacity(rows: usize, bytes: usize) -> Self {
        KvBatch {
            data: Vec::with_capacity(bytes),
            entries: Vec::with_capacity(rows),
        }
    }

    /// Append one pair. `key` must not be empty: SlateDB refuses empty keys (the writer checks every row's key
    /// before it reaches a batch).
    pub fn push(&mut self, key: &[u8], value: &[u8]) {
        let appended: Result<(), std::convert::Infallible> = self.push_encoded(
            |out| {
                out.extend_from_slice(key);
                Ok(())
            },
            value,
        );
        let Ok(()) = appended;
    }

    /// Append one pair whose key `encode` writes into the buffer (so encoding a key allocates
    /// nothing). If `encode` fails nothing is appended.
    pub(crate) fn push_encoded<E>(
        &mut self,
        encode: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
        value: &[u8],
    ) -> Result<(), E> {
        let off = self.data.len();
        if let Err(e) = encode(&mut self.data) {
            self.data.truncate(off);
            return Err(e);
        }
        let key_len = self.data.len() - off;
        let prefix = prefix_of(&self.data[off..]);
        self.data.extend_from_slice(value);
        self.entries.push(Entry {
            prefix,
            off,
            key_len: key_len as u32,
            value_len: value.len() as u32,
        });
        Ok(())
    }

    /// Rows in the batch.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// No rows.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes of keys and values.
    pub fn bytes(&self) -> usize {
        self.data.len()
    }

    /// Capacity of the row index (0 until the first push of a fresh batch).
    pub(crate) fn row_capacity(&self) -> usize {
        self.entries.capacity()
    }

    /// The pairs in their current order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&[u8], &[u8])> + '_ {
        self.entries
            .iter()
            .map(|e| (e.key(&self.data), e.value(&self.data)))
    }

    fn cmp_entries(data: &[u8], a: &Entry, b: &Entry) -> std::cmp::Ordering {
        a.prefix
            .cmp(&b.prefix)
            .then_with(|| a.key(data).cmp(b.key(data)))
    }

    /// Whether the keys are in ascending byte order.
    pub fn is_sorted(&self) -> bool {
        self.entries
            .is_sorted_by(|a, b| Self::cmp_entries(&self.data, a, b).is_le())
    }

    /// Order the pairs by key bytes (only the row index moves; stable, so of equal keys the
    /// one pushed last stays last and wins).
    pub fn sort(&mut self) {
        if !self.is_sorted() {
            let data = &self.data;
            self.entries.sort_by(|a, b| Self::cmp_entries(data, a, b));
        }
    }

    /// Sort (see [`sort`](Self::sort)) and count the keys that repeat an earlier key of the
    /// batch; returns the count and the first repeated key.
    pub(crate) fn sort_counting_duplicates(&mut self) -> (u64, Option<Vec<u8>>) {
        self.sort();
        let mut count = 0u64;
        let mut first = None;
        for pair in self.entries.windows(2) {
            if pair[0].prefix == pair[1].prefix
                && pair[0].key(&self.data) == pair[1].key(&self.data)
            {
                count += 1;
                if first.is_none() {
                    first = Some(pair[1].key(&self.data).to_vec());
                }
            }
        }
        (count, first)
    }

    /// Split into batches of at most `rows` rows, keeping the order.
    pub fn chunks(self, rows: usize) -> Vec<KvBatch> {
        if self.entries.len() <= rows {
            return vec![self];
        }
        self.entries
            .chunks(rows.max(1))
            .map(|chunk| {
                let bytes = chunk
                    .iter()
                    .map(|e| e.key_len as usize + e.value_len as usize)
                    .sum();
                let mut b = KvBatch::with_capacity(chunk.len(), bytes);
                for e in chunk {
                    b.push(e.key(&self.data), e.value(&self.data));
                }
                b
            })
            .collect()
    }

    /// The pairs as shared slices, in the batch's order: values slice the batch's buffer (no
    /// copy), keys small buffers of 64 keys each.
    pub fn into_shared(self) -> impl ExactSizeIterator<Item = (Bytes, Bytes)> {
        // Keys get buffers of their own (one copy of a few bytes per row): SlateDB keeps the
        // first and last key of every SST it writes until the database closes, and a key sliced
        // from the batch buffer would keep every value of the batch in memory with it. Small
        // chunks, not one buffer of all keys: a build writes thousands of SSTs, and each would
        // keep a whole batch's keys otherwise.
        let data = Bytes::from(self.data);
        let mut keys = Bytes::new();
        let mut at = 0usize;
        let entries = self.entries;
        let n = entries.len();
        (0..n).map(move |i| {
            if i % KEYS_PER_CHUNK == 0 {
                let chunk = &entries[i..(i + KEYS_PER_CHUNK).min(n)];
                let mut buf = Vec::with_capacity(chunk.iter().map(|e| e.key_len as usize).sum());
                for e in chunk {
                    buf.extend_from_slice(e.key(&data));
                }
                keys = Bytes::from(buf);
                at = 0;
            }
            let e = &entries[i];
            let k = at..at + e.key_len as usize;
            at = k.end;
            let start = e.off + e.key_len as usize;
            (
                keys.slice(k),
                data.slice(start..start + e.value_len as usize),
            )
        })
    }
}

/// Keys per key buffer of [`KvBatch::into_shared`].
const KEYS_PER_CHUNK: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_keys_are_counted_once_sorted() {
        let mut b = KvBatch::default();
        for k in [&b"b"[..], b"a", b"b", b"c", b"b", b"a"] {
            b.push(k, b"v");
        }
        assert_eq!(b.sort_counting_duplicates(), (3, Some(b"a".to_vec())));
        let mut unique = KvBatch::default();
        unique.push(b"x", b"1");
        unique.push(b"y", b"2");
        assert_eq!(unique.sort_counting_duplicates(), (0, None));
    }

    #[test]
    fn sorts_by_bytes_with_prefix_ties() {
        let mut b = KvBatch::default();
        let keys: [&[u8]; 7] = [
            b"abcdefgh2",
            b"ab",
            b"ab\0",
            b"abcdefgh1",
            b"",
            b"\xff",
            b"abcdefgh",
        ];
        for (i, k) in keys.iter().enumerate() {
            b.push(k, &[i as u8]);
        }
        b.sort();
        let got: Vec<&[u8]> = b.iter().map(|(k, _)| k).collect();
        let mut want: Vec<&[u8]> = keys.to_vec();
        want.sort();
        assert_eq!(got, want);
        assert!(b.is_sorted());
        // Values travel with their keys.
        for (k, v) in b.iter() {
            let i = keys.iter().position(|x| *x == k).unwrap_or(usize::MAX);
            assert_eq!(v, &[i as u8]);
        }
    }

    #[test]
    fn equal_keys_keep_push_order() {
        let mut b = KvBatch::default();
        b.push(b"k", b"first");
        b.push(b"a", b"x");
        b.push(b"k", b"second");
        b.sort();
        let got: Vec<(&[u8], &[u8])> = b.iter().collect();
        assert_eq!(
            got,
            vec![
                (&b"a"[..], &b"x"[..]),
                (&b"k"[..], &b"first"[..]),
                (&b"k"[..], &b"second"[..])
            ]
        );
    }

    #[test]
    fn failed_encode_appends_nothing() {
        let mut b = KvBatch::default();
        b.push(b"a", b"1");
        let r: Result<(), &str> = b.push_encoded(
            |out| {
                out.extend_from_slice(b"partial");
                Err("bad key")
            },
            b"v",
        );
        assert_eq!(r, Err("bad key"));
        assert_eq!(b.len(), 1);
        assert_eq!(b.bytes(), 2);
    }

    #[test]
    fn chunks_and_shared_slices_round_trip() {
        let mut b = KvBatch::default();
        for i in 0..10u8 {
            b.push(&[i], &[i, i]);
        }
        let parts = b.clone().chunks(4);
        assert_eq!(
            parts.iter().map(KvBatch::len).collect::<Vec<_>>(),
            [4, 4, 2]
        );
        let all: Vec<(Bytes, Bytes)> = parts.into_iter().flat_map(KvBatch::into_shared).collect();
        let want: Vec<(Bytes, Bytes)> = b.into_shared().collect();
        assert_eq!(all, want);
        assert_eq!(all[3].0.as_ref(), &[3u8]);
        assert_eq!(all[3].1.as_ref(), &[3u8, 3]);
    }
}
