//! Integration tests of shardyfusion-manifest: Python-written snapshots, the Rust-built image
//! as a Python reader sees it, every validation rule, and never-panic property tests.

#![allow(clippy::unwrap_used)]

mod python_compat;
mod rules;

use std::path::PathBuf;

use shardyfusion_core::{Key, RequiredBuildMeta, RequiredShardMeta, WriterInfo};

pub(crate) fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A small valid snapshot: 2 shards, HASH, both non-empty.
pub(crate) fn sample() -> (RequiredBuildMeta, Vec<RequiredShardMeta>) {
    let mut build = RequiredBuildMeta::new("abc", 2, "s3://bucket/prefix/");
    build.created_at = shardyfusion_core::Timestamp::parse("2026-03-14T10:30:00.123456Z").unwrap();
    let shards = (0..2)
        .map(|i| RequiredShardMeta {
            db_id: i,
            db_url: Some(format!(
                "s3://bucket/prefix/shards/run_id=abc/db={i:05}/attempt=00"
            )),
            attempt: 0,
            row_count: 10 + u64::from(i),
            db_bytes: 0,
            min_key: Some(Key::Int(1)),
            max_key: Some(Key::Int(99)),
            checkpoint_id: Some("0123456789abcdef0123456789abcdef".into()),
            writer_info: WriterInfo {
                attempt: 0,
                duration_ms: 12,
                stage_id: None,
                task_attempt_id: None,
            },
        })
        .collect();
    (build, shards)
}
