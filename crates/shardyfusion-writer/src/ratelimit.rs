//! Token-bucket rate limiting of shard writes (rows/s and bytes/s).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use shardyfusion_core::{MetricEvent, MetricValue, MetricsCollector};

/// What a bucket limits (the `limiter_type` of its metric events).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimiterType {
    /// Rows per second.
    Ops,
    /// Key + value bytes per second.
    Bytes,
}

impl LimiterType {
    fn as_str(self) -> &'static str {
        match self {
            LimiterType::Ops => "ops",
            LimiterType::Bytes => "bytes",
        }
    }
}

/// A thread-safe token bucket: capacity = `rate`, starts full, refills continuously.
///
/// A request larger than the capacity is granted once the bucket is full, and the balance goes
/// negative, so the long-run rate holds and no request waits forever. Waiting happens outside the
/// lock, with a timer.
pub struct TokenBucket {
    rate: f64,
    kind: LimiterType,
    state: Mutex<(f64, Instant)>,
    metrics: Option<Arc<dyn MetricsCollector>>,
}

impl std::fmt::Debug for TokenBucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenBucket")
            .field("rate", &self.rate)
            .field("kind", &self.kind)
            .finish()
    }
}

impl TokenBucket {
    /// A full bucket of `rate` tokens refilling at `rate` per second (`rate` > 0).
    pub fn new(rate: f64, kind: LimiterType, metrics: Option<Arc<dyn MetricsCollector>>) -> Self {
        TokenBucket {
            rate,
            kind,
            state: Mutex::new((rate, Instant::now())),
            metrics,
        }
    }

    fn refill(&self, s: &mut (f64, Instant)) {
        let now = Instant::now();
        s.0 = (s.0 + now.duration_since(s.1).as_secs_f64() * self.rate).min(self.rate);
        s.1 = now;
    }

    /// Take `n` tokens now or report how long until they would be available.
    fn take_or_wait(&self, n: f64) -> Option<Duration> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        self.refill(&mut s);
        let need = n.min(self.rate);
        if s.0 >= need {
            s.0 -= n;
            None
        } else {
            Some(Duration::from_secs_f64((need - s.0) / self.rate))
        }
    }

    /// Wait until `n` tokens are granted. Emits `rate_limiter.throttled` when it waited.
    pub async fn acquire(&self, n: f64) {
        let mut waited = Duration::ZERO;
        while let Some(wait) = self.take_or_wait(n) {
            tokio::time::sleep(wait).await;
            waited += wait;
        }
        if waited > Duration::ZERO
            && let Some(m) = &self.metrics
        {
            m.emit(
                MetricEvent::RateLimiterThrottled,
                &[
                    ("wait_seconds", MetricValue::Float(waited.as_secs_f64())),
                    ("limiter_type", MetricValue::Str(self.kind.as_str())),
                ],
            );
        }
    }

    /// Take `n` tokens if available now; otherwise return the seconds of deficit and emit
    /// `rate_limiter.denied`.
    pub fn try_acquire(&self, n: f64) -> Result<(), f64> {
        match self.take_or_wait(n) {
            None => Ok(()),
            Some(wait) => {
                let deficit = wait.as_secs_f64();
                if let Some(m) = &self.metrics {
                    m.emit(
                        MetricEvent::RateLimiterDenied,
                        &[
                            ("deficit_seconds", MetricValue::Float(deficit)),
                            ("limiter_type", MetricValue::Str(self.kind.as_str())),
                        ],
                    );
                }
                Err(deficit)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardyfusion_core::metrics::RecordingCollector;

    #[tokio::test(start_paused = true)]
    async fn oversized_requests_complete_and_keep_the_long_run_rate() {
        let rec = Arc::new(RecordingCollector::default());
        let b = TokenBucket::new(100.0, LimiterType::Ops, Some(rec.clone()));
        let start = tokio::time::Instant::now();
        b.acquire(250.0).await; // more than a second's worth: granted at once (bucket full), balance -150
        b.acquire(100.0).await; // must wait for the deficit plus 100 tokens: 2.5 s
        let elapsed = start.elapsed().as_secs_f64();
        assert!((2.4..=2.7).contains(&elapsed), "{elapsed}");
        assert_eq!(rec.count(MetricEvent::RateLimiterThrottled), 1);
        assert!(b.try_acquire(50.0).is_err());
        assert_eq!(rec.count(MetricEvent::RateLimiterDenied), 1);
    }
}
