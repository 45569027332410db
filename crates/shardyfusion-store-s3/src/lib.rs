//! # shardyfusion-store-s3
//!
//! [`ObjectStoreManifestStore`]: the `ManifestStore` on any object store (S3, a local directory,
//! memory), with the exact key layout of the format. Publishing is two-phase: the manifest object
//! first, then the `_CURRENT` pointer. A failed manifest write is `PublishManifest` (nothing
//! became current); a pointer write that still fails after three retries is `PublishCurrent`,
//! carrying the manifest ref. `list_manifests` reads the `manifests/` directory (newest first);
//! `set_current` validates the manifest before moving the pointer (rollback).
//!
//! Also [`InMemoryManifestStore`], which keeps manifests in process memory through the real
//! SQLite encoding.
//!
//! Layering: depends on core, manifest and storage.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use shardyfusion_core::{ManifestStore, NoopPublishObserver, RequiredBuildMeta};
//! use shardyfusion_storage::StorageResolver;
//! use shardyfusion_store_s3::ObjectStoreManifestStore;
//!
//! let store = ObjectStoreManifestStore::new("memory://doc-example/snap", StorageResolver::default())?;
//! let r = store.publish(&RequiredBuildMeta::new("run1", 2, "memory://doc-example/snap"), &[], &NoopPublishObserver).await?;
//! assert_eq!(store.load_current().await?.unwrap().manifest_ref, r.manifest_ref);
//! # Ok::<(), shardyfusion_core::Error>(())
//! # }).unwrap();
//! ```

#![deny(missing_docs)]

mod memory;
mod object;
mod pointer;

pub use memory::InMemoryManifestStore;
pub use object::ObjectStoreManifestStore;
