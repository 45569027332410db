//! One loaded snapshot: manifest, router, and an open reader per non-empty shard. A snapshot
//! is immutable; it closes its shard readers when the last borrower drops it.

use std::sync::Arc;

use bytes::Bytes;
use shardyfusion_core::{
    Error, ErrorKind, HashRouter, Key, KeyEncoding, KeyRef, ManifestRef, ParsedManifest,
    RequiredShardMeta, Result, ShardingStrategy, Timestamp,
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
    /// Readers of the non-empty shards only, ascending by `db_id` (a manifest's `num_dbs` never
    /// sizes an allocation: SPEC 15.4).
    readers: Vec<(u32, Arc<dyn ShardReader>)>,
    /// The runtime the readers were opened on, where they are closed when the snapshot retires.
    runtime: tokio::runtime::Handle,
}

/// Resource limits of opening a snapshot (SPEC 15.4).
#[derive(Debug, Clone, Copy)]
pub(crate) struct OpenLimits {
    /// Largest `num_dbs` accepted.
    pub(crate) max_num_dbs: u32,
    /// Shard opens in flight at once.
    pub(crate) open_concurrency: usize,
}

impl Snapshot {
    /// Load every non-empty shard, at most `limits.open_concurrency` at a time; on any failure
    /// close what was opened.
    pub(crate) async fn open(
        manifest_ref: ManifestRef,
        manifest: ParsedManifest,
        factory: &Arc<dyn ShardReaderFactory>,
        limits: OpenLimits,
    ) -> Result<Snapshot> {
        if manifest.build.num_dbs > limits.max_num_dbs {
            return Err(Error::new(
                ErrorKind::ManifestParse,
                format!(
                    "manifest {} declares num_dbs = {}, above this reader's ceiling of {} \
                     (ReaderOptions::with_max_num_dbs): a corrupt or hostile manifest, or raise \
                     the ceiling if the snapshot really has that many shards",
                    manifest_ref.manifest_ref, manifest.build.num_dbs, limits.max_num_dbs
                ),
            ));
        }
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
        // Each open is its own task, so opens (and their CPU work) spread over every worker; at
        // most `open_concurrency` are in flight, so a 10,000-shard refresh never fires 10,000
        // requests at once. After the first failure no new open starts.
        let mut pending = manifest.shards.iter().filter(|s| !s.is_empty());
        let mut opens = tokio::task::JoinSet::new();
        let spawn_next = |opens: &mut tokio::task::JoinSet<_>, next: Option<&RequiredShardMeta>| {
            if let Some(s) = next {
                let (factory, manifest, shard) = (factory.clone(), manifest.clone(), s.clone());
                opens.spawn(async move { (shard.db_id, factory.open(&shard, &manifest).await) });
            }
        };
        for _ in 0..limits.open_concurrency.max(1) {
            spawn_next(&mut opens, pending.next());
        }
        let mut readers: Vec<(u32, Arc<dyn ShardReader>)> = Vec::new();
        let mut failure = None;
        while let Some(joined) = opens.join_next().await {
            match joined {
                Ok((db_id, Ok(r))) => readers.push((db_id, r)),
                Ok((_, Err(e))) => failure = failure.or(Some(e)),
                Err(e) => {
                    failure = failure.or(Some(Error::new(
                        ErrorKind::DbAdapter,
                        format!("opening a shard failed: {e}"),
                    )))
                }
            }
            if failure.is_none() {
                spawn_next(&mut opens, pending.next());
            }
        }
        if let Some(e) = failure {
            for (_, r) in readers {
                let _ = r.close().await;
            }
            return Err(e);
        }
        readers.sort_unstable_by_key(|(db_id, _)| *db_id);
        Ok(Snapshot {
            manifest_ref,
            manifest,
            router,
            readers,
            runtime: tokio::runtime::Handle::current(),
        })
    }

    pub(crate) fn num_dbs(&self) -> u32 {
        self.manifest.build.num_dbs
    }

    pub(crate) fn key_encoding(&self) -> KeyEncoding {
        self.manifest.build.key_encoding
    }

    pub(crate) fn open_handles(&self) -> usize {
        self.readers.len()
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
        if db_id >= self.num_dbs() {
            return Err(Error::new(
                ErrorKind::ShardAssignment,
                format!("db_id {db_id} outside [0, {})", self.num_dbs()),
            ));
        }
        Ok(self
            .readers
            .binary_search_by_key(&db_id, |(id, _)| *id)
            .ok()
            .map(|i| &self.readers[i].1))
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
    /// Close the shard readers once nobody borrows the snapshot any more, on the runtime they
    /// were opened on (so a snapshot retired outside any runtime still closes them, as long as
    /// that runtime runs).
    fn drop(&mut self) {
        let readers: Vec<_> = self.readers.drain(..).map(|(_, r)| r).collect();
        if readers.is_empty() {
            return;
        }
        self.runtime.spawn(async move {
            for r in readers {
                if let Err(e) = r.close().await {
                    tracing::warn!(error = %e, "closing a retired shard reader failed");
                }
            }
        });
    }
}
