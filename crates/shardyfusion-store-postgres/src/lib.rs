//! # shardyfusion-store-postgres
//!
//! [`PostgresManifestStore`]: the `ManifestStore` on PostgreSQL, with the schema of the
//! specification — `<table>_builds`, `<table>_shards` and an append-only pointer table — so a
//! Python reader configured for the same tables sees the same manifests. The ref of a manifest is
//! its `run_id`. `publish` runs in one transaction (build upsert, shard rows, pointer row);
//! `set_current` appends a pointer row after checking the build exists (rollback keeps history).
//!
//! The `postgres` driver is blocking, so every call runs on `tokio::task::spawn_blocking`, never
//! on an async worker. Connection and query failures are `ManifestStore` (retryable); the DSN's
//! password never appears in errors or `Debug`.
//!
//! Layering: depends on `shardyfusion-core` only.
//!
//! ```no_run
//! # async fn demo() -> shardyfusion_core::Result<()> {
//! use shardyfusion_core::ManifestStore;
//! use shardyfusion_store_postgres::{PostgresManifestStore, PostgresOptions};
//! let store = PostgresManifestStore::new("postgres://postgres@127.0.0.1:5432/postgres", PostgresOptions::default())?;
//! let current = store.load_current().await?;
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

mod store;

pub use store::{PostgresManifestStore, PostgresOptions};
