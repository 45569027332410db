//! [`ObjectStoreManifestStore`]: manifests and the `_CURRENT` pointer as objects under a prefix.

use async_trait::async_trait;
use shardyfusion_core::{
    CURRENT_POINTER_KEY, CurrentPointer, Error, ErrorKind, MANIFEST_CONTENT_TYPE, ManifestRef,
    ManifestStore, ParsedManifest, PublishObserver, RequiredBuildMeta, RequiredShardMeta, Result,
    Timestamp, UrlBoundary, confine_manifest, url_join,
};
use shardyfusion_manifest::{build_manifest, parse_manifest, pointer_from_json, pointer_to_json};
use shardyfusion_storage::object_store::path::Path;
use shardyfusion_storage::object_store::{
    Attribute, Attributes, ObjectStoreExt, PutOptions, PutPayload,
};
use shardyfusion_storage::{
    ErrorClass, RetryFailure, StorageResolver, StorageRetry, StoreLocation,
};

use crate::pointer::{self, Seen, Swap, UpdateMode};

/// Largest pointer object read (a pointer is a few hundred bytes).
pub(crate) const MAX_POINTER_BYTES: u64 = 64 << 10;
/// Largest manifest object read (a million-shard manifest is about 300 MiB).
const MAX_MANIFEST_BYTES: u64 = 1 << 30;

/// A `ManifestStore` on any object store: `s3://`, `file://`, a local path or `memory://`.
///
/// Layout under the prefix: `manifests/<TS>_run_id=<id>/manifest` (one SQLite image per publish,
/// `<TS>` = `%Y-%m-%dT%H:%M:%S.%fZ`) and `_CURRENT`. Refs are absolute manifest URLs.
///
/// Invariants it enforces: a run id is published once (a second publish of it is
/// `ConfigValidation`, and manifest objects are written create-only); the pointer moves by
/// compare-and-swap against the version read before the publish or rollback (SPEC 15.2); every
/// manifest ref and `db_url` it hands out lies inside its trust boundary, after rebasing a
/// copied snapshot onto the prefix it was opened at (SPEC 15.3).
#[derive(Debug, Clone)]
pub struct ObjectStoreManifestStore {
    resolver: StorageResolver,
    root: StoreLocation,
    pointer_key: String,
    boundary: UrlBoundary,
    update_mode: UpdateMode,
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
        let boundary = UrlBoundary::new(&root.url)?;
        let update_mode = UpdateMode::for_url(&root.url);
        Ok(ObjectStoreManifestStore {
            resolver,
            root,
            pointer_key: CURRENT_POINTER_KEY.to_owned(),
            boundary,
            update_mode,
        })
    }

    /// Also follow `db_url`s (and manifest refs outside this store's layout) under these URL
    /// prefixes (`s3://bucket`, `s3://bucket/prefix`, `file:///dir`, …); by default only the
    /// store's own bucket, store name or directory is trusted (SPEC 15.3). An unusable entry is
    /// `ConfigValidation`.
    pub fn with_allowed_url_prefixes<S: AsRef<str>>(
        mut self,
        prefixes: impl IntoIterator<Item = S>,
    ) -> Result<Self> {
        self.boundary = self.boundary.allow(prefixes)?;
        Ok(self)
    }

    /// Write manifests and the pointer with plain PUTs, for S3-compatible servers that refuse
    /// conditional writes. A concurrent publish or rollback can then be overwritten silently:
    /// opt in only when one writer at a time is guaranteed by other means.
    #[must_use]
    pub fn with_unconditional_pointer_writes(mut self, on: bool) -> Self {
        self.update_mode = if on {
            UpdateMode::Unconditional
        } else {
            UpdateMode::for_url(&self.root.url)
        };
        self
    }

    /// Use another pointer object name than `_CURRENT`.
    #[must_use]
    pub fn with_pointer_key(mut self, key: impl Into<String>) -> Self {
        self.pointer_key = key.into();
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

    fn pointer_location(&self) -> (StoreLocation, Path) {
        let path = self.root.child(&[&self.pointer_key]);
        let loc = StoreLocation {
            path: path.clone(),
            url: self.pointer_url(),
            ..self.root.clone()
        };
        (loc, path)
    }

    /// The pointer and its version, as seen before a publish or rollback.
    async fn read_pointer(&self) -> Result<Seen> {
        let (loc, path) = self.pointer_location();
        pointer::read(&self.resolver, &loc, &path)
            .await
            .map_err(|f| {
                f.into_error(
                    ErrorKind::ManifestStore,
                    &format!("reading {}", self.pointer_url()),
                )
            })
    }

    /// Move the pointer to `manifest_ref` if it is still what `seen` says (SPEC 15.2). When the
    /// condition fails, the pointer is read again: naming `manifest_ref` already means an earlier
    /// try of this very update landed; anything else is a concurrent move, reported as
    /// `PublishCurrent`.
    async fn swap_pointer(&self, seen: &Seen, manifest_ref: &str, run_id: &str) -> Result<()> {
        let pointer = CurrentPointer::new(manifest_ref, run_id, Timestamp::now());
        let body = pointer_to_json(&pointer);
        let (loc, path) = self.pointer_location();
        let opts = self.put_options("application/json");
        let outcome = pointer::swap(
            &self.resolver,
            &loc,
            &path,
            seen,
            body.as_bytes(),
            self.update_mode,
            opts,
        )
        .await;
        match outcome {
            Ok(Swap::Done) => Ok(()),
            Ok(Swap::Lost) => match self.pointer_target().await? {
                // An earlier try of this very update landed.
                Some(now) if now == manifest_ref => Ok(()),
                other => Err(pointer::moved_concurrently(
                    &self.pointer_url(),
                    manifest_ref,
                    other.as_deref(),
                )),
            },
            Err(f) => {
                // A conditional PUT is not retried by the S3 client, and a timeout does not say
                // whether it landed: look before reporting a failure.
                if f.class == ErrorClass::Transient
                    && self.pointer_target().await.ok().flatten().as_deref() == Some(manifest_ref)
                {
                    return Ok(());
                }
                Err(self.write_error(f, &format!("writing {}", self.pointer_url())))
            }
        }
    }

    /// The manifest ref the pointer names now.
    async fn pointer_target(&self) -> Result<Option<String>> {
        match self.read_pointer().await?.bytes() {
            None => Ok(None),
            Some(b) => Ok(Some(pointer_from_json(b)?.manifest_ref)),
        }
    }

    /// The error of a failed conditional write, with a hint when the server may not support
    /// conditional writes at all.
    fn write_error(&self, f: RetryFailure, what: &str) -> Error {
        let permanent = f.class == ErrorClass::Permanent;
        let e = f.into_error(ErrorKind::ManifestStore, what);
        if !permanent || self.update_mode == UpdateMode::Unconditional {
            return e;
        }
        let msg = format!(
            "{}. If this S3-compatible server does not support conditional writes (If-Match / \
             If-None-Match), use one that does, or opt into unconditional writes \
             ([manifest_store].unconditional_pointer_writes) if only one writer ever publishes",
            e.message()
        );
        Error::new(e.kind(), msg).with_source(e)
    }

    /// Whether run `run_id` already has a manifest under this prefix.
    async fn run_id_published(&self, run_id: &str) -> Result<bool> {
        Ok(self
            .list_manifests(usize::MAX)
            .await?
            .iter()
            .any(|m| m.run_id == run_id))
    }

    /// Where to read `manifest_ref`: a ref of this store's layout (`…/manifests/<TS>_run_id=<id>/
    /// manifest`) is read under the prefix the store was opened at, so a copied snapshot reads
    /// its own manifests; any other ref must lie inside the trust boundary.
    fn manifest_location(&self, manifest_ref: &str) -> Result<StoreLocation> {
        let parts: Vec<&str> = manifest_ref
            .trim_end_matches('/')
            .rsplit('/')
            .take(3)
            .collect();
        if let [name, dir, manifests] = parts[..]
            && name == "manifest"
            && manifests == "manifests"
            && parse_manifest_dir(dir).is_some()
        {
            return Ok(StoreLocation {
                path: self.root.child(&["manifests", dir, "manifest"]),
                url: url_join(&self.root.url, &["manifests", dir, "manifest"]),
                ..self.root.clone()
            });
        }
        self.boundary.check(manifest_ref, "manifest ref")?;
        self.resolver.resolve(manifest_ref)
    }

    /// The object at `loc`, `None` when absent; an object over `limit` bytes is
    /// `ManifestParse` before its body is read (a hostile store cannot exhaust memory).
    async fn get_bytes(
        &self,
        loc: &StoreLocation,
        what: &str,
        limit: u64,
    ) -> Result<Option<Vec<u8>>> {
        let store = &loc.store;
        let res = self
            .retry()
            .run(
                "get",
                self.resolver.metrics().map(|m| m.as_ref()),
                || async {
                    let got = store.get(&loc.path).await?;
                    if got.meta.size > limit {
                        return Ok(Err(got.meta.size));
                    }
                    got.bytes().await.map(Ok)
                },
            )
            .await;
        match res {
            Ok(Err(size)) => Err(Error::new(
                ErrorKind::ManifestParse,
                format!(
                    "{what} {} is {size} bytes, over the limit of {limit}: not a {what} this \
                     library wrote",
                    loc.url
                ),
            )),
            Ok(Ok(b)) => Ok(Some(b.to_vec())),
            Err(f) if f.class == ErrorClass::NotFound => Ok(None),
            Err(f) => Err(f.into_error(
                ErrorKind::ManifestStore,
                &format!("reading {what} {}", loc.url),
            )),
        }
    }
}

/// The run id of a manifest ref `…/manifests/<TS>_run_id=<id>/manifest`, or of the first
/// `run_id=<id>` segment of another ref (SPEC 3.7).
fn run_id_of(manifest_ref: &str) -> Result<&str> {
    let mut segments = manifest_ref.trim_end_matches('/').rsplit('/');
    if let (Some("manifest"), Some(dir)) = (segments.next(), segments.next())
        && let Some((_, id)) = parse_manifest_dir(dir)
    {
        return Ok(id);
    }
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
        // The version the pointer update is conditional on (SPEC 15.2).
        let seen = self.read_pointer().await?;
        // A run id is published once (SPEC 15.1).
        if self.run_id_published(&build.run_id).await? {
            return Err(Error::run_id_published(&build.run_id, &self.root.url));
        }
        // Phase 1: the manifest object, create-only. Nothing is visible until the pointer moves.
        let now = Timestamp::now();
        let dir = format!("{}_run_id={}", now.to_key_string(), build.run_id);
        let path = self.root.child(&["manifests", &dir, "manifest"]);
        let manifest_ref = url_join(&self.root.url, &["manifests", &dir, "manifest"]);
        let store = &self.root.store;
        let mut opts = self.put_options(MANIFEST_CONTENT_TYPE);
        opts.mode = self.update_mode.create();
        self.retry()
            .run(
                "put_manifest",
                self.resolver.metrics().map(|m| m.as_ref()),
                || store.put_opts(&path, PutPayload::from(image.clone()), opts.clone()),
            )
            .await
            .map_err(|f| {
                let e = self.write_error(f, &format!("writing manifest {manifest_ref}"));
                let kind = if e.kind() == ErrorKind::ConfigValidation {
                    ErrorKind::ConfigValidation
                } else {
                    ErrorKind::PublishManifest
                };
                Error::new(
                    kind,
                    format!(
                        "publishing the manifest failed; nothing became current: {}",
                        e.message()
                    ),
                )
                .with_source(e)
            })?;
        observer.manifest_published(&manifest_ref);

        // Phase 2: the pointer, by compare-and-swap; on failure the manifest exists but is not
        // current.
        self.swap_pointer(&seen, &manifest_ref, &build.run_id)
            .await
            .map_err(|e| {
                if e.kind() == ErrorKind::PublishCurrent {
                    return e;
                }
                Error::new(
                    ErrorKind::PublishCurrent,
                    format!(
                        "manifest {manifest_ref} was written but {} could not be updated: {}",
                        self.pointer_url(),
                        e.message()
                    ),
                )
                .with_manifest_ref(&manifest_ref)
                .with_source(e)
            })?;
        observer.current_published(&manifest_ref);
        Ok(ManifestRef {
            manifest_ref,
            run_id: build.run_id.clone(),
            published_at: now,
        })
    }

    async fn load_current(&self) -> Result<Option<ManifestRef>> {
        let (loc, _) = self.pointer_location();
        match self.get_bytes(&loc, "pointer", MAX_POINTER_BYTES).await? {
            None => Ok(None),
            Some(bytes) => Ok(Some(pointer_from_json(&bytes)?.to_manifest_ref())),
        }
    }

    async fn load_manifest(&self, manifest_ref: &str) -> Result<ParsedManifest> {
        let loc = self.manifest_location(manifest_ref)?;
        let mut manifest = match self.get_bytes(&loc, "manifest", MAX_MANIFEST_BYTES).await? {
            Some(bytes) => parse_manifest(&bytes)?,
            None => {
                return Err(Error::new(
                    ErrorKind::ManifestStore,
                    format!("manifest not found: {manifest_ref}"),
                ));
            }
        };
        confine_manifest(&mut manifest, Some(&self.root.url), &self.boundary)?;
        Ok(manifest)
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

    fn data_root(&self) -> Option<String> {
        Some(self.root.url.clone())
    }

    async fn set_current(&self, manifest_ref: &str) -> Result<()> {
        let run_id = run_id_of(manifest_ref)?.to_owned();
        // The version the rollback is conditional on, read before anything else.
        let seen = self.read_pointer().await?;
        // Validate first: never point readers at a manifest that does not load. The pointer
        // names the manifest where it was read (under this prefix for a relocated ref).
        self.load_manifest(manifest_ref).await?;
        let target = self.manifest_location(manifest_ref)?.url;
        self.swap_pointer(&seen, &target, &run_id).await
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
