//! One loaded snapshot: manifest, router, and an open reader per non-empty shard. A snapshot
//! is immutable; it closes its shard readers when the last borrower drops it.

use std::sync::Arc;

use bytes::Bytes;
use shardyfusion_core::{
    Error, ErrorKind, HashRouter, Key, KeyEncoding, KeyRef, ManifestRef, ParsedManifest, Result,
    ShardingStrategy, Timestamp,
};

use crate::RoutingContext;
use crate::shard::{ShardReader, ShardReaderFactory};

enum Router {
    Hash(HashRouter),
    #[cfg(feature = "cel")]
    Cel(shardyfusion_cel::CelRouter),
}

/// Facts about the loaded snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotInfo {
    /// Run id.
    pub run_id: String,
    /// Number of shards.
    pub num_dbs: u32,
    /// `hash` or `cel`.
    pub sharding: ShardingStrategy,
    /// Manifest build time.
    pub created_at: Timestamp,
    /// The manifest ref.
    pub manifest_ref: String,
    /// Σ shard rows.
    pub row_count: u64,
    /// Key encoding.
    pub key_encoding: KeyEncoding,
    /// Always `xxh3_64`.
    pub hash_algorithm: &'static str,
}

/// One shard's facts (every `db_id` in `[0, num_dbs)`, empty ones included).
#[derive(Debug, Clone, PartialEq)]
pub struct ShardDetail {
    /// Shard id.
    pub db_id: u32,
    /// Rows.
    pub row_count: u64,
    /// Smallest key.
    pub min_key: Option<Key>,
    /// Largest key.
    pub max_key: Option<Key>,
    /// Database URL (`None` = empty shard).
    pub db_url: Option<String>,
}

pub(crate) struct Snapshot {
    pub(crate) manifest_ref: ManifestRef,
    pub(crate) manifest: Arc<ParsedManifest>,
    router: Router,
    readers: Vec<Option<Arc<dyn ShardReader>>>,
}

impl Snapshot {
    /// Load every non-empty shard concurrently; on any failure close what was opened.
    pub(crate) async fn open(
        manifest_ref: ManifestRef,
        manifest: ParsedManifest,
        factory: &Arc<dyn ShardReaderFactory>,
    ) -> Result<Snapshot> {
        shardyfusion_core::codec::check_custom_supported(manifest.custom())?;
        let manifest = Arc::new(manifest);
        let b = &manifest.build;
        let router = match b.sharding.strategy {
            ShardingStrategy::Hash => Router::Hash(HashRouter::new(b.num_dbs)?),
            #[cfg(feature = "cel")]
            ShardingStrategy::Cel => Router::Cel(shardyfusion_cel::CelRouter::from_manifest(
                &b.sharding,
                b.num_dbs,
            )?),
            #[cfg(not(feature = "cel"))]
            ShardingStrategy::Cel => {
                return Err(Error::config(
                    "this snapshot uses CEL sharding: enable the `cel` feature",
                ));
            }
        };
        // Each open is its own task, so opens (and their CPU work) spread over every worker.
        let mut opens = tokio::task::JoinSet::new();
        for s in manifest.shards.iter().filter(|s| !s.is_empty()) {
            let (factory, manifest, shard) = (factory.clone(), manifest.clone(), s.clone());
            opens.spawn(async move { (shard.db_id, factory.open(&shard, &manifest).await) });
        }
        let mut readers: Vec<Option<Arc<dyn ShardReader>>> = (0..b.num_dbs).map(|_| None).collect();
        let mut failure = None;
        while let Some(joined) = opens.join_next().await {
            match joined {
                Ok((db_id, Ok(r))) => readers[db_id as usize] = Some(r),
                Ok((_, Err(e))) => failure = failure.or(Some(e)),
                Err(e) => {
                    failure = failure.or(Some(Error::new(
                        ErrorKind::DbAdapter,
                        format!("opening a shard failed: {e}"),
                    )))
                }
            }
        }
        if let Some(e) = failure {
            for r in readers.into_iter().flatten() {
                let _ = r.close().await;
            }
            return Err(e);
        }
        Ok(Snapshot {
            manifest_ref,
            manifest,
            router,
            readers,
        })
    }

    pub(crate) fn num_dbs(&self) -> u32 {
        self.manifest.build.num_dbs
    }

    pub(crate) fn key_encoding(&self) -> KeyEncoding {
        self.manifest.build.key_encoding
    }

    pub(crate) fn open_handles(&self) -> usize {
        self.readers.iter().flatten().count()
    }

    /// The shard of a lookup key; `None` for an unknown categorical token. Returns the key
    /// bytes to look up too.
    pub(crate) fn locate(
        &self,
        key: KeyRef<'_>,
        ctx: Option<&RoutingContext>,
    ) -> Result<Option<(u32, Vec<u8>)>> {
        let enc = self.key_encoding();
        let key = enc.normalize_lookup_key(key)?;
        let encoded = enc.encode(key)?;
        let db_id = match &self.router {
            Router::Hash(h) => {
                let _ = ctx;
                h.db_id(key)
            }
            #[cfg(feature = "cel")]
            Router::Cel(c) => match c.route(key, ctx)? {
                shardyfusion_cel::Route::Shard(id) => id,
                shardyfusion_cel::Route::UnknownToken(_) => return Ok(None),
            },
        };
        Ok(Some((db_id, encoded)))
    }

    /// The shard of a key, failing on an unknown categorical token.
    pub(crate) fn route_key(&self, key: KeyRef<'_>, ctx: Option<&RoutingContext>) -> Result<u32> {
        let enc = self.key_encoding();
        let key = enc.normalize_lookup_key(key)?;
        match &self.router {
            Router::Hash(h) => Ok(h.db_id(key)),
            #[cfg(feature = "cel")]
            Router::Cel(c) => c.route(key, ctx)?.into_shard(),
        }
    }

    /// The reader of shard `db_id`; `None` for an empty shard (the null reader).
    fn shard(&self, db_id: u32) -> Result<Option<&Arc<dyn ShardReader>>> {
        self.readers
            .get(db_id as usize)
            .map(Option::as_ref)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::ShardAssignment,
                    format!("db_id {db_id} outside [0, {})", self.num_dbs()),
                )
            })
    }

    /// Several encoded keys of one shard, in the order given.
    pub(crate) async fn read_many(
        &self,
        db_id: u32,
        encoded: &[&[u8]],
    ) -> Result<Vec<Option<Bytes>>> {
        match self.shard(db_id)? {
            Some(r) => r.multi_get(encoded).await,
            None => Ok(vec![None; encoded.len()]),
        }
    }

    pub(crate) async fn read(&self, db_id: u32, encoded: &[u8]) -> Result<Option<Bytes>> {
        match self.shard(db_id)? {
            Some(r) => r.get(encoded).await,
            None => Ok(None),
        }
    }

    pub(crate) fn info(&self) -> SnapshotInfo {
        let b = &self.manifest.build;
        SnapshotInfo {
            run_id: b.run_id.clone(),
            num_dbs: b.num_dbs,
            sharding: b.sharding.strategy,
            created_at: b.created_at,
            manifest_ref: self.manifest_ref.manifest_ref.clone(),
            row_count: self.manifest.row_count(),
            key_encoding: b.key_encoding,
            hash_algorithm: b.sharding.hash_algorithm(),
        }
    }

    pub(crate) fn details(&self) -> Vec<ShardDetail> {
        self.manifest
            .dense_shards()
            .into_iter()
            .map(|s| ShardDetail {
                db_id: s.db_id,
                row_count: s.row_count,
                min_key: s.min_key,
                max_key: s.max_key,
                db_url: s.db_url,
            })
            .collect()
    }
}

impl Drop for Snapshot {
    /// Close the shard readers once nobody borrows the snapshot any more.
    fn drop(&mut self) {
        let readers: Vec<_> = self.readers.drain(..).flatten().collect();
        if readers.is_empty() {
            return;
        }
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                for r in readers {
                    if let Err(e) = r.close().await {
                        tracing::warn!(error = %e, "closing a retired shard reader failed");
                    }
                }
            });
        }
    }
}
