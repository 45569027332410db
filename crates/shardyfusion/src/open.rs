//! Manifest stores named by data ([`ManifestStoreSpec`]): the one way the CLI and the Python
//! bindings turn a backend name and its settings into a store.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;
use shardyfusion_core::{CURRENT_POINTER_KEY, Error, ManifestStore, Result};
use shardyfusion_storage::StorageResolver;

/// Where a snapshot's manifests and `_CURRENT` pointer live.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "backend", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum ManifestStoreSpec {
    /// Objects under a prefix (`s3://`, `file://`, a path, `memory://`).
    ObjectStore {
        /// The prefix URL.
        prefix: String,
        /// The pointer object's name under the prefix (default `_CURRENT`).
        #[serde(default = "default_pointer_key")]
        pointer_key: String,
        /// Write the pointer with plain PUTs (servers without conditional writes).
        #[serde(default)]
        unconditional_pointer_writes: bool,
    },
    /// A PostgreSQL table (feature `postgres`).
    Postgres {
        /// Connection string (`postgres://…` or `key=value` form).
        dsn: String,
        /// Manifest table (default `shardyfusion_manifests`).
        #[serde(default)]
        table_name: Option<String>,
        /// Create the tables when missing (default true).
        #[serde(default)]
        ensure_table: Option<bool>,
    },
    /// A SQLite file (feature `sqlite`).
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// Manifest table (default `shardyfusion_manifests`).
        #[serde(default)]
        table_name: Option<String>,
    },
}

fn default_pointer_key() -> String {
    CURRENT_POINTER_KEY.to_owned()
}

#[allow(dead_code)]
fn not_built(feature: &str) -> Error {
    Error::config(format!(
        "this build of shardyfusion has no {feature} manifest store (cargo feature `{feature}`)"
    ))
}

impl ManifestStoreSpec {
    /// The object-store spec of `prefix` with its default pointer.
    pub fn object_store(prefix: impl Into<String>) -> Self {
        ManifestStoreSpec::ObjectStore {
            prefix: prefix.into(),
            pointer_key: default_pointer_key(),
            unconditional_pointer_writes: false,
        }
    }

    /// Open the store. `resolver` reaches object stores; manifest refs and `db_url`s outside
    /// the store's own bucket or directory are refused unless they start with one of
    /// `allowed_url_prefixes` (SPEC 15.3).
    pub fn open(
        &self,
        resolver: StorageResolver,
        allowed_url_prefixes: &[String],
    ) -> Result<Arc<dyn ManifestStore>> {
        let _ = (&resolver, allowed_url_prefixes);
        match self {
            #[cfg(feature = "s3")]
            ManifestStoreSpec::ObjectStore {
                prefix,
                pointer_key,
                unconditional_pointer_writes,
            } => Ok(Arc::new(
                shardyfusion_store_s3::ObjectStoreManifestStore::new(prefix, resolver)?
                    .with_pointer_key(pointer_key.clone())
                    .with_allowed_url_prefixes(allowed_url_prefixes)?
                    .with_unconditional_pointer_writes(*unconditional_pointer_writes),
            )),
            #[cfg(not(feature = "s3"))]
            ManifestStoreSpec::ObjectStore { .. } => Err(not_built("s3")),
            #[cfg(feature = "postgres")]
            ManifestStoreSpec::Postgres {
                dsn,
                table_name,
                ensure_table,
            } => {
                let mut opts = shardyfusion_store_postgres::PostgresOptions::default();
                if let Some(t) = table_name {
                    opts.table_name = t.clone();
                }
                if let Some(e) = ensure_table {
                    opts.ensure_table = *e;
                }
                opts.allowed_url_prefixes = allowed_url_prefixes.to_vec();
                Ok(Arc::new(
                    shardyfusion_store_postgres::PostgresManifestStore::new(dsn, opts)?,
                ))
            }
            #[cfg(not(feature = "postgres"))]
            ManifestStoreSpec::Postgres { .. } => Err(not_built("postgres")),
            #[cfg(feature = "sqlite")]
            ManifestStoreSpec::Sqlite { path, table_name } => {
                let mut store = shardyfusion_store_sqlite::SqliteManifestStore::new(path)
                    .with_allowed_url_prefixes(allowed_url_prefixes)?;
                if let Some(t) = table_name {
                    store = store.with_tables(t, "shardyfusion_pointer")?;
                }
                Ok(Arc::new(store))
            }
            #[cfg(not(feature = "sqlite"))]
            ManifestStoreSpec::Sqlite { .. } => Err(not_built("sqlite")),
        }
    }
}
