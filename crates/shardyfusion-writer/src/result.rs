//! What a write returns.

use shardyfusion_core::ManifestRef;

pub use crate::shard::ShardResult;

/// Phase durations in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BuildDurations {
    /// Separate routing pre-pass (0 when routing happens while writing).
    pub sharding_ms: u64,
    /// Writing the shards.
    pub write_ms: u64,
    /// Building and publishing the manifest.
    pub manifest_ms: u64,
    /// The whole write.
    pub total_ms: u64,
}

/// Counts of a write.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BuildStats {
    /// Phase durations.
    pub durations: BuildDurations,
    /// Shard results, one per shard (empty shards included).
    pub num_attempt_results: usize,
    /// Shards listed in the manifest (non-empty winners).
    pub num_winners: usize,
    /// Σ winners' `row_count`: every row written, a repeated key counted each time (as the
    /// manifest's `row_count` does, and as the Python writer does).
    pub rows_written: u64,
    /// Rows whose key repeated an earlier row's key within a shard batch (the later row won);
    /// distinct keys are at most `rows_written - duplicate_keys`.
    pub duplicate_keys: u64,
}

/// The result of a successful write.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildResult {
    /// Run id.
    pub run_id: String,
    /// Number of shards of the snapshot.
    pub num_dbs: u32,
    /// The winning attempt of every non-empty shard, ascending by `db_id`.
    pub winners: Vec<ShardResult>,
    /// The published manifest.
    pub manifest_ref: ManifestRef,
    /// Counts and durations.
    pub stats: BuildStats,
    /// URL of the run record, when the registry was written.
    pub run_record_ref: Option<String>,
}
