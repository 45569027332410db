//! A manifest image (a SQLite database file) from storage: any bytes parse or fail with an
//! error, never a panic, and a parsed manifest's shard lookups stay in range.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = shardyfusion_manifest::parse_manifest(data) {
        for s in &m.shards {
            assert!(
                s.db_id < m.build.num_dbs,
                "shard {} outside num_dbs",
                s.db_id
            );
        }
    }
});
