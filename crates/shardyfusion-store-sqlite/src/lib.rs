//! # shardyfusion-store-sqlite
//!
//! [`SqliteManifestStore`]: the `ManifestStore` in a local SQLite file, for users without a
//! database server. Same tables and semantics as the PostgreSQL store (`<table>_builds`,
//! `<table>_shards`, an append-only pointer table; the ref is the `run_id`), with `TIMESTAMPTZ`
//! stored as `YYYY-MM-DDTHH:MM:SS.ffffffZ` text (text order is time order), JSON as text in
//! Python's spaced style, and an `id INTEGER PRIMARY KEY AUTOINCREMENT` on the pointer table to
//! break ties. The file uses WAL journaling, a 10 s busy timeout and `BEGIN IMMEDIATE` for
//! writes, so several processes can share it. Calls run on `spawn_blocking`.
//!
//! The logic (create-only publish: a run id that already has a manifest is refused with
//! `ConfigValidation` "run id already published"; pointer rows appended in one `BEGIN IMMEDIATE`
//! transaction after the previous row; `set_current` validating the manifest in that
//! transaction) is `shardyfusion_core::sql_store`, shared with the PostgreSQL store; this crate
//! holds the SQLite dialect.
//!
//! Layering: depends on `shardyfusion-core` only.
//!
//! ```
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
//! use shardyfusion_core::{ManifestStore, NoopPublishObserver, RequiredBuildMeta};
//! use shardyfusion_store_sqlite::SqliteManifestStore;
//! let path = std::env::temp_dir().join(format!("sf-doc-{}.db", std::process::id()));
//! let store = SqliteManifestStore::new(&path);
//! store.publish(&RequiredBuildMeta::new("run1", 2, "file:///data/snap"), &[], &NoopPublishObserver).await?;
//! assert_eq!(store.load_current().await?.unwrap().run_id, "run1");
//! # std::fs::remove_file(&path).ok();
//! # Ok::<(), shardyfusion_core::Error>(())
//! # }).unwrap();
//! ```

#![deny(missing_docs)]

mod backend;
mod store;

pub use store::SqliteManifestStore;
