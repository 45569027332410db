//! `write_single_db`: one database, no sharding.

use shardyfusion_core::{DEFAULT_KEY_COL, Error, Key, Result, ShardingStrategy, WriteOptions};

use crate::result::BuildResult;
use crate::writer::{Row, ShardedWriter};

impl ShardedWriter {
    /// Write every record into one database (`num_dbs` = 1, HASH spec, `db_id` 0), keys sorted
    /// first when `sort_keys` is true. `shard_retry` retries the whole database. With zero rows
    /// the manifest lists no shard (a published SlateDB shard always holds at least one key).
    pub async fn write_single_db<I, T, FK, FV>(
        &self,
        records: I,
        key: FK,
        value: FV,
        sort_keys: bool,
        options: &WriteOptions,
    ) -> Result<BuildResult>
    where
        I: IntoIterator<Item = T> + Clone,
        FK: Fn(&T) -> Key,
        FV: Fn(&T) -> Vec<u8>,
    {
        if self.config().sharding().strategy != ShardingStrategy::Hash {
            return Err(Error::config(
                "write_single_db takes no CEL sharding: it writes one database",
            ));
        }
        let mut opts = options.clone();
        opts.sort_within_partitions = sort_keys;
        opts.parallel = false;
        self.run(
            records,
            |r| {
                Ok(Row {
                    key: key(r),
                    value: value(r),
                    ctx: None,
                })
            },
            DEFAULT_KEY_COL,
            &opts,
            Some(1),
        )
        .await
    }
}
