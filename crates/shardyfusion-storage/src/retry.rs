//! Error classification and retries for small-object operations (pointers, manifests, run
//! records): throttling, 5xx, timeouts and connection errors are transient and retried; "not
//! found" is never retried; other failures are permanent.

use std::future::Future;
use std::time::Duration;

use object_store::Error as OsError;
use shardyfusion_core::{Error, ErrorKind, MetricEvent, MetricValue, MetricsCollector};

use crate::fault::InjectedFault;

/// How an object-store failure should be treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The object does not exist.
    NotFound,
    /// Worth retrying (throttling, 5xx, timeout, connection).
    Transient,
    /// Retrying will not help.
    Permanent,
}

/// Classify an `object_store` error (SPEC 12.3).
pub fn classify(err: &OsError) -> ErrorClass {
    match err {
        OsError::NotFound { .. } => ErrorClass::NotFound,
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
                if e.downcast_ref::<object_store::client::HttpError>()
                    .is_some()
                {
                    return ErrorClass::Transient;
                }
                let text = e.to_string();
                if text.contains("status code: 5")
                    || text.contains("429")
                    || text.contains("SlowDown")
                    || text.contains("timed out")
                    || text.contains("onnection")
                    || text.contains("retries, max_retries")
                {
                    return ErrorClass::Transient;
                }
                cur = e.source();
            }
            ErrorClass::Permanent
        }
        OsError::JoinError { .. } => ErrorClass::Transient,
        _ => ErrorClass::Permanent,
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
                    if class != ErrorClass::Transient {
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
    /// `S3Transient`; everything else gets `kind`. The message names the operation and URL.
    pub fn into_error(self, kind: ErrorKind, what: &str) -> Error {
        let kind = if self.class == ErrorClass::Transient {
            ErrorKind::S3Transient
        } else {
            kind
        };
        let msg = match self.class {
            ErrorClass::Transient => format!(
                "{what} failed after {} attempts: {}",
                self.attempts, self.error
            ),
            _ => format!("{what} failed: {}", self.error),
        };
        Error::new(kind, msg).with_source(self.error)
    }
}
