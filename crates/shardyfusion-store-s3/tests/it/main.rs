//! Integration tests of shardyfusion-store-s3: the shared conformance suite on memory, a local
//! directory and a real S3-compatible server; the exact layout; publish failures.

#![allow(clippy::unwrap_used)]

mod conformance;
mod publish;

use std::sync::Arc;
use std::time::Duration;

use shardyfusion_core::{S3ConnectionOptions, StaticCredentialProvider};
use shardyfusion_storage::{StorageResolver, StorageRetry};

/// The S3-compatible test server from `cargo xtask it`: (endpoint, bucket). Under `CI=true` or
/// `SHARDYFUSION_IT=1` a missing server fails the test; otherwise S3 tests are reported as not
/// run and return.
pub(crate) fn s3_server() -> Option<(String, String)> {
    let endpoint = std::env::var("SHARDYFUSION_S3_ENDPOINT")
        .ok()
        .filter(|s| !s.is_empty());
    let bucket =
        std::env::var("SHARDYFUSION_S3_BUCKET").unwrap_or_else(|_| "shardyfusion-it".to_owned());
    match endpoint {
        Some(e) => Some((e, bucket)),
        None => {
            let required = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
                || std::env::var("SHARDYFUSION_IT").is_ok_and(|v| v == "1");
            assert!(
                !required,
                "SHARDYFUSION_S3_ENDPOINT is not set: run the tests through `cargo xtask it`"
            );
            eprintln!(
                "S3 server not configured (SHARDYFUSION_S3_ENDPOINT); S3 checks not run. Use `cargo xtask it`."
            );
            None
        }
    }
}

/// A resolver that talks to the test S3 server.
pub(crate) fn s3_resolver(endpoint: &str) -> StorageResolver {
    StorageResolver::builder()
        .credential_provider(Arc::new(StaticCredentialProvider::new(
            "test",
            "test-secret",
            None,
        )))
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

pub(crate) fn unique(name: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{name}-{}-{}-{}",
        std::process::id(),
        shardyfusion_core::Timestamp::now().unix_micros(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}
