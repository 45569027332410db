//! Lazy shard lookup: answer `get_shard(db_id)` from the image on demand, with an LRU of
//! recently used rows, instead of loading every row (useful for manifests with many shards).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use rusqlite::Connection;
use shardyfusion_core::{Error, RequiredBuildMeta, RequiredShardMeta, Result};

use crate::image::{Columns, open_image, read_build_meta, read_err, read_shard_row};

/// Rows kept by the LRU.
pub const LAZY_CACHE_ENTRIES: usize = 4096;

struct Lru {
    map: HashMap<u32, RequiredShardMeta>,
    order: VecDeque<u32>,
}

/// A manifest whose shard rows are read on demand. Behaves exactly like the eager parse.
pub struct LazyManifest {
    build: RequiredBuildMeta,
    shard_cols: Columns,
    conn: Mutex<Connection>,
    cache: Mutex<Lru>,
}

impl std::fmt::Debug for LazyManifest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyManifest")
            .field("build", &self.build)
            .finish_non_exhaustive()
    }
}

impl LazyManifest {
    /// Open and validate an image without loading its shard rows. The table-wide rules (row
    /// count, unique ids in range) are checked with one aggregate query.
    pub fn open(bytes: &[u8]) -> Result<Self> {
        let conn = open_image(bytes)?;
        let build = read_build_meta(&conn)?;
        let (count, distinct, min, max): (i64, i64, Option<i64>, Option<i64>) = conn
            .query_row(
                "SELECT COUNT(*), COUNT(DISTINCT db_id), MIN(db_id), MAX(db_id) FROM shards",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .map_err(read_err("shards"))?;
        let n = i64::from(build.num_dbs);
        if count > n {
            return Err(Error::manifest_parse(format!(
                "manifest has {count} shard rows but num_dbs is {n}"
            )));
        }
        if distinct != count {
            return Err(Error::manifest_parse("duplicate shard db_id in manifest"));
        }
        if let (Some(lo), Some(hi)) = (min, max)
            && (lo < 0 || hi >= n)
        {
            return Err(Error::manifest_parse(format!(
                "shard db_id outside [0, {n}) (min {lo}, max {hi})"
            )));
        }
        if let Some(values) = &build.sharding.routing_values
            && build.num_dbs as usize != values.len().max(1)
        {
            return Err(Error::manifest_parse(format!(
                "num_dbs is {} but routing_values has {} entries",
                build.num_dbs,
                values.len()
            )));
        }
        let shard_cols = Columns::of(&conn, "shards")?;
        Ok(LazyManifest {
            build,
            shard_cols,
            conn: Mutex::new(conn),
            cache: Mutex::new(Lru {
                map: HashMap::new(),
                order: VecDeque::new(),
            }),
        })
    }

    /// The build row.
    pub fn build(&self) -> &RequiredBuildMeta {
        &self.build
    }

    /// The row of `db_id`, or a synthesized empty shard when the manifest has none.
    pub fn get_shard(&self, db_id: u32) -> Result<RequiredShardMeta> {
        if db_id >= self.build.num_dbs {
            return Err(Error::config(format!(
                "db_id {db_id} is outside [0, {})",
                self.build.num_dbs
            )));
        }
        if let Some(hit) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map
            .get(&db_id)
        {
            return Ok(hit.clone());
        }
        let shard = {
            let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
            let mut stmt = conn
                .prepare_cached("SELECT * FROM shards WHERE db_id = ?1")
                .map_err(read_err("shards"))?;
            let mut rows = stmt.query([i64::from(db_id)]).map_err(read_err("shards"))?;
            match rows
                .next()
                .map_err(|e| Error::manifest_parse(format!("manifest: {e}")))?
            {
                Some(row) => read_shard_row(&self.shard_cols, row)?,
                None => RequiredShardMeta::empty(db_id),
            }
        };
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.map.len() >= LAZY_CACHE_ENTRIES
            && let Some(old) = cache.order.pop_front()
        {
            cache.map.remove(&old);
        }
        cache.order.push_back(db_id);
        cache.map.insert(db_id, shard.clone());
        Ok(shard)
    }
}
