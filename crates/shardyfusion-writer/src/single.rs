//! `write_single_db`: one database, no sharding.

use shardyfusion_core::{Error, HashRouter, Key, Result, ShardingStrategy, WriteOptions};

use crate::input::Record;
use crate::result::BuildResult;
use crate::route::{Plan, Router};
use crate::writer::ShardedWriter;

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
        I: IntoIterator<Item = T>,
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
        let plan = Plan {
            router: Router::Hash(HashRouter::new(1)?),
            num_dbs: 1,
            routing_values: None,
            sharding_ms: 0,
        };
        let extract = |r: &T| Ok(Record::new(key(r), value(r)));
        let records = futures::stream::iter(records.into_iter().map(Ok));
        self.write_planned(plan, records, extract, &opts).await
    }
}
