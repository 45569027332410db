//! Integration tests of shardyfusion-writer: round trips through real SlateDB on memory, a local
//! directory and the S3-compatible server; routing modes; retries; failure safety; metrics.

#![allow(clippy::unwrap_used)]

mod compaction;
mod engine;
mod failures;
mod hygiene;
mod roundtrip;
mod streaming;

use std::collections::HashMap;
use std::sync::Arc;

use shardyfusion_core::{KeyRef, ManifestStore, ParsedManifest};
use shardyfusion_storage::StorageResolver;
use shardyfusion_store_s3::ObjectStoreManifestStore;
use slatedb::config::DbReaderOptions;
use slatedb::{DbReader, DbReaderMode};

pub(crate) use shardyfusion_store_conformance::{
    s3_test_server as s3_server, unique_name as unique,
};

pub(crate) fn store_for(prefix: &str, resolver: &StorageResolver) -> Arc<dyn ManifestStore> {
    Arc::new(ObjectStoreManifestStore::new(prefix, resolver.clone()).unwrap())
}

/// Read-only SlateDB readers over every non-empty shard of a manifest.
pub(crate) struct Shards {
    readers: HashMap<u32, DbReader>,
    manifest: ParsedManifest,
}

impl Shards {
    pub(crate) async fn open(manifest: ParsedManifest, resolver: &StorageResolver) -> Shards {
        let mut readers = HashMap::new();
        for s in &manifest.shards {
            let loc = resolver.resolve(s.db_url.as_deref().unwrap()).unwrap();
            let opts = DbReaderOptions {
                skip_wal_replay: true,
                ..DbReaderOptions::default()
            };
            let r = DbReader::open(
                loc.path.clone(),
                loc.store.clone(),
                DbReaderMode::FollowLatest,
                opts,
            )
            .await
            .unwrap();
            readers.insert(s.db_id, r);
        }
        Shards { readers, manifest }
    }

    /// The value of a logical key, routed by HASH and encoded with the manifest's encoding.
    pub(crate) async fn get(&self, key: KeyRef<'_>) -> Option<Vec<u8>> {
        let db_id = shardyfusion_core::hash_db_id(key, self.manifest.build.num_dbs).unwrap();
        self.get_in(db_id, key).await
    }

    pub(crate) async fn get_in(&self, db_id: u32, key: KeyRef<'_>) -> Option<Vec<u8>> {
        let encoded = self.manifest.build.key_encoding.encode(key).unwrap();
        let r = self.readers.get(&db_id)?;
        r.get(&encoded).await.unwrap().map(|b| b.to_vec())
    }

    pub(crate) async fn close(self) {
        for (_, r) in self.readers {
            r.close().await.unwrap();
        }
    }
}
