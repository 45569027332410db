//! # shardyfusion-manifest
//!
//! The snapshot metadata formats, byte-compatible with the Python implementation: the
//! format-v4 manifest (a complete SQLite image with tables `build_meta` and `shards`) and the
//! `_CURRENT` pointer JSON. Bytes in, bytes out: no files, no network (the image is built and
//! read in memory with rusqlite's serialize API).
//!
//! * [`build_manifest`] / [`parse_manifest`] — the image, with every validation rule of the
//!   format; any bad input is a `ManifestParse` error, never a panic.
//! * [`LazyManifest`] — answer `get_shard(db_id)` from the image without loading every row.
//! * [`pointer_to_json`] / [`pointer_from_json`] — the pointer.
//!
//! Layering: depends on `shardyfusion-core` only (the JSON column codecs live in
//! `shardyfusion_core::codec` so database stores share them).
//!
//! ```
//! use shardyfusion_core::{RequiredBuildMeta, RequiredShardMeta};
//! use shardyfusion_manifest::{build_manifest, parse_manifest};
//!
//! let build = RequiredBuildMeta::new("run1", 2, "s3://bucket/prefix");
//! let mut shard = RequiredShardMeta::empty(1);
//! shard.db_url = Some("s3://bucket/prefix/shards/run_id=run1/db=00001/attempt=00".into());
//! shard.row_count = 10;
//! let image = build_manifest(&build, &[shard.clone()])?;
//! let parsed = parse_manifest(&image)?;
//! assert_eq!(parsed.shard(1), shard);
//! assert!(parsed.shard(0).is_empty());
//! # Ok::<(), shardyfusion_core::Error>(())
//! ```

#![deny(missing_docs)]

mod image;
mod lazy;
mod pointer;

pub use image::{SQLITE_MAGIC, build_manifest, parse_manifest};
pub use lazy::{LAZY_CACHE_ENTRIES, LazyManifest};
pub use pointer::{pointer_from_json, pointer_to_json};
