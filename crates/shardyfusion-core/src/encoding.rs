//! Key encodings: how a logical key becomes the bytes stored in (and looked up from) a shard.
//!
//! | Encoding | Accepted keys | Stored bytes |
//! |---|---|---|
//! | `u64be` (default) | `Int` in `[0, 2^63-1]` | 8 bytes big-endian |
//! | `u32be` | `Int` in `[0, 2^32-1]` | 4 bytes big-endian |
//! | `utf8` | `Str` (UTF-8), `Bytes` (passthrough) | as is |
//! | `raw` | `Bytes` (passthrough), `Str` (UTF-8) | as is |
//!
//! Readers go through [`KeyEncoding::normalize_lookup_key`] first: under the integer encodings a
//! byte key of exactly 8 (or 4) bytes is decoded as the big-endian integer, so pre-encoded keys
//! route like the integer they encode.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::key::{Key, KeyRef};

/// How logical keys are stored in shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum KeyEncoding {
    /// 8-byte big-endian unsigned integer (integer keys in `[0, 2^63-1]`).
    #[default]
    U64Be,
    /// 4-byte big-endian unsigned integer (integer keys in `[0, 2^32-1]`).
    U32Be,
    /// UTF-8 text; byte keys pass through.
    Utf8,
    /// Raw bytes; string keys are stored as their UTF-8 bytes.
    Raw,
}

impl KeyEncoding {
    /// Every encoding, in the order of the specification.
    pub const ALL: [KeyEncoding; 4] = [
        KeyEncoding::U64Be,
        KeyEncoding::U32Be,
        KeyEncoding::Utf8,
        KeyEncoding::Raw,
    ];

    /// The name written in manifests (`u64be`, `u32be`, `utf8`, `raw`).
    pub const fn as_str(self) -> &'static str {
        match self {
            KeyEncoding::U64Be => "u64be",
            KeyEncoding::U32Be => "u32be",
            KeyEncoding::Utf8 => "utf8",
            KeyEncoding::Raw => "raw",
        }
    }

    /// Whether this encoding stores integer keys.
    pub const fn is_integer(self) -> bool {
        matches!(self, KeyEncoding::U64Be | KeyEncoding::U32Be)
    }

    /// Encode a logical key for writing, appending the stored bytes to `out`.
    pub fn encode_into(self, key: KeyRef<'_>, out: &mut Vec<u8>) -> Result<()> {
        match (self, key) {
            (KeyEncoding::U64Be, KeyRef::Int(i)) => {
                if i < 0 {
                    return Err(Error::config(format!(
                        "u64be encoding requires an integer key in [0, 2^63-1], got {i}"
                    )));
                }
                out.extend_from_slice(&(i as u64).to_be_bytes());
            }
            (KeyEncoding::U32Be, KeyRef::Int(i)) => {
                let v = u32::try_from(i).map_err(|_| {
                    Error::config(format!(
                        "u32be encoding requires an integer key in [0, 2^32-1], got {i}"
                    ))
                })?;
                out.extend_from_slice(&v.to_be_bytes());
            }
            (KeyEncoding::U64Be | KeyEncoding::U32Be, other) => {
                return Err(Error::config(format!(
                    "{} encoding expects an int key, got {} {other}",
                    self.as_str(),
                    other.type_name()
                )));
            }
            (KeyEncoding::Utf8 | KeyEncoding::Raw, KeyRef::Int(i)) => {
                return Err(Error::config(format!(
                    "{} encoding expects a str or bytes key, got int {i}",
                    self.as_str()
                )));
            }
            (KeyEncoding::Utf8 | KeyEncoding::Raw, KeyRef::Str(s)) => {
                out.extend_from_slice(s.as_bytes())
            }
            (KeyEncoding::Utf8 | KeyEncoding::Raw, KeyRef::Bytes(b)) => out.extend_from_slice(b),
        }
        Ok(())
    }

    /// Encode a logical key for writing.
    ///
    /// ```
    /// use shardyfusion_core::{KeyEncoding, KeyRef};
    /// assert_eq!(KeyEncoding::U64Be.encode(KeyRef::Int(42)).unwrap(), [0, 0, 0, 0, 0, 0, 0, 42]);
    /// assert!(KeyEncoding::U32Be.encode(KeyRef::Int(1 << 32)).is_err());
    /// ```
    pub fn encode(self, key: KeyRef<'_>) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(8);
        self.encode_into(key, &mut out)?;
        Ok(out)
    }

    /// Turn a reader's lookup key into the logical key it stands for: under `u64be`/`u32be` a
    /// `Bytes` key of exactly 8/4 bytes is the big-endian integer; any other length, and any
    /// `Str` key, is an error. `utf8`/`raw` accept keys as the writer does.
    ///
    /// Route and encode the returned key.
    pub fn normalize_lookup_key(self, key: KeyRef<'_>) -> Result<KeyRef<'_>> {
        match (self, key) {
            (KeyEncoding::U64Be, KeyRef::Bytes(b)) => {
                let arr: [u8; 8] = b.try_into().map_err(|_| {
                    Error::config(format!(
                        "u64be lookup keys given as bytes must be exactly 8 bytes, got {} bytes",
                        b.len()
                    ))
                })?;
                let v = u64::from_be_bytes(arr);
                i64::try_from(v).map(KeyRef::Int).map_err(|_| {
                    Error::config(format!(
                        "u64be encoding requires an integer key in [0, 2^63-1], got {v}"
                    ))
                })
            }
            (KeyEncoding::U32Be, KeyRef::Bytes(b)) => {
                let arr: [u8; 4] = b.try_into().map_err(|_| {
                    Error::config(format!(
                        "u32be lookup keys given as bytes must be exactly 4 bytes, got {} bytes",
                        b.len()
                    ))
                })?;
                Ok(KeyRef::Int(i64::from(u32::from_be_bytes(arr))))
            }
            (KeyEncoding::U64Be | KeyEncoding::U32Be, KeyRef::Str(s)) => {
                Err(Error::config(format!(
                    "{} key encoding requires integer lookup keys, got str {s:?}",
                    self.as_str()
                )))
            }
            (_, key) => {
                // Same acceptance rules as the writer, without allocating.
                self.check(key)?;
                Ok(key)
            }
        }
    }

    /// Check that `key` is acceptable for this encoding without encoding it.
    pub fn check(self, key: KeyRef<'_>) -> Result<()> {
        match (self, key) {
            (KeyEncoding::Utf8 | KeyEncoding::Raw, KeyRef::Str(_) | KeyRef::Bytes(_)) => Ok(()),
            (KeyEncoding::U64Be, KeyRef::Int(i)) if i >= 0 => Ok(()),
            (KeyEncoding::U32Be, KeyRef::Int(i)) if u32::try_from(i).is_ok() => Ok(()),
            // Every other combination is an error; encoding produces the exact message. An
            // empty Vec does not allocate, and the error paths write nothing into it.
            _ => self.encode_into(key, &mut Vec::new()),
        }
    }
}

impl fmt::Display for KeyEncoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyEncoding {
    type Err = Error;

    /// Parse an encoding name exactly (case-sensitive).
    fn from_str(s: &str) -> Result<Self> {
        KeyEncoding::ALL
            .into_iter()
            .find(|e| e.as_str() == s)
            .ok_or_else(|| {
                Error::config(format!(
                    "Unsupported key encoding: '{s}'. Allowed: u64be, u32be, utf8, raw"
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn names_round_trip_and_unknown_names_fail_exactly() {
        for e in KeyEncoding::ALL {
            assert_eq!(e.as_str().parse::<KeyEncoding>().unwrap(), e);
        }
        let err = "U64BE".parse::<KeyEncoding>().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ConfigValidation);
        assert_eq!(
            err.message(),
            "Unsupported key encoding: 'U64BE'. Allowed: u64be, u32be, utf8, raw"
        );
    }

    #[test]
    fn integer_ranges() {
        assert_eq!(
            KeyEncoding::U64Be.encode(KeyRef::Int(i64::MAX)).unwrap(),
            [0x7f, 255, 255, 255, 255, 255, 255, 255]
        );
        let err = KeyEncoding::U64Be.encode(KeyRef::Int(-1)).unwrap_err();
        assert!(err.message().contains("got -1"), "{err}");
        assert_eq!(
            KeyEncoding::U32Be
                .encode(KeyRef::Int(u32::MAX.into()))
                .unwrap(),
            [255; 4]
        );
        let err = KeyEncoding::U32Be.encode(KeyRef::Int(1 << 32)).unwrap_err();
        assert!(err.message().contains("got 4294967296"), "{err}");
        let err = KeyEncoding::U32Be.encode(KeyRef::Str("1")).unwrap_err();
        assert!(err.message().contains("got str \"1\""), "{err}");
    }

    #[test]
    fn lookup_keys_decode_pre_encoded_integers() {
        let k = KeyEncoding::U64Be
            .normalize_lookup_key(KeyRef::Bytes(&[0, 0, 0, 0, 0, 0, 0, 42]))
            .unwrap();
        assert_eq!(k, KeyRef::Int(42));
        let k = KeyEncoding::U32Be
            .normalize_lookup_key(KeyRef::Bytes(&[255; 4]))
            .unwrap();
        assert_eq!(k, KeyRef::Int(4294967295));
        let err = KeyEncoding::U64Be
            .normalize_lookup_key(KeyRef::Bytes(&[255; 8]))
            .unwrap_err();
        assert!(err.message().contains("18446744073709551615"), "{err}");
        let err = KeyEncoding::U32Be
            .normalize_lookup_key(KeyRef::Bytes(&[1, 2]))
            .unwrap_err();
        assert!(err.message().contains("got 2 bytes"), "{err}");
        let err = KeyEncoding::U64Be
            .normalize_lookup_key(KeyRef::Str("7"))
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ConfigValidation);
        assert_eq!(
            KeyEncoding::Raw
                .normalize_lookup_key(KeyRef::Str("x"))
                .unwrap(),
            KeyRef::Str("x")
        );
        assert!(
            KeyEncoding::Utf8
                .normalize_lookup_key(KeyRef::Int(1))
                .is_err()
        );
    }
}

/// How a key is written as text where people and scripts type keys (the CLI's arguments and
/// `multiget -` lines, HTTP paths): as typed, or the key's bytes in hex or base64, so that
/// every key a snapshot can hold can be entered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyFormat {
    /// As typed: digits for integer encodings, the text itself for `utf8` and `raw`.
    #[default]
    Text,
    /// The key's bytes in hex (integer encodings: the 8 or 4 big-endian bytes).
    Hex,
    /// The key's bytes in standard base64.
    Base64,
}

impl KeyFormat {
    /// `text`, `hex` or `base64`.
    pub const fn as_str(self) -> &'static str {
        match self {
            KeyFormat::Text => "text",
            KeyFormat::Hex => "hex",
            KeyFormat::Base64 => "base64",
        }
    }
}

impl FromStr for KeyFormat {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        [KeyFormat::Text, KeyFormat::Hex, KeyFormat::Base64]
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| {
                Error::config(format!("unknown key format {s:?}: use text, hex or base64"))
            })
    }
}

impl KeyEncoding {
    /// The logical key that `raw`, written in `format`, stands for under this encoding.
    /// Nothing is trimmed: every byte is part of the key.
    ///
    /// ```
    /// use shardyfusion_core::{Key, KeyEncoding, KeyFormat};
    /// assert_eq!(KeyEncoding::U64Be.parse_key(b"42", KeyFormat::Text).unwrap(), Key::Int(42));
    /// assert_eq!(KeyEncoding::U64Be.parse_key(b"0000000000000102", KeyFormat::Hex).unwrap(), Key::Int(258));
    /// assert_eq!(KeyEncoding::Raw.parse_key(b"ff", KeyFormat::Hex).unwrap(), Key::Bytes(vec![0xff]));
    /// assert!(KeyEncoding::Utf8.parse_key(b"\xff", KeyFormat::Text).is_err());
    /// // Integers outside the encoding's range are errors, not keys that can never exist.
    /// assert!(KeyEncoding::U64Be.parse_key(b"-1", KeyFormat::Text).is_err());
    /// assert!(KeyEncoding::U32Be.parse_key(b"4294967296", KeyFormat::Text).is_err());
    /// ```
    pub fn parse_key(self, raw: &[u8], format: KeyFormat) -> Result<Key> {
        use base64::Engine as _;
        let shown = || String::from_utf8_lossy(raw).into_owned();
        let bytes: Vec<u8> = match format {
            KeyFormat::Text => raw.to_vec(),
            KeyFormat::Hex => {
                let hex = |b: u8| (b as char).to_digit(16);
                if !raw.len().is_multiple_of(2) || raw.iter().any(|&b| hex(b).is_none()) {
                    return Err(Error::config(format!(
                        "key {:?} is not hex (key format hex)",
                        shown()
                    )));
                }
                raw.chunks(2)
                    .map(|p| (hex(p[0]).unwrap_or(0) * 16 + hex(p[1]).unwrap_or(0)) as u8)
                    .collect()
            }
            KeyFormat::Base64 => base64::engine::general_purpose::STANDARD
                .decode(raw)
                .map_err(|e| Error::config(format!("key {:?} is not base64 ({e})", shown())))?,
        };
        let int = |b: &[u8]| -> Result<i64> {
            match (self, b.len()) {
                (KeyEncoding::U64Be, 8) => {
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    i64::try_from(u64::from_be_bytes(a)).map_err(|_| {
                        Error::config(format!(
                            "key {:?} is above 2^63-1, which u64be keys cannot hold",
                            shown()
                        ))
                    })
                }
                (KeyEncoding::U32Be, 4) => {
                    let mut a = [0u8; 4];
                    a.copy_from_slice(b);
                    Ok(i64::from(u32::from_be_bytes(a)))
                }
                (_, n) => Err(Error::config(format!(
                    "a {self} key is {} bytes, got {n} from {:?}",
                    if self == KeyEncoding::U64Be { 8 } else { 4 },
                    shown()
                ))),
            }
        };
        Ok(match (self, format) {
            (KeyEncoding::U64Be | KeyEncoding::U32Be, KeyFormat::Text) => {
                let text = std::str::from_utf8(&bytes).unwrap_or_default();
                let v: i64 = text.parse().map_err(|_| {
                    Error::config(format!(
                        "key {:?} is not an integer, but the snapshot uses {self} keys",
                        shown()
                    ))
                })?;
                // Found by the key_parse fuzz target: "-1" parsed, but no u64be key is negative.
                self.check(KeyRef::Int(v))?;
                Key::Int(v)
            }
            (KeyEncoding::U64Be | KeyEncoding::U32Be, _) => Key::Int(int(&bytes)?),
            (KeyEncoding::Utf8, _) => Key::Str(String::from_utf8(bytes).map_err(|_| {
                Error::config(format!(
                    "key {:?} is not valid UTF-8, but the snapshot uses utf8 keys (give raw bytes \
                     with key format hex or base64 only to raw snapshots)",
                    shown()
                ))
            })?),
            (KeyEncoding::Raw, _) => Key::Bytes(bytes),
        })
    }
}
