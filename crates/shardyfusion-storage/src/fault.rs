//! Test utilities: a request-counting wrapper and a fault-injecting wrapper around any
//! `ObjectStore`. Both forward every trait method, so the wrapped store keeps its behaviour.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result, UploadPart,
};

/// The kind of request, for counting and for targeting faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `get_opts` without `head`, and `get_ranges`.
    Get,
    /// `get_opts` with `head`.
    Head,
    /// `put_opts`, and each multipart part/complete.
    Put,
    /// `list`, `list_with_offset`, `list_with_delimiter`.
    List,
    /// `delete_stream` (per path).
    Delete,
    /// `copy_opts`, `rename_opts`.
    Copy,
}

const OPS: [Op; 6] = [Op::Get, Op::Head, Op::Put, Op::List, Op::Delete, Op::Copy];

fn op_index(op: Op) -> usize {
    OPS.iter().position(|o| *o == op).unwrap_or(0)
}

/// The error source of an injected fault; [`crate::classify`] reads `transient` from it.
#[derive(Debug, Clone)]
pub struct InjectedFault {
    /// Whether the fault looks transient (503-like) or permanent (403-like).
    pub transient: bool,
    /// What was hit.
    pub what: String,
}

impl fmt::Display for InjectedFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.transient {
            "transient (503)"
        } else {
            "permanent (403)"
        };
        write!(f, "injected {kind} fault on {}", self.what)
    }
}

impl std::error::Error for InjectedFault {}

/// One fault rule: requests of `op` (any op when `None`) whose path contains `path_contains`
/// fail, `times` times (forever when `None`), after skipping the first `skip` matches.
#[derive(Debug, Clone)]
pub struct FaultRule {
    /// Request kind to hit.
    pub op: Option<Op>,
    /// Path substring to hit (empty = every path).
    pub path_contains: String,
    /// Matching requests to let through first.
    pub skip: u64,
    /// How many to fail (`None` = all).
    pub times: Option<u64>,
    /// Transient or permanent.
    pub transient: bool,
    seen: u64,
}

impl FaultRule {
    /// Fail every request of `op` whose path contains `path_contains`.
    pub fn new(op: Option<Op>, path_contains: impl Into<String>, transient: bool) -> Self {
        FaultRule {
            op,
            path_contains: path_contains.into(),
            skip: 0,
            times: None,
            transient,
            seen: 0,
        }
    }

    /// Only fail `n` matching requests.
    #[must_use]
    pub fn times(mut self, n: u64) -> Self {
        self.times = Some(n);
        self
    }

    /// Let the first `n` matching requests through.
    #[must_use]
    pub fn skip(mut self, n: u64) -> Self {
        self.skip = n;
        self
    }
}

#[derive(Debug, Default)]
struct FaultState {
    rules: Vec<FaultRule>,
    rate: f64,
    transient_rate: bool,
    rng: u64,
    injected: u64,
}

/// A hook run before every request of a [`GatedStore`]; an error fails the request.
pub trait Gate: Send + Sync + fmt::Debug + 'static {
    /// Called before forwarding a request of kind `op` on `path`.
    fn before(&self, op: Op, path: &str) -> Result<()>;
}

/// A store wrapper that runs a [`Gate`] before forwarding each request to the inner store.
/// Every `ObjectStore` method is forwarded, so the inner store keeps its behaviour.
pub struct GatedStore<G: Gate> {
    inner: Arc<dyn ObjectStore>,
    gate: Arc<G>,
}

impl<G: Gate> GatedStore<G> {
    /// Wrap `inner` behind an existing gate (several stores may share one).
    pub fn with_gate(inner: Arc<dyn ObjectStore>, gate: Arc<G>) -> Self {
        GatedStore { inner, gate }
    }

    /// The gate (counters or fault plan), shareable.
    pub fn gate(&self) -> Arc<G> {
        self.gate.clone()
    }
}

impl<G: Gate> fmt::Debug for GatedStore<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GatedStore({:?}, {})", self.gate, self.inner)
    }
}

impl<G: Gate> fmt::Display for GatedStore<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Fault plan of a [`FaultInjectingStore`]: rules plus an optional random failure rate.
#[derive(Debug, Default)]
pub struct Faults {
    state: Mutex<FaultState>,
}

/// Wraps a store and fails chosen or random requests.
///
/// ```
/// use std::sync::Arc;
/// use object_store::memory::InMemory;
/// use shardyfusion_storage::{FaultInjectingStore, FaultRule, Op};
/// let store = FaultInjectingStore::wrap(Arc::new(InMemory::new()));
/// store.gate().add_rule(FaultRule::new(Some(Op::Put), "_CURRENT", false));
/// store.gate().set_random_failures(0.1, true, 42);
/// ```
pub type FaultInjectingStore = GatedStore<Faults>;

/// Wraps a store and counts requests by kind.
pub type CountingStore = GatedStore<RequestCounts>;

impl GatedStore<Faults> {
    /// Wrap `inner` with no faults configured.
    pub fn wrap(inner: Arc<dyn ObjectStore>) -> Self {
        let faults = Faults {
            state: Mutex::new(FaultState {
                rng: 0x9e37_79b9_7f4a_7c15,
                ..Default::default()
            }),
        };
        GatedStore {
            inner,
            gate: Arc::new(faults),
        }
    }
}

impl GatedStore<RequestCounts> {
    /// Wrap `inner` with zeroed counters.
    pub fn wrap(inner: Arc<dyn ObjectStore>) -> Self {
        GatedStore {
            inner,
            gate: Arc::default(),
        }
    }
}

impl Faults {
    fn lock(&self) -> std::sync::MutexGuard<'_, FaultState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Add a rule.
    pub fn add_rule(&self, rule: FaultRule) {
        self.lock().rules.push(rule);
    }

    /// Fail a fraction `rate` of all requests, deterministically from `seed`.
    pub fn set_random_failures(&self, rate: f64, transient: bool, seed: u64) {
        let mut s = self.lock();
        s.rate = rate;
        s.transient_rate = transient;
        s.rng = seed | 1;
    }

    /// Remove every rule and the random rate.
    pub fn clear(&self) {
        let mut s = self.lock();
        s.rules.clear();
        s.rate = 0.0;
    }

    /// How many faults were injected so far.
    pub fn injected(&self) -> u64 {
        self.lock().injected
    }
}

impl Gate for Faults {
    fn before(&self, op: Op, path: &str) -> Result<()> {
        let mut s = self.lock();
        let mut fault = None;
        for r in s.rules.iter_mut() {
            if r.op.is_some_and(|o| o != op) || !path.contains(&r.path_contains) {
                continue;
            }
            r.seen += 1;
            if r.seen <= r.skip || r.times.is_some_and(|t| r.seen - r.skip > t) {
                continue;
            }
            fault = Some(r.transient);
            break;
        }
        if fault.is_none() && s.rate > 0.0 {
            // xorshift64: deterministic for a seed.
            s.rng ^= s.rng << 13;
            s.rng ^= s.rng >> 7;
            s.rng ^= s.rng << 17;
            if (s.rng >> 11) as f64 / (1u64 << 53) as f64 <= s.rate {
                fault = Some(s.transient_rate);
            }
        }
        match fault {
            None => Ok(()),
            Some(transient) => {
                s.injected += 1;
                Err(object_store::Error::Generic {
                    store: "FaultInjection",
                    source: Box::new(InjectedFault {
                        transient,
                        what: format!("{op:?} {path}"),
                    }),
                })
            }
        }
    }
}

/// Per-op request counters.
#[derive(Debug, Default)]
pub struct RequestCounts {
    counts: [AtomicU64; 6],
}

impl RequestCounts {
    /// Requests of `op` so far.
    pub fn get(&self, op: Op) -> u64 {
        self.counts[op_index(op)].load(Ordering::Relaxed)
    }

    /// All requests so far.
    pub fn total(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// Reset every counter to zero.
    pub fn reset(&self) {
        for c in &self.counts {
            c.store(0, Ordering::Relaxed);
        }
    }
}

impl Gate for RequestCounts {
    fn before(&self, op: Op, _path: &str) -> Result<()> {
        self.counts[op_index(op)].fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// A multipart upload whose parts and completion pass the gate.
struct GatedUpload {
    inner: Box<dyn MultipartUpload>,
    gate: Arc<dyn Gate>,
    path: String,
}

impl fmt::Debug for GatedUpload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GatedUpload({})", self.path)
    }
}

#[async_trait]
impl MultipartUpload for GatedUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        match self.gate.before(Op::Put, &self.path) {
            Ok(()) => self.inner.put_part(data),
            Err(e) => Box::pin(futures::future::ready(Err(e))),
        }
    }
    async fn complete(&mut self) -> Result<PutResult> {
        self.gate.before(Op::Put, &self.path)?;
        self.inner.complete().await
    }
    async fn abort(&mut self) -> Result<()> {
        self.inner.abort().await
    }
}

fn failed_stream<T: Send + 'static>(e: object_store::Error) -> BoxStream<'static, Result<T>> {
    futures::stream::once(futures::future::ready(Err(e))).boxed()
}

#[async_trait]
impl<G: Gate> ObjectStore for GatedStore<G> {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.gate.before(Op::Put, location.as_ref())?;
        self.inner.put_opts(location, payload, opts).await
    }
    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.gate.before(Op::Put, location.as_ref())?;
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        let gate: Arc<dyn Gate> = self.gate.clone();
        Ok(Box::new(GatedUpload {
            inner,
            gate,
            path: location.to_string(),
        }))
    }
    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let op = if options.head { Op::Head } else { Op::Get };
        self.gate.before(op, location.as_ref())?;
        self.inner.get_opts(location, options).await
    }
    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.gate.before(Op::Get, location.as_ref())?;
        self.inner.get_ranges(location, ranges).await
    }
    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let gate = self.gate.clone();
        let checked = locations
            .map(move |p| p.and_then(|p| gate.before(Op::Delete, p.as_ref()).map(|()| p)))
            .boxed();
        self.inner.delete_stream(checked)
    }
    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        match self
            .gate
            .before(Op::List, prefix.map(|p| p.as_ref()).unwrap_or(""))
        {
            Ok(()) => self.inner.list(prefix),
            Err(e) => failed_stream(e),
        }
    }
    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        match self
            .gate
            .before(Op::List, prefix.map(|p| p.as_ref()).unwrap_or(""))
        {
            Ok(()) => self.inner.list_with_offset(prefix, offset),
            Err(e) => failed_stream(e),
        }
    }
    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.gate
            .before(Op::List, prefix.map(|p| p.as_ref()).unwrap_or(""))?;
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.gate.before(Op::Copy, from.as_ref())?;
        self.inner.copy_opts(from, to, options).await
    }
    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.gate.before(Op::Copy, from.as_ref())?;
        self.inner.rename_opts(from, to, options).await
    }
}
