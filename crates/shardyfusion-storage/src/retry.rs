//! Error classification (by error variant and status-derived variant, never by message text)
//! and the one retry layer of small-object operations (pointers, manifests, run records).
//!
//! Who retries what: a request to a cloud store (S3) is retried by `object_store`'s HTTP client,
//! which decides by status code (5xx, 429) and transport error kind; its errors are classified
//! here but never retried again. [`StorageRetry`] retries transient failures of stores without a
//! client of their own (local files, memory, and the fault-injecting test wrapper).

use std::future::Future;
use std::time::Duration;

use object_store::Error as OsError;
use object_store::client::{HttpError, HttpErrorKind};
use shardyfusion_core::{Error, ErrorKind, MetricEvent, MetricValue, MetricsCollector};

use crate::fault::InjectedFault;

/// How an object-store failure should be treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The object does not exist.
    NotFound,
    /// A conditional request lost (`If-Match` / `If-None-Match`: the object changed or exists).
    Conflict,
    /// The store refused the credentials (401/403): fix the configuration, do not retry.
    Denied,
    /// Worth retrying (throttling, 5xx, timeout, connection).
    Transient,
    /// Retrying will not help.
    Permanent,
}

/// Stores whose requests go through `object_store`'s HTTP client and its status-code retries.
const CLIENT_STORES: [&str; 4] = ["S3", "GCS", "MicrosoftAzure", "HTTP"];

/// Classify an `object_store` error (SPEC 12.3, 15.2): by variant, and for `Generic` errors by
/// the typed errors in the source chain (an injected fault, an HTTP transport error such as a
/// refused connection or a timeout, an I/O error). `object_store` maps 304, 401, 403, 404, 409
/// and 412 to their own variants; any other status error is permanent here (its client has
/// already retried 5xx and 429). Message text decides nothing.
pub fn classify(err: &OsError) -> ErrorClass {
    match err {
        OsError::NotFound { .. } => ErrorClass::NotFound,
        OsError::Precondition { .. } | OsError::AlreadyExists { .. } => ErrorClass::Conflict,
        OsError::PermissionDenied { .. } | OsError::Unauthenticated { .. } => ErrorClass::Denied,
        OsError::JoinError { .. } => ErrorClass::Transient,
        OsError::Generic { source, .. } => {
            let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(source.as_ref());
            while let Some(e) = cur {
                if let Some(f) = e.downcast_ref::<InjectedFault>() {
                    return if f.transient {
                        ErrorClass::Transient
                    } else {
                        ErrorClass::Permanent
                    };
                }
                if let Some(h) = e.downcast_ref::<HttpError>() {
                    return match h.kind() {
                        HttpErrorKind::Decode => ErrorClass::Permanent,
                        _ => ErrorClass::Transient,
                    };
                }
                if let Some(io) = e.downcast_ref::<std::io::Error>() {
                    return io_class(io.kind());
                }
                cur = e.source();
            }
            // A cloud store's status error that object_store did not map to a variant: the
            // client already retried 5xx and 429 by status; what is left (400, 405, 411, 416,
            // 501, or a 5xx that outlived those retries) is not worth another try here.
            ErrorClass::Permanent
        }
        _ => ErrorClass::Permanent,
    }
}

fn io_class(kind: std::io::ErrorKind) -> ErrorClass {
    use std::io::ErrorKind as K;
    match kind {
        K::NotFound => ErrorClass::NotFound,
        K::AlreadyExists => ErrorClass::Conflict,
        K::PermissionDenied => ErrorClass::Denied,
        K::TimedOut
        | K::Interrupted
        | K::WouldBlock
        | K::ConnectionReset
        | K::ConnectionRefused
        | K::ConnectionAborted
        | K::NotConnected
        | K::BrokenPipe => ErrorClass::Transient,
        _ => ErrorClass::Permanent,
    }
}

/// Whether `err` was raised by a store whose HTTP client already retried it (a cloud store's
/// own error, not one injected by a test wrapper around it).
fn retried_by_client(err: &OsError) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if e.downcast_ref::<InjectedFault>().is_some() {
            return false;
        }
        cur = e.source();
    }
    match err {
        OsError::Generic { store, .. } => CLIENT_STORES.contains(store),
        _ => false,
    }
}

/// Retry policy of small-object operations (on top of the S3 client's own HTTP retries).
#[derive(Debug, Clone, PartialEq)]
pub struct StorageRetry {
    /// Total attempts (≥ 1).
    pub max_attempts: u32,
    /// Sleep before the first retry; doubles each time.
    pub initial_backoff: Duration,
    /// Upper bound of one sleep.
    pub max_backoff: Duration,
}

impl Default for StorageRetry {
    fn default() -> Self {
        StorageRetry {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(4),
        }
    }
}

impl StorageRetry {
    /// No retries (for tests of failure paths).
    pub fn none() -> Self {
        StorageRetry {
            max_attempts: 1,
            ..StorageRetry::default()
        }
    }

    /// Quick retries (tests).
    pub fn fast(max_attempts: u32) -> Self {
        StorageRetry {
            max_attempts,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(5),
        }
    }

    fn backoff(&self, retry: u32) -> Duration {
        let f = 2f64.powi(i32::try_from(retry).unwrap_or(30).min(30));
        self.initial_backoff.mul_f64(f).min(self.max_backoff)
    }

    /// Run `op` until it succeeds, fails with a non-transient error, or attempts run out.
    /// Emits `s3.retry` before each retry and `s3.retry_exhausted` when giving up.
    pub async fn run<T, F, Fut>(
        &self,
        operation: &str,
        metrics: Option<&dyn MetricsCollector>,
        mut op: F,
    ) -> Result<T, RetryFailure>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, OsError>>,
    {
        let attempts = self.max_attempts.max(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) => {
                    let class = classify(&e);
                    if class != ErrorClass::Transient || retried_by_client(&e) {
                        return Err(RetryFailure {
                            class,
                            attempts: attempt,
                            error: e,
                        });
                    }
                    if attempt >= attempts {
                        if let Some(m) = metrics {
                            m.emit(
                                MetricEvent::S3RetryExhausted,
                                &[
                                    ("operation", MetricValue::Str(operation)),
                                    ("attempts", MetricValue::Int(i64::from(attempt))),
                                ],
                            );
                        }
                        return Err(RetryFailure {
                            class,
                            attempts: attempt,
                            error: e,
                        });
                    }
                    let backoff = self.backoff(attempt - 1);
                    tracing::debug!(operation, attempt, ?backoff, error = %e, "retrying a transient storage failure");
                    if let Some(m) = metrics {
                        m.emit(
                            MetricEvent::S3Retry,
                            &[
                                ("operation", MetricValue::Str(operation)),
                                ("attempt", MetricValue::Int(i64::from(attempt))),
                                ("backoff_s", MetricValue::Float(backoff.as_secs_f64())),
                            ],
                        );
                    }
                    tokio::time::sleep(backoff).await;
                }
            }
        }
    }
}

/// A failed retried operation.
#[derive(Debug)]
pub struct RetryFailure {
    /// Class of the last error.
    pub class: ErrorClass,
    /// Attempts made.
    pub attempts: u32,
    /// The last error.
    pub error: OsError,
}

impl RetryFailure {
    /// Convert to a shardyfusion error: transient failures that outlived the retries are
    /// `S3Transient`; refused credentials are `ConfigValidation` (not retryable: fix the
    /// credentials); everything else gets `kind`. The message names the operation and URL.
    pub fn into_error(self, kind: ErrorKind, what: &str) -> Error {
        let kind = match self.class {
            ErrorClass::Transient => ErrorKind::S3Transient,
            ErrorClass::Denied => ErrorKind::ConfigValidation,
            _ => kind,
        };
        let msg = match self.class {
            ErrorClass::Transient if self.attempts > 1 => format!(
                "{what} failed after {} attempts: {}",
                self.attempts, self.error
            ),
            ErrorClass::Denied => format!(
                "{what} was refused by the store: check the credentials (access key, secret, \
                 session token or role) and the bucket policy: {}",
                self.error
            ),
            _ => format!("{what} failed: {}", self.error),
        };
        Error::new(kind, msg).with_source(self.error)
    }
}
