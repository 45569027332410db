//! # shardyfusion-storage
//!
//! The one place that turns URLs into object stores: `s3://bucket/prefix` (AmazonS3 with the
//! credential provider and [`S3ConnectionOptions`](shardyfusion_core::S3ConnectionOptions)
//! mapped as the specification says), `file:///abs/dir` and plain paths (the local filesystem),
//! and `memory://name/prefix` (a process-global in-memory store). One store is built per bucket
//! and shared. Per-bucket overrides serve `s3://bucket/…` from another store, e.g. a local copy
//! of a snapshot.
//!
//! Also: [`classify`] and [`StorageRetry`] for small-object retries (emitting `s3.retry` and
//! `s3.retry_exhausted`), and two wrappers for tests and benchmarks: [`CountingStore`] and
//! [`FaultInjectingStore`].
//!
//! Layering: depends on `shardyfusion-core` only.
//!
//! ```
//! use shardyfusion_storage::StorageResolver;
//! let resolver = StorageResolver::default();
//! let loc = resolver.resolve("s3://bucket/datasets/features/").unwrap();
//! assert_eq!(loc.url, "s3://bucket/datasets/features");
//! assert_eq!(loc.child(&["_CURRENT"]).as_ref(), "datasets/features/_CURRENT");
//! ```

#![deny(missing_docs)]

mod credentials;
mod delete;
mod fault;
mod resolve;
mod retry;

pub use delete::{delete_objects, delete_prefix};
pub use fault::{
    CountingStore, FaultInjectingStore, FaultRule, Faults, Gate, GatedStore, InjectedFault, Op,
    RequestCounts,
};
pub use object_store;
pub use resolve::{
    StorageResolver, StorageResolverBuilder, StoreLocation, StoreWrapper, default_s3_retry,
    memory_store,
};
pub use retry::{ErrorClass, RetryFailure, StorageRetry, classify};
