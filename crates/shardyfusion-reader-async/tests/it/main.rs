//! Integration tests of shardyfusion-reader-async: the Python-written snapshots, refresh,
//! fallback, service features.

#![allow(clippy::unwrap_used)]

mod cold;
mod limits;
mod lookups;
mod python;
mod refresh;

use std::sync::Arc;

use shardyfusion_core::{Key, ManifestStore, WriteConfig, WriteOptions};
use shardyfusion_storage::StorageResolver;
use shardyfusion_store_s3::ObjectStoreManifestStore;
use shardyfusion_writer::{BuildResult, ShardedWriter};

pub(crate) use shardyfusion_store_conformance::unique_name as unique;

pub(crate) fn store_for(prefix: &str, resolver: &StorageResolver) -> Arc<dyn ManifestStore> {
    Arc::new(ObjectStoreManifestStore::new(prefix, resolver.clone()).unwrap())
}

/// Publish `keys` with values `g<gen>-<key>` into `num_dbs` shards.
pub(crate) async fn publish(
    store: &Arc<dyn ManifestStore>,
    prefix: &str,
    num_dbs: u32,
    generation: u32,
    keys: &[i64],
) -> BuildResult {
    let config = WriteConfig::builder(prefix)
        .num_dbs(num_dbs)
        .manifest_store(store.clone())
        .build()
        .unwrap();
    ShardedWriter::new(config)
        .unwrap()
        .with_run_registry(false)
        .write(
            keys,
            |k| Key::Int(**k),
            move |k| format!("g{generation}-{k}").into_bytes(),
            &WriteOptions::default(),
        )
        .await
        .unwrap()
}
