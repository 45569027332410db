//! Metric events: stable names, their payload fields, and the collector trait.
//!
//! Collectors are called synchronously on the hot path with a borrowed payload, so emitting
//! costs no allocation. A collector MUST ignore events and payload fields it does not know:
//! [`MetricEvent`] is `#[non_exhaustive]` and new fields may be added to any event.
//!
//! ```
//! use shardyfusion_core::metrics::{MetricEvent, MetricValue, MetricsCollector, RecordingCollector};
//! let rec = RecordingCollector::default();
//! rec.emit(MetricEvent::ReaderGet, &[("duration_ms", MetricValue::Int(3)), ("found", MetricValue::Bool(true))]);
//! assert_eq!(rec.count(MetricEvent::ReaderGet), 1);
//! ```

use std::fmt;
use std::sync::Mutex;

/// Every metric event the library emits. Names are a stable contract.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricEvent {
    /// `write.started`
    WriteStarted,
    /// `write.sharding_completed`
    WriteShardingCompleted,
    /// `write.shard.started`
    WriteShardStarted,
    /// `write.shard.completed`
    WriteShardCompleted,
    /// `write.shards_completed`
    WriteShardsCompleted,
    /// `write.batch_written`
    WriteBatchWritten,
    /// `write.manifest_published`
    WriteManifestPublished,
    /// `write.current_published`
    WriteCurrentPublished,
    /// `write.completed`
    WriteCompleted,
    /// `write.shard.retried`
    WriteShardRetried,
    /// `write.shard.retry_exhausted`
    WriteShardRetryExhausted,
    /// `reader.initialized`
    ReaderInitialized,
    /// `reader.get`
    ReaderGet,
    /// `reader.multi_get`
    ReaderMultiGet,
    /// `reader.refreshed`
    ReaderRefreshed,
    /// `reader.closed`
    ReaderClosed,
    /// `s3.retry`
    S3Retry,
    /// `s3.retry_exhausted`
    S3RetryExhausted,
    /// `rate_limiter.throttled`
    RateLimiterThrottled,
    /// `rate_limiter.denied`
    RateLimiterDenied,
}

impl MetricEvent {
    /// Every event, in the order of the specification's table.
    pub const ALL: &'static [MetricEvent] = &[
        MetricEvent::WriteStarted,
        MetricEvent::WriteShardingCompleted,
        MetricEvent::WriteShardStarted,
        MetricEvent::WriteShardCompleted,
        MetricEvent::WriteShardsCompleted,
        MetricEvent::WriteBatchWritten,
        MetricEvent::WriteManifestPublished,
        MetricEvent::WriteCurrentPublished,
        MetricEvent::WriteCompleted,
        MetricEvent::WriteShardRetried,
        MetricEvent::WriteShardRetryExhausted,
        MetricEvent::ReaderInitialized,
        MetricEvent::ReaderGet,
        MetricEvent::ReaderMultiGet,
        MetricEvent::ReaderRefreshed,
        MetricEvent::ReaderClosed,
        MetricEvent::S3Retry,
        MetricEvent::S3RetryExhausted,
        MetricEvent::RateLimiterThrottled,
        MetricEvent::RateLimiterDenied,
    ];

    /// The stable event name, e.g. `write.shard.completed`.
    pub const fn name(self) -> &'static str {
        self.info().0
    }

    /// The payload fields the event always carries (more may be added).
    pub const fn fields(self) -> &'static [&'static str] {
        self.info().1
    }

    /// When the event is emitted.
    pub const fn emitted_when(self) -> &'static str {
        self.info().2
    }

    const fn info(self) -> (&'static str, &'static [&'static str], &'static str) {
        use MetricEvent::*;
        match self {
            WriteStarted => (
                "write.started",
                &["elapsed_ms"],
                "a write starts (`elapsed_ms` is 0)",
            ),
            WriteShardingCompleted => (
                "write.sharding_completed",
                &["elapsed_ms", "duration_ms"],
                "after a separate routing phase",
            ),
            WriteShardStarted => (
                "write.shard.started",
                &["elapsed_ms", "db_id"],
                "a shard attempt starts",
            ),
            WriteShardCompleted => (
                "write.shard.completed",
                &["elapsed_ms", "duration_ms", "row_count", "db_id"],
                "a shard attempt succeeds",
            ),
            WriteShardsCompleted => (
                "write.shards_completed",
                &["elapsed_ms", "duration_ms", "rows_written"],
                "all shards are written",
            ),
            WriteBatchWritten => (
                "write.batch_written",
                &["elapsed_ms", "batch_size"],
                "each adapter batch, in every mode",
            ),
            WriteManifestPublished => (
                "write.manifest_published",
                &["elapsed_ms"],
                "the manifest is durable",
            ),
            WriteCurrentPublished => (
                "write.current_published",
                &["elapsed_ms", "manifest_ref"],
                "the `_CURRENT` pointer is durable",
            ),
            WriteCompleted => (
                "write.completed",
                &["elapsed_ms", "rows_written"],
                "a write succeeds",
            ),
            WriteShardRetried => (
                "write.shard.retried",
                &["elapsed_ms", "db_id", "attempt", "backoff_s"],
                "a failed shard attempt is retried (`attempt` is the failed one)",
            ),
            WriteShardRetryExhausted => (
                "write.shard.retry_exhausted",
                &["elapsed_ms", "db_id", "attempts"],
                "a shard gives up after at least one retry",
            ),
            ReaderInitialized => (
                "reader.initialized",
                &[],
                "a reader opened its first snapshot",
            ),
            ReaderGet => ("reader.get", &["duration_ms", "found"], "each `get`"),
            ReaderMultiGet => (
                "reader.multi_get",
                &["duration_ms", "num_keys"],
                "each `multi_get`",
            ),
            ReaderRefreshed => ("reader.refreshed", &["changed"], "each `refresh`"),
            ReaderClosed => ("reader.closed", &["num_handles"], "a reader is closed"),
            S3Retry => (
                "s3.retry",
                &["operation", "attempt", "backoff_s"],
                "a storage operation is retried",
            ),
            S3RetryExhausted => (
                "s3.retry_exhausted",
                &["operation", "attempts"],
                "storage retries are exhausted",
            ),
            RateLimiterThrottled => (
                "rate_limiter.throttled",
                &["wait_seconds", "limiter_type"],
                "a blocking `acquire` waited",
            ),
            RateLimiterDenied => (
                "rate_limiter.denied",
                &["deficit_seconds", "limiter_type"],
                "`try_acquire` was denied",
            ),
        }
    }

    /// Look an event up by its stable name.
    pub fn from_name(name: &str) -> Option<MetricEvent> {
        MetricEvent::ALL.iter().copied().find(|e| e.name() == name)
    }
}

impl fmt::Display for MetricEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One payload value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MetricValue<'a> {
    /// An integer (counts, ids, milliseconds).
    Int(i64),
    /// A float (seconds).
    Float(f64),
    /// A flag.
    Bool(bool),
    /// A string (operation names, refs, limiter types).
    Str(&'a str),
}

impl MetricValue<'_> {
    /// The value as a float, for numeric collectors (`true` = 1).
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            MetricValue::Int(i) => Some(i as f64),
            MetricValue::Float(f) => Some(f),
            MetricValue::Bool(b) => Some(if b { 1.0 } else { 0.0 }),
            MetricValue::Str(_) => None,
        }
    }
}

/// A payload: named fields borrowed for the duration of the call.
pub type Payload<'a> = [(&'static str, MetricValue<'a>)];

/// Receives metric events. Implementations must be cheap and thread-safe, must not block, and
/// must ignore unknown events and fields.
pub trait MetricsCollector: Send + Sync {
    /// Record one event.
    fn emit(&self, event: MetricEvent, payload: &Payload<'_>);
}

/// An owned copy of a payload value, kept by [`RecordingCollector`].
#[derive(Debug, Clone, PartialEq)]
pub enum OwnedMetricValue {
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A flag.
    Bool(bool),
    /// A string.
    Str(String),
}

impl From<MetricValue<'_>> for OwnedMetricValue {
    fn from(v: MetricValue<'_>) -> Self {
        match v {
            MetricValue::Int(i) => OwnedMetricValue::Int(i),
            MetricValue::Float(f) => OwnedMetricValue::Float(f),
            MetricValue::Bool(b) => OwnedMetricValue::Bool(b),
            MetricValue::Str(s) => OwnedMetricValue::Str(s.to_owned()),
        }
    }
}

/// One recorded event.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    /// The event.
    pub event: MetricEvent,
    /// Its payload, in emission order.
    pub fields: Vec<(&'static str, OwnedMetricValue)>,
}

impl RecordedEvent {
    /// The value of one field.
    pub fn field(&self, name: &str) -> Option<&OwnedMetricValue> {
        self.fields.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }
}

/// A collector that keeps every event in memory (for tests and debugging).
#[derive(Debug, Default)]
pub struct RecordingCollector {
    events: Mutex<Vec<RecordedEvent>>,
}

impl RecordingCollector {
    /// Every event so far.
    pub fn events(&self) -> Vec<RecordedEvent> {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// How many times `event` was emitted.
    pub fn count(&self, event: MetricEvent) -> usize {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|e| e.event == event)
            .count()
    }
}

impl MetricsCollector for RecordingCollector {
    fn emit(&self, event: MetricEvent, payload: &Payload<'_>) {
        let fields = payload
            .iter()
            .map(|(n, v)| (*n, OwnedMetricValue::from(*v)))
            .collect();
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(RecordedEvent { event, fields });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_spec_contract() {
        let names: Vec<_> = MetricEvent::ALL.iter().map(|e| e.name()).collect();
        assert_eq!(
            names,
            [
                "write.started",
                "write.sharding_completed",
                "write.shard.started",
                "write.shard.completed",
                "write.shards_completed",
                "write.batch_written",
                "write.manifest_published",
                "write.current_published",
                "write.completed",
                "write.shard.retried",
                "write.shard.retry_exhausted",
                "reader.initialized",
                "reader.get",
                "reader.multi_get",
                "reader.refreshed",
                "reader.closed",
                "s3.retry",
                "s3.retry_exhausted",
                "rate_limiter.throttled",
                "rate_limiter.denied",
            ]
        );
        for e in MetricEvent::ALL {
            assert_eq!(MetricEvent::from_name(e.name()), Some(*e));
        }
        assert_eq!(MetricEvent::from_name("write.nope"), None);
    }

    #[test]
    fn collector_is_shareable_across_threads() {
        let rec = std::sync::Arc::new(RecordingCollector::default());
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let rec = rec.clone();
                std::thread::spawn(move || {
                    rec.emit(
                        MetricEvent::S3Retry,
                        &[
                            ("operation", MetricValue::Str("get")),
                            ("attempt", MetricValue::Int(i)),
                        ],
                    );
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(rec.count(MetricEvent::S3Retry), 4);
        let ev = &rec.events()[0];
        assert_eq!(
            ev.field("operation"),
            Some(&OwnedMetricValue::Str("get".into()))
        );
        assert_eq!(ev.field("missing"), None);
        assert_eq!(MetricValue::Bool(true).as_f64(), Some(1.0));
    }
}
