//! [`ObjectStoreManifestStore`]: manifests and the `_CURRENT` pointer as objects under a prefix.

use std::time::Duration;

use async_trait::async_trait;
use shardyfusion_core::{
    CURRENT_POINTER_KEY, CurrentPointer, Error, ErrorKind, MANIFEST_CONTENT_TYPE, ManifestRef,
    ManifestStore, ParsedManifest, PublishObserver, RequiredBuildMeta, RequiredShardMeta, Result,
    Timestamp, url_join,
};
use shardyfusion_manifest::{build_manifest, parse_manifest, pointer_from_json, pointer_to_json};
use shardyfusion_storage::object_store::path::Path;
use shardyfusion_storage::object_store::{
    Attribute, Attributes, ObjectStoreExt, PutMode, PutOptions, PutPayload,
};
use shardyfusion_storage::{ErrorClass, StorageResolver, StorageRetry, StoreLocation};

/// Pointer-write retries after the first failure: immediately, then after 1 s and 2 s.
const POINTER_RETRY_DELAYS: [Duration; 3] = [
    Duration::ZERO,
    Duration::from_secs(1),
    Duration::from_secs(2),
];

/// A `ManifestStore` on any object store: `s3://`, `file://`, a local path or `memory://`.
///
/// Layout under the prefix: `manifests/<TS>_run_id=<id>/manifest` (one SQLite image per publish,
/// `<TS>` = `%Y-%m-%dT%H:%M:%S.%fZ`) and `_CURRENT`. Refs are absolute manifest URLs.
#[derive(Debug, Clone)]
pub struct ObjectStoreManifestStore {
    resolver: StorageResolver,
    root: StoreLocation,
    pointer_key: String,
    pointer_retry_delays: Vec<Duration>,
}

impl ObjectStoreManifestStore {
    /// A store on `prefix_url`, reaching storage through `resolver`.
    ///
    /// ```
    /// use shardyfusion_storage::StorageResolver;
    /// use shardyfusion_store_s3::ObjectStoreManifestStore;
    /// let store = ObjectStoreManifestStore::new("memory://docs/snap", StorageResolver::default()).unwrap();
    /// assert_eq!(store.prefix_url(), "memory://docs/snap");
    /// ```
    pub fn new(prefix_url: &str, resolver: StorageResolver) -> Result<Self> {
        let root = resolver.resolve(prefix_url)?;
        Ok(ObjectStoreManifestStore {
            resolver,
            root,
            pointer_key: CURRENT_POINTER_KEY.to_owned(),
            pointer_retry_delays: POINTER_RETRY_DELAYS.to_vec(),
        })
    }

    /// Use another pointer object name than `_CURRENT`.
    #[must_use]
    pub fn with_pointer_key(mut self, key: impl Into<String>) -> Self {
        self.pointer_key = key.into();
        self
    }

    /// Override the delays between pointer-write retries (tests use zero).
    #[must_use]
    pub fn with_pointer_retry_delays(mut self, delays: Vec<Duration>) -> Self {
        self.pointer_retry_delays = delays;
        self
    }

    /// The canonical prefix URL.
    pub fn prefix_url(&self) -> &str {
        &self.root.url
    }

    /// The canonical URL of the pointer object.
    pub fn pointer_url(&self) -> String {
        url_join(&self.root.url, &[&self.pointer_key])
    }

    fn retry(&self) -> &StorageRetry {
        self.resolver.retry()
    }

    fn put_options(&self, content_type: &'static str) -> PutOptions {
        // The local filesystem store rejects attributes; S3 and memory keep the content type.
        let mut attributes = Attributes::new();
        if !self.root.url.starts_with("file://") {
            attributes.insert(Attribute::ContentType, content_type.into());
        }
        PutOptions {
            attributes,
            ..PutOptions::default()
        }
    }

    async fn write_pointer(&self, manifest_ref: &str, run_id: &str) -> Result<()> {
        let pointer = CurrentPointer::new(manifest_ref, run_id, Timestamp::now());
        let body = pointer_to_json(&pointer);
        let path = self.root.child(&[&self.pointer_key]);
        let store = &self.root.store;
        self.retry()
            .run(
                "put_current",
                self.resolver.metrics().map(|m| m.as_ref()),
                || {
                    store.put_opts(
                        &path,
                        PutPayload::from(body.clone().into_bytes()),
                        self.put_options("application/json"),
                    )
                },
            )
            .await
            .map(|_| ())
            .map_err(|f| {
                f.into_error(
                    ErrorKind::ManifestStore,
                    &format!("writing {}", self.pointer_url()),
                )
            })
    }

    async fn get_bytes(&self, loc: &StoreLocation, what: &str) -> Result<Option<Vec<u8>>> {
        let store = &loc.store;
        let res = self
            .retry()
            .run(
                "get",
                self.resolver.metrics().map(|m| m.as_ref()),
                || async { store.get(&loc.path).await?.bytes().await },
            )
            .await;
        match res {
            Ok(b) => Ok(Some(b.to_vec())),
            Err(f) if f.class == ErrorClass::NotFound => Ok(None),
            Err(f) => Err(f.into_error(
                ErrorKind::ManifestStore,
                &format!("reading {what} {}", loc.url),
            )),
        }
    }
}

fn run_id_of(manifest_ref: &str) -> Result<&str> {
    let (_, rest) = manifest_ref.split_once("run_id=").ok_or_else(|| {
        Error::config(format!(
            "manifest ref {manifest_ref:?} contains no run_id=<id> segment"
        ))
    })?;
    let id = rest.split('/').next().unwrap_or_default();
    if id.is_empty() {
        return Err(Error::config(format!(
            "manifest ref {manifest_ref:?} has an empty run_id"
        )));
    }
    Ok(id)
}

/// Parse a `manifests/` entry name `<TS>_run_id=<id>` (TS = `YYYY-MM-DDTHH:MM:SS.ffffffZ`).
fn parse_manifest_dir(name: &str) -> Option<(Timestamp, &str)> {
    let (ts, run_id) = name.split_once("_run_id=")?;
    let shape = ts.len() == 27
        && ts.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            10 => b == b'T',
            13 | 16 => b == b':',
            19 => b == b'.',
            26 => b == b'Z',
            _ => b.is_ascii_digit(),
        });
    if !shape || run_id.is_empty() || run_id.contains('/') {
        return None;
    }
    Some((Timestamp::parse(ts).ok()?, run_id))
}

#[async_trait]
impl ManifestStore for ObjectStoreManifestStore {
    async fn publish(
        &self,
        build: &RequiredBuildMeta,
        shards: &[RequiredShardMeta],
        observer: &dyn PublishObserver,
    ) -> Result<ManifestRef> {
        let image = build_manifest(build, shards)?;
        // Phase 1: the manifest object. Nothing is visible until the pointer moves.
        let now = Timestamp::now();
        let dir = format!("{}_run_id={}", now.to_key_string(), build.run_id);
        let path = self.root.child(&["manifests", &dir, "manifest"]);
        let manifest_ref = url_join(&self.root.url, &["manifests", &dir, "manifest"]);
        let store = &self.root.store;
        let mut opts = self.put_options(MANIFEST_CONTENT_TYPE);
        opts.mode = PutMode::Create;
        self.retry()
            .run(
                "put_manifest",
                self.resolver.metrics().map(|m| m.as_ref()),
                || store.put_opts(&path, PutPayload::from(image.clone()), opts.clone()),
            )
            .await
            .map_err(|f| {
                let e = f.into_error(
                    ErrorKind::ManifestStore,
                    &format!("writing manifest {manifest_ref}"),
                );
                Error::new(
                    ErrorKind::PublishManifest,
                    format!(
                        "publishing the manifest failed; nothing became current: {}",
                        e.message()
                    ),
                )
                .with_source(e)
            })?;
        observer.manifest_published(&manifest_ref);

        // Phase 2: the pointer, retried; on failure the manifest exists but is not current.
        let mut last = self.write_pointer(&manifest_ref, &build.run_id).await.err();
        for delay in &self.pointer_retry_delays {
            if last.is_none() {
                break;
            }
            tracing::warn!(manifest_ref, ?delay, "retrying the _CURRENT pointer update");
            tokio::time::sleep(*delay).await;
            last = self.write_pointer(&manifest_ref, &build.run_id).await.err();
        }
        if let Some(e) = last {
            return Err(Error::new(
                ErrorKind::PublishCurrent,
                format!(
                    "manifest {manifest_ref} was written but {} could not be updated: {}",
                    self.pointer_url(),
                    e.message()
                ),
            )
            .with_manifest_ref(&manifest_ref)
            .with_source(e));
        }
        observer.current_published(&manifest_ref);
        Ok(ManifestRef {
            manifest_ref,
            run_id: build.run_id.clone(),
            published_at: now,
        })
    }

    async fn load_current(&self) -> Result<Option<ManifestRef>> {
        let loc = StoreLocation {
            path: self.root.child(&[&self.pointer_key]),
            url: self.pointer_url(),
            ..self.root.clone()
        };
        match self.get_bytes(&loc, "pointer").await? {
            None => Ok(None),
            Some(bytes) => Ok(Some(pointer_from_json(&bytes)?.to_manifest_ref())),
        }
    }

    async fn load_manifest(&self, manifest_ref: &str) -> Result<ParsedManifest> {
        // Resolve the ref with its own scheme and bucket (never this store's bucket by default).
        let loc = self.resolver.resolve(manifest_ref)?;
        match self.get_bytes(&loc, "manifest").await? {
            Some(bytes) => parse_manifest(&bytes),
            None => Err(Error::new(
                ErrorKind::ManifestStore,
                format!("manifest not found: {manifest_ref}"),
            )),
        }
    }

    async fn list_manifests(&self, limit: usize) -> Result<Vec<ManifestRef>> {
        let dir: Path = self.root.child(&["manifests"]);
        let store = &self.root.store;
        let listing = self
            .retry()
            .run("list", self.resolver.metrics().map(|m| m.as_ref()), || {
                store.list_with_delimiter(Some(&dir))
            })
            .await;
        let listing = match listing {
            Ok(l) => l,
            Err(f) if f.class == ErrorClass::NotFound => return Ok(Vec::new()),
            Err(f) => {
                return Err(f.into_error(
                    ErrorKind::ManifestStore,
                    &format!("listing {}/manifests", self.root.url),
                ));
            }
        };
        let mut refs: Vec<ManifestRef> = listing
            .common_prefixes
            .iter()
            .filter_map(|p| {
                let name = p.filename()?;
                let (ts, run_id) = parse_manifest_dir(name)?;
                Some(ManifestRef {
                    manifest_ref: url_join(&self.root.url, &["manifests", name, "manifest"]),
                    run_id: run_id.to_owned(),
                    published_at: ts,
                })
            })
            .collect();
        refs.sort_by(|a, b| {
            b.published_at
                .cmp(&a.published_at)
                .then_with(|| b.manifest_ref.cmp(&a.manifest_ref))
        });
        refs.truncate(limit);
        Ok(refs)
    }

    async fn set_current(&self, manifest_ref: &str) -> Result<()> {
        let run_id = run_id_of(manifest_ref)?.to_owned();
        // Validate first: never point readers at a manifest that does not load.
        self.load_manifest(manifest_ref).await?;
        self.write_pointer(manifest_ref, &run_id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_dir_names() {
        let (ts, id) = parse_manifest_dir("2026-03-14T10:30:00.123456Z_run_id=abc").unwrap();
        assert_eq!(
            (ts.to_key_string().as_str(), id),
            ("2026-03-14T10:30:00.123456Z", "abc")
        );
        for bad in [
            "2026-03-14T10:30:00Z_run_id=abc",
            "2026-03-14T10:30:00.123456Z_run_id=",
            "junk",
            "2026-03-14T10:30:00.123456+00_run_id=a",
        ] {
            assert!(parse_manifest_dir(bad).is_none(), "{bad}");
        }
        assert_eq!(
            run_id_of("s3://b/p/manifests/x_run_id=r1/manifest").unwrap(),
            "r1"
        );
        assert_eq!(
            run_id_of("s3://b/p/m").unwrap_err().kind(),
            ErrorKind::ConfigValidation
        );
    }
}
