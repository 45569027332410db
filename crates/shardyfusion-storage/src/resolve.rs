//! Turn prefix and shard URLs into an `object_store` plus a key path, with credentials and
//! connection options applied, one cached store per bucket.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey, S3ConditionalPut};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};
use shardyfusion_core::{
    AddressingStyle, CredentialProvider, EnvCredentialProvider, EnvLookup, Error, MetricsCollector,
    PrefixUrl, Result, S3ConnectionOptions, VerifySsl, process_env,
};

use crate::credentials::RefreshingCredentials;
use crate::retry::StorageRetry;

/// Environment variables of the default credential chain that the S3 client reads (through the
/// resolver's environment lookup, so tests can inject them).
const AMBIENT_CHAIN_VARS: [&str; 9] = [
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_ENDPOINT_URL_STS",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "AWS_METADATA_ENDPOINT",
    "AWS_IMDSV1_FALLBACK",
];

/// A function that wraps every store a resolver builds.
pub type StoreWrapper = Arc<dyn Fn(Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> + Send + Sync>;

/// A resolved location: the store that holds it, the key path inside the store, and the
/// canonical URL (`s3://bucket/key`, `file:///abs/dir`, `memory://name/key`).
#[derive(Clone)]
pub struct StoreLocation {
    /// The object store.
    pub store: Arc<dyn ObjectStore>,
    /// The key path of the location inside the store.
    pub path: Path,
    /// The canonical URL of the location (what manifests record).
    pub url: String,
}

impl fmt::Debug for StoreLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreLocation")
            .field("url", &self.url)
            .field("path", &self.path.as_ref())
            .finish()
    }
}

impl StoreLocation {
    /// The path of `parts` joined below this location (empty parts skipped, slashes trimmed).
    pub fn child(&self, parts: &[&str]) -> Path {
        let mut p = self.path.clone();
        for part in parts {
            for seg in part.split('/').filter(|s| !s.is_empty()) {
                p = p.join(seg);
            }
        }
        p
    }
}

/// The process-global in-memory store registered under `name` (created on first use).
pub fn memory_store(name: &str) -> Arc<dyn ObjectStore> {
    static STORES: OnceLock<Mutex<HashMap<String, Arc<InMemory>>>> = OnceLock::new();
    let mut map = STORES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    map.entry(name.to_owned())
        .or_insert_with(|| Arc::new(InMemory::new()))
        .clone()
}

/// Default storage retries of the S3 client (SPEC 12.2): 5 retries, 200 ms to 4 s, base 2,
/// 30 s overall.
pub fn default_s3_retry() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(4),
            base: 2.0,
        },
        max_retries: 5,
        retry_timeout: Duration::from_secs(30),
    }
}

/// How to reach object stores: credentials, S3 connection options, retries, metrics, and
/// per-bucket overrides. Cheap to clone; stores are built once per bucket and shared.
#[derive(Clone)]
pub struct StorageResolver {
    inner: Arc<Inner>,
}

struct Inner {
    credentials: Option<Arc<dyn CredentialProvider>>,
    s3: S3ConnectionOptions,
    env: EnvLookup,
    retry: StorageRetry,
    metrics: Option<Arc<dyn MetricsCollector>>,
    overrides: HashMap<String, Arc<dyn ObjectStore>>,
    wrap: Option<StoreWrapper>,
    cache: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
}

impl fmt::Debug for StorageResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StorageResolver")
            .field("credentials", &self.inner.credentials)
            .field("s3", &self.inner.s3)
            .field("retry", &self.inner.retry)
            .field(
                "overrides",
                &self.inner.overrides.keys().collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Default for StorageResolver {
    fn default() -> Self {
        StorageResolver::builder().build()
    }
}

/// Builder of [`StorageResolver`].
#[must_use]
pub struct StorageResolverBuilder {
    credentials: Option<Arc<dyn CredentialProvider>>,
    s3: S3ConnectionOptions,
    env: EnvLookup,
    retry: StorageRetry,
    metrics: Option<Arc<dyn MetricsCollector>>,
    overrides: HashMap<String, Arc<dyn ObjectStore>>,
    wrap: Option<StoreWrapper>,
}

impl StorageResolver {
    /// Start from the defaults: environment credentials, no connection options, SPEC retries.
    pub fn builder() -> StorageResolverBuilder {
        StorageResolverBuilder {
            credentials: None,
            s3: S3ConnectionOptions::default(),
            env: process_env(),
            retry: StorageRetry::default(),
            metrics: None,
            overrides: HashMap::new(),
            wrap: None,
        }
    }

    /// A builder holding this resolver's settings, to derive a variant (stores are built anew).
    pub fn to_builder(&self) -> StorageResolverBuilder {
        let i = &self.inner;
        StorageResolverBuilder {
            credentials: i.credentials.clone(),
            s3: i.s3.clone(),
            env: i.env.clone(),
            retry: i.retry.clone(),
            metrics: i.metrics.clone(),
            overrides: i.overrides.clone(),
            wrap: i.wrap.clone(),
        }
    }

    /// The small-object retry policy.
    pub fn retry(&self) -> &StorageRetry {
        &self.inner.retry
    }

    /// The metrics collector (for `s3.retry` events).
    pub fn metrics(&self) -> Option<&Arc<dyn MetricsCollector>> {
        self.inner.metrics.as_ref()
    }

    /// Resolve a prefix or shard URL (`s3://`, `file://`, `memory://`, or a filesystem path).
    ///
    /// ```
    /// use shardyfusion_storage::StorageResolver;
    /// let loc = StorageResolver::default().resolve("memory://docs/a/b/").unwrap();
    /// assert_eq!(loc.url, "memory://docs/a/b");
    /// assert_eq!(loc.path.as_ref(), "a/b");
    /// ```
    pub fn resolve(&self, url: &str) -> Result<StoreLocation> {
        let parsed = PrefixUrl::parse(url)?;
        let (cache_key, url, path) = match &parsed {
            PrefixUrl::S3 { bucket, key } => (
                format!("s3://{bucket}"),
                format!("s3://{bucket}/{key}"),
                key.clone(),
            ),
            PrefixUrl::Memory { name, key } => {
                let url = if key.is_empty() {
                    format!("memory://{name}")
                } else {
                    format!("memory://{name}/{key}")
                };
                (format!("memory://{name}"), url, key.clone())
            }
            PrefixUrl::File { path } => (
                "file://".to_owned(),
                format!("file://{path}"),
                path.trim_start_matches('/').to_owned(),
            ),
            PrefixUrl::LocalPath { path } => {
                let abs = absolutize(path)?;
                (
                    "file://".to_owned(),
                    format!("file://{abs}"),
                    abs.trim_start_matches('/').to_owned(),
                )
            }
        };
        let store = self.store_for(&cache_key, &parsed)?;
        Ok(StoreLocation {
            store,
            path: Path::from(path.as_str()),
            url,
        })
    }

    fn store_for(&self, cache_key: &str, parsed: &PrefixUrl) -> Result<Arc<dyn ObjectStore>> {
        let mut cache = self.inner.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = cache.get(cache_key) {
            return Ok(s.clone());
        }
        let override_key = match parsed {
            PrefixUrl::S3 { bucket, .. } => Some(bucket.as_str()),
            _ => None,
        };
        let base: Arc<dyn ObjectStore> = match (
            override_key.and_then(|b| self.inner.overrides.get(b)),
            parsed,
        ) {
            (Some(s), _) => s.clone(),
            (None, PrefixUrl::S3 { bucket, .. }) => Arc::new(self.build_s3(bucket)?),
            (None, PrefixUrl::Memory { name, .. }) => memory_store(name),
            (None, PrefixUrl::File { .. } | PrefixUrl::LocalPath { .. }) => {
                Arc::new(LocalFileSystem::new().with_automatic_cleanup(true))
            }
        };
        let store = match &self.inner.wrap {
            Some(wrap) => wrap(base),
            None => base,
        };
        cache.insert(cache_key.to_owned(), store.clone());
        Ok(store)
    }

    /// Credentials (SPEC 15.5): unsigned only when asked; an explicit provider, or static keys
    /// in the environment, through a provider asked again before expiry; otherwise
    /// `object_store`'s default chain (web identity, container, instance metadata), configured
    /// from the same environment lookup.
    fn with_credentials(
        &self,
        mut b: AmazonS3Builder,
        opts: &S3ConnectionOptions,
    ) -> Result<AmazonS3Builder> {
        if opts.anonymous {
            return Ok(b.with_skip_signature(true));
        }
        let env = &self.inner.env;
        let provider: Option<Arc<dyn CredentialProvider>> = match &self.inner.credentials {
            Some(p) => Some(p.clone()),
            None => {
                let from_env = EnvCredentialProvider::with_lookup(env.clone());
                from_env
                    .resolve()?
                    .is_some()
                    .then(|| Arc::new(from_env) as Arc<dyn CredentialProvider>)
            }
        };
        if let Some(p) = provider {
            return Ok(b.with_credentials(Arc::new(RefreshingCredentials::new(p))));
        }
        for name in AMBIENT_CHAIN_VARS {
            if let Some(v) = env(name).filter(|v| !v.is_empty())
                && let Ok(key) = name.to_ascii_lowercase().parse::<AmazonS3ConfigKey>()
            {
                b = b.with_config(key, v);
            }
        }
        Ok(b)
    }

    fn build_s3(&self, bucket: &str) -> Result<object_store::aws::AmazonS3> {
        let opts = self.inner.s3.clone().with_env_fallbacks(&self.inner.env);
        opts.validate()?;
        let mut client = ClientOptions::new();
        if let Some(t) = opts.connect_timeout {
            client = client.with_connect_timeout(t);
        }
        if let Some(t) = opts.read_timeout {
            client = client.with_timeout(t);
        }
        match &opts.verify_ssl {
            VerifySsl::Verify => {}
            VerifySsl::Skip => client = client.with_allow_invalid_certificates(true),
            VerifySsl::CaBundle(path) => {
                let pem = std::fs::read(path).map_err(|e| {
                    Error::config(format!("cannot read the CA bundle {}: {e}", path.display()))
                        .with_source(e)
                })?;
                let certs = object_store::Certificate::from_pem_bundle(&pem).map_err(|e| {
                    Error::config(format!(
                        "the CA bundle {} is not valid PEM: {e}",
                        path.display()
                    ))
                    .with_source(e)
                })?;
                for c in certs {
                    client = client.with_root_certificate(c);
                }
            }
        }
        let mut retry = default_s3_retry();
        if let Some(r) = opts.max_retries() {
            retry.max_retries = r as usize;
        }
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_region(
                opts.region_name
                    .clone()
                    .unwrap_or_else(|| "us-east-1".to_owned()),
            )
            .with_client_options(client)
            .with_retry(retry)
            .with_conditional_put(S3ConditionalPut::ETagMatch);
        if let Some(endpoint) = &opts.endpoint_url {
            b = b
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        match opts.addressing_style {
            AddressingStyle::Auto => {}
            AddressingStyle::Path => b = b.with_virtual_hosted_style_request(false),
            AddressingStyle::Virtual => b = b.with_virtual_hosted_style_request(true),
        }
        b = self.with_credentials(b, &opts)?;
        b.build().map_err(|e| {
            Error::config(format!("cannot configure S3 for bucket {bucket:?}: {e}")).with_source(e)
        })
    }
}

impl StorageResolverBuilder {
    /// Credentials for S3 (default: the environment provider).
    pub fn credential_provider(mut self, p: Arc<dyn CredentialProvider>) -> Self {
        self.credentials = Some(p);
        self
    }
    /// S3 connection options.
    pub fn s3_options(mut self, o: S3ConnectionOptions) -> Self {
        self.s3 = o;
        self
    }
    /// Environment lookup used for fallbacks (tests inject one).
    pub fn env(mut self, env: EnvLookup) -> Self {
        self.env = env;
        self
    }
    /// Small-object retry policy.
    pub fn retry(mut self, r: StorageRetry) -> Self {
        self.retry = r;
        self
    }
    /// Metrics collector for `s3.retry` / `s3.retry_exhausted`.
    pub fn metrics(mut self, m: Arc<dyn MetricsCollector>) -> Self {
        self.metrics = Some(m);
        self
    }
    /// Serve `s3://<bucket>/…` from `store` instead of S3 (e.g. a local copy of a snapshot).
    pub fn bucket_override(
        mut self,
        bucket: impl Into<String>,
        store: Arc<dyn ObjectStore>,
    ) -> Self {
        self.overrides.insert(bucket.into(), store);
        self
    }
    /// Wrap every store this resolver builds (request counting, fault injection).
    pub fn wrap_stores(
        mut self,
        wrap: impl Fn(Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> + Send + Sync + 'static,
    ) -> Self {
        self.wrap = Some(Arc::new(wrap));
        self
    }
    /// Count every request of every store this resolver builds into `counts` (one set of
    /// counters shared by all of them).
    pub fn count_requests(self, counts: Arc<crate::RequestCounts>) -> Self {
        self.wrap_stores(move |s| {
            Arc::new(crate::CountingStore::with_gate(s, counts.clone())) as Arc<dyn ObjectStore>
        })
    }
    /// Build the resolver.
    pub fn build(self) -> StorageResolver {
        StorageResolver {
            inner: Arc::new(Inner {
                credentials: self.credentials,
                s3: self.s3,
                env: self.env,
                retry: self.retry,
                metrics: self.metrics,
                overrides: self.overrides,
                wrap: self.wrap,
                cache: Mutex::new(HashMap::new()),
            }),
        }
    }
}

/// The absolute, `.`/`..`-normalized form of a filesystem path.
fn absolutize(path: &str) -> Result<String> {
    let p = std::path::Path::new(path);
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| {
                Error::config(format!("cannot resolve the relative path {path:?}: {e}"))
                    .with_source(e)
            })?
            .join(p)
    };
    let mut parts: Vec<String> = Vec::new();
    for c in joined.components() {
        match c {
            std::path::Component::Normal(s) => parts.push(
                s.to_str()
                    .ok_or_else(|| Error::config(format!("path {path:?} is not valid UTF-8")))?
                    .to_owned(),
            ),
            std::path::Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    if parts.is_empty() {
        return Err(Error::config(format!(
            "path {path:?} resolves to the filesystem root"
        )));
    }
    Ok(format!("/{}", parts.join("/")))
}
