//! Integration tests of shardyfusion-store-s3: the shared conformance suite on memory, a local
//! directory and a real S3-compatible server; the exact layout; publish failures.

#![allow(clippy::unwrap_used)]

mod cas;
mod conformance;
mod credentials;
mod publish;

use std::sync::Arc;
use std::time::Duration;

use shardyfusion_core::{S3ConnectionOptions, StaticCredentialProvider};
use shardyfusion_storage::{StorageResolver, StorageRetry};

pub(crate) use shardyfusion_store_conformance::{
    s3_test_identity, s3_test_server as s3_server, unique_name as unique,
};

/// A resolver that talks to the test S3 server with its identity.
pub(crate) fn s3_resolver(endpoint: &str) -> StorageResolver {
    let (id, secret) = s3_test_identity();
    s3_resolver_as(endpoint, &id, &secret)
}

/// A resolver that talks to the test S3 server with the given keys.
pub(crate) fn s3_resolver_as(endpoint: &str, id: &str, secret: &str) -> StorageResolver {
    StorageResolver::builder()
        .credential_provider(Arc::new(StaticCredentialProvider::new(id, secret, None)))
        .s3_options(
            S3ConnectionOptions::new()
                .with_endpoint_url(endpoint)
                .with_region("us-east-1"),
        )
        .retry(StorageRetry::fast(3))
        .build()
}

/// A resolver whose S3 endpoint refuses connections (nothing listens on port 9).
pub(crate) fn unreachable_resolver() -> StorageResolver {
    StorageResolver::builder()
        .credential_provider(Arc::new(StaticCredentialProvider::new(
            "test",
            "test-secret",
            None,
        )))
        .s3_options(
            S3ConnectionOptions::new()
                .with_endpoint_url("http://127.0.0.1:9")
                .with_max_attempts(1)
                .with_connect_timeout(Duration::from_millis(500)),
        )
        .retry(StorageRetry::fast(2))
        .build()
}
