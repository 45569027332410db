//! Logical keys, their canonical bytes, and xxh3_64 hash routing.
//!
//! A logical key is a signed 64-bit integer, a UTF-8 string or a byte string. Routing hashes the
//! key's *canonical bytes* (integers as 8-byte little-endian two's complement, strings as UTF-8,
//! bytes unchanged) with xxh3_64 (seed 0) and takes the digest modulo `num_dbs`. Routing is
//! therefore independent of the key encoding, and `"x"` routes exactly like `b"x"`.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;

use crate::error::{Error, Result};

/// An owned logical key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    /// A signed 64-bit integer key.
    Int(i64),
    /// A UTF-8 string key.
    Str(String),
    /// A byte-string key.
    Bytes(Vec<u8>),
}

/// A borrowed logical key: what routing and encoding functions take, so the hot path does not
/// allocate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyRef<'a> {
    /// A signed 64-bit integer key.
    Int(i64),
    /// A UTF-8 string key.
    Str(&'a str),
    /// A byte-string key.
    Bytes(&'a [u8]),
}

impl Key {
    /// Borrow this key.
    pub fn as_key_ref(&self) -> KeyRef<'_> {
        match self {
            Key::Int(i) => KeyRef::Int(*i),
            Key::Str(s) => KeyRef::Str(s),
            Key::Bytes(b) => KeyRef::Bytes(b),
        }
    }

    /// An integer key from an unsigned value; values above `i64::MAX` are not routable.
    ///
    /// ```
    /// use shardyfusion_core::{ErrorKind, Key};
    /// assert_eq!(Key::from_u64(7).unwrap(), Key::Int(7));
    /// assert_eq!(Key::from_u64(u64::MAX).unwrap_err().kind(), ErrorKind::ConfigValidation);
    /// ```
    pub fn from_u64(value: u64) -> Result<Key> {
        i64::try_from(value).map(Key::Int).map_err(|_| {
            Error::config(format!(
                "Integer key {value} out of range [-9223372036854775808, 9223372036854775807]: \
                 unsigned keys above 2^63-1 are not routable"
            ))
        })
    }

    /// The canonical bytes that routing hashes.
    pub fn canonical_bytes(&self) -> Cow<'_, [u8]> {
        self.as_key_ref().canonical_bytes()
    }
}

impl<'a> KeyRef<'a> {
    /// Convert to an owned [`Key`].
    pub fn to_key(self) -> Key {
        match self {
            KeyRef::Int(i) => Key::Int(i),
            KeyRef::Str(s) => Key::Str(s.to_owned()),
            KeyRef::Bytes(b) => Key::Bytes(b.to_vec()),
        }
    }

    /// The canonical bytes that routing hashes: `Int` as 8-byte little-endian two's complement,
    /// `Str` as UTF-8, `Bytes` unchanged.
    pub fn canonical_bytes(self) -> Cow<'a, [u8]> {
        match self {
            KeyRef::Int(i) => Cow::Owned(i.to_le_bytes().to_vec()),
            KeyRef::Str(s) => Cow::Borrowed(s.as_bytes()),
            KeyRef::Bytes(b) => Cow::Borrowed(b),
        }
    }

    /// The name of the key's logical type (`int`, `str` or `bytes`), for error messages.
    pub fn type_name(self) -> &'static str {
        match self {
            KeyRef::Int(_) => "int",
            KeyRef::Str(_) => "str",
            KeyRef::Bytes(_) => "bytes",
        }
    }

    /// Compare two keys in logical-key order: integers numerically; strings and byte strings by
    /// their bytes (so `Str` and `Bytes` interleave as bytes); integers before strings.
    pub fn logical_cmp(self, other: KeyRef<'_>) -> Ordering {
        match (self, other) {
            (KeyRef::Int(a), KeyRef::Int(b)) => a.cmp(&b),
            (KeyRef::Int(_), _) => Ordering::Less,
            (_, KeyRef::Int(_)) => Ordering::Greater,
            (a, b) => a
                .canonical_bytes()
                .as_ref()
                .cmp(b.canonical_bytes().as_ref()),
        }
    }
}

impl fmt::Display for KeyRef<'_> {
    /// Integers in decimal, strings quoted, bytes as `b"…"` with escapes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyRef::Int(i) => write!(f, "{i}"),
            KeyRef::Str(s) => write!(f, "{s:?}"),
            KeyRef::Bytes(b) => write!(f, "b\"{}\"", b.escape_ascii()),
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.as_key_ref().fmt(f)
    }
}

impl<'a> From<&'a Key> for KeyRef<'a> {
    fn from(key: &'a Key) -> Self {
        key.as_key_ref()
    }
}
impl From<i64> for KeyRef<'_> {
    fn from(v: i64) -> Self {
        KeyRef::Int(v)
    }
}
impl<'a> From<&'a str> for KeyRef<'a> {
    fn from(v: &'a str) -> Self {
        KeyRef::Str(v)
    }
}
impl<'a> From<&'a [u8]> for KeyRef<'a> {
    fn from(v: &'a [u8]) -> Self {
        KeyRef::Bytes(v)
    }
}
impl From<i64> for Key {
    fn from(v: i64) -> Self {
        Key::Int(v)
    }
}
impl From<&str> for Key {
    fn from(v: &str) -> Self {
        Key::Str(v.to_owned())
    }
}
impl From<String> for Key {
    fn from(v: String) -> Self {
        Key::Str(v)
    }
}
impl From<Vec<u8>> for Key {
    fn from(v: Vec<u8>) -> Self {
        Key::Bytes(v)
    }
}
impl From<&[u8]> for Key {
    fn from(v: &[u8]) -> Self {
        Key::Bytes(v.to_vec())
    }
}

/// The only hash algorithm of format v4.
pub const HASH_ALGORITHM: &str = "xxh3_64";

/// `xxh3_64(canonical_bytes(key), seed = 0)`.
///
/// ```
/// use shardyfusion_core::{xxh3_digest, KeyRef};
/// assert_eq!(xxh3_digest(KeyRef::Int(0)), 14374147212387527897);
/// assert_eq!(xxh3_digest(KeyRef::Str("hello")), xxh3_digest(KeyRef::Bytes(b"hello")));
/// ```
#[inline]
pub fn xxh3_digest(key: KeyRef<'_>) -> u64 {
    match key {
        KeyRef::Int(i) => xxhash_rust::xxh3::xxh3_64(&i.to_le_bytes()),
        KeyRef::Str(s) => xxhash_rust::xxh3::xxh3_64(s.as_bytes()),
        KeyRef::Bytes(b) => xxhash_rust::xxh3::xxh3_64(b),
    }
}

/// A validated shard count with the HASH router: `db_id = xxh3_64(key) % num_dbs`.
///
/// ```
/// use shardyfusion_core::{HashRouter, KeyRef};
/// let router = HashRouter::new(8).unwrap();
/// assert_eq!(router.db_id(KeyRef::Str("eu:3")), 2);
/// assert!(HashRouter::new(0).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashRouter {
    num_dbs: u32,
}

impl HashRouter {
    /// A router over `num_dbs` shards; `num_dbs` must be at least 1.
    pub fn new(num_dbs: u32) -> Result<Self> {
        if num_dbs == 0 {
            return Err(Error::config("num_dbs must be > 0, got 0"));
        }
        Ok(HashRouter { num_dbs })
    }

    /// The number of shards.
    pub fn num_dbs(self) -> u32 {
        self.num_dbs
    }

    /// The shard of `key`.
    #[inline]
    pub fn db_id(self, key: KeyRef<'_>) -> u32 {
        // The remainder is < num_dbs <= u32::MAX, so the narrowing cannot lose bits.
        (xxh3_digest(key) % u64::from(self.num_dbs)) as u32
    }
}

/// `xxh3_64(key) % num_dbs`, validating `num_dbs`.
pub fn hash_db_id(key: KeyRef<'_>, num_dbs: u32) -> Result<u32> {
    Ok(HashRouter::new(num_dbs)?.db_id(key))
}

/// Check that a hash algorithm name is the supported `xxh3_64` (exact, case-sensitive).
pub fn check_hash_algorithm(name: &str) -> Result<()> {
    if name == HASH_ALGORITHM {
        Ok(())
    } else {
        Err(Error::config(format!(
            "Unsupported shard hash algorithm: {name:?}. Allowed: {HASH_ALGORITHM}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SPEC 5.6: the golden table, db_ids for num_dbs 1, 2, 3, 8, 10, 16, 100, 1000.
    #[test]
    fn spec_golden_table() {
        let sizes = [1u32, 2, 3, 8, 10, 16, 100, 1000];
        let cases: [(KeyRef<'_>, &str, u64, [u32; 8]); 9] = [
            (
                KeyRef::Int(0),
                "0000000000000000",
                14374147212387527897,
                [0, 1, 2, 1, 7, 9, 97, 897],
            ),
            (
                KeyRef::Int(1),
                "0100000000000000",
                3439722301264460078,
                [0, 0, 2, 6, 8, 14, 78, 78],
            ),
            (
                KeyRef::Int(-1),
                "ffffffffffffffff",
                5841669975847748627,
                [0, 1, 2, 3, 7, 3, 27, 627],
            ),
            (
                KeyRef::Int(42),
                "2a00000000000000",
                15395265915043915720,
                [0, 0, 1, 0, 0, 8, 20, 720],
            ),
            (
                KeyRef::Int(i64::MAX),
                "ffffffffffffff7f",
                11687913294787043142,
                [0, 0, 0, 6, 2, 6, 42, 142],
            ),
            (
                KeyRef::Int(i64::MIN),
                "0000000000000080",
                9407778237848358495,
                [0, 1, 0, 7, 5, 15, 95, 495],
            ),
            (
                KeyRef::Str("hello"),
                "68656c6c6f",
                10760762337991515389,
                [0, 1, 2, 5, 9, 13, 89, 389],
            ),
            (
                KeyRef::Bytes(b""),
                "",
                3244421341483603138,
                [0, 0, 1, 2, 8, 2, 38, 138],
            ),
            (
                KeyRef::Str("ключ"),
                "d0bad0bbd18ed187",
                11102353883453021918,
                [0, 0, 2, 6, 8, 14, 18, 918],
            ),
        ];
        for (key, hex, digest, ids) in cases {
            let bytes = key.canonical_bytes();
            let got_hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(got_hex, hex, "canonical bytes of {key}");
            assert_eq!(xxh3_digest(key), digest, "digest of {key}");
            for (n, want) in sizes.iter().zip(ids) {
                assert_eq!(
                    hash_db_id(key, *n).unwrap(),
                    want,
                    "db_id of {key} with {n} shards"
                );
            }
        }
        assert_eq!(xxh3_digest(KeyRef::Str("eu:3")), 11259148546011499122);
        assert_eq!(hash_db_id(KeyRef::Str("eu:3"), 8).unwrap(), 2);
        assert_eq!(xxh3_digest(KeyRef::Bytes(b"hello")), 10760762337991515389);
        assert_eq!(xxh3_digest(KeyRef::Str("")), 3244421341483603138);
    }

    #[test]
    fn zero_shards_is_a_config_error_naming_the_value() {
        let err = hash_db_id(KeyRef::Int(1), 0).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::ConfigValidation);
        assert!(err.message().contains("got 0"), "{err}");
    }

    #[test]
    fn hash_algorithm_is_exact() {
        assert!(check_hash_algorithm("xxh3_64").is_ok());
        for bad in ["md5", "XXH3_64", ""] {
            let err = check_hash_algorithm(bad).unwrap_err();
            assert!(err.message().contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn logical_order() {
        use std::cmp::Ordering::*;
        assert_eq!(KeyRef::Int(-5).logical_cmp(KeyRef::Int(3)), Less);
        assert_eq!(KeyRef::Str("b").logical_cmp(KeyRef::Bytes(b"a")), Greater);
        assert_eq!(KeyRef::Str("\u{e9}").logical_cmp(KeyRef::Str("z")), Greater);
        assert_eq!(KeyRef::Int(9).logical_cmp(KeyRef::Str("")), Less);
    }
}
