//! # shardyfusion-store-postgres
//!
//! [`PostgresManifestStore`]: the `ManifestStore` on PostgreSQL, with the schema of the
//! specification — `<table>_builds`, `<table>_shards` and an append-only pointer table — so a
//! Python reader configured for the same tables sees the same manifests. The ref of a manifest is
//! its `run_id`.
//!
//! The logic is `shardyfusion_core::sql_store`, shared with the SQLite store; this crate holds the
//! PostgreSQL dialect. A published manifest is never written again: publishing a run id that
//! already has a build row is `ConfigValidation` ("run id already published"). `publish` and
//! `set_current` each run in one transaction that takes a self-conflicting lock on the pointer
//! table (`SHARE ROW EXCLUSIVE`, which also conflicts with other writers' `INSERT`s, never with
//! readers), reads the previous pointer row and appends a newer one; `set_current` validates the
//! target manifest inside that transaction. Rollback keeps the history.
//!
//! The `postgres` driver is blocking, so every call — connecting, creating the tables, queries,
//! closing — runs on `tokio::task::spawn_blocking` (or a plain thread), never on an async worker.
//! Connection and query failures are `ManifestStore` (retryable); NULLs, wrong column types and
//! out-of-range integers are `ManifestParse` naming the column. Secrets in the DSN (URL userinfo,
//! `password`/`sslpassword` in URL query parameters or key/value pairs) never appear in errors or
//! `Debug`.
//!
//! ## Features
//!
//! * `tls` — TLS through rustls, chosen by the DSN's `sslmode`: `disable` is plain TCP; `prefer`
//!   (the default) encrypts when the server offers TLS, without verifying its certificate unless
//!   `PostgresOptions::tls_root_cert` is set (as libpq); `require` encrypts and always verifies
//!   the certificate and host name against the system roots plus `tls_root_cert`. Without the
//!   feature, `sslmode=require` is a `ConfigValidation` error saying to enable it.
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

mod backend;
mod dsn;
mod store;
mod tls;

pub use store::{PostgresManifestStore, PostgresOptions};
