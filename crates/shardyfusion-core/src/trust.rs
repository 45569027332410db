//! The trust boundary for URLs read from storage (SPEC 15.3): which manifest refs and `db_url`s
//! a store may hand to readers, and the rebasing that makes copied snapshots read from their copy.

use crate::error::{Error, ErrorKind, Result};
use crate::layout::{PrefixUrl, url_join};
use crate::model::ParsedManifest;

/// Where URLs read from a store may point: the scheme and bucket (S3), store name (memory) or
/// directory tree (local files) of the store's own prefix, plus URL prefixes the user allowed.
///
/// ```
/// use shardyfusion_core::UrlBoundary;
/// let b = UrlBoundary::new("s3://bucket/snap").unwrap();
/// assert!(b.permits("s3://bucket/other/shards/db=00001/attempt=00"));
/// assert!(!b.permits("s3://elsewhere/snap/db"));
/// assert!(!b.permits("file:///etc/passwd"));
/// let local = UrlBoundary::new("file:///data/snap").unwrap();
/// assert!(local.permits("file:///data/snap/shards/x"));
/// assert!(!local.permits("file:///data/snap/../../etc"));
/// assert!(!local.permits("/data/other"));
/// assert!(local.clone().allow(["file:///data/other"]).unwrap().permits("/data/other/x"));
/// assert!(local.clone().allow(["relative/dir"]).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlBoundary {
    root: Place,
    allowed: Vec<Place>,
}

/// A URL reduced to what the boundary compares.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Place {
    S3 {
        bucket: String,
        key: String,
    },
    Memory {
        name: String,
        key: String,
    },
    /// An absolute, normalized directory or file path.
    File {
        path: String,
    },
}

impl Place {
    /// `None` for anything the boundary can never permit: relative paths (they depend on the
    /// reader's working directory), `.`/`..` segments, unparseable URLs.
    fn of(url: &str) -> Option<Place> {
        let place = match PrefixUrl::parse(url).ok()? {
            PrefixUrl::S3 { bucket, key } => Place::S3 { bucket, key },
            PrefixUrl::Memory { name, key } => Place::Memory { name, key },
            PrefixUrl::File { path } => Place::File { path },
            PrefixUrl::LocalPath { path } if path.starts_with('/') => Place::File {
                path: path.trim_end_matches('/').to_owned(),
            },
            PrefixUrl::LocalPath { .. } => return None,
        };
        let key = match &place {
            Place::S3 { key, .. } | Place::Memory { key, .. } => key.as_str(),
            Place::File { path } => path.as_str(),
        };
        if key.split('/').any(|s| s == "." || s == "..") {
            return None;
        }
        Some(place)
    }

    /// A prefix the user allows: like [`Place::of`], but a bucket or store name alone
    /// (`s3://bucket`, `memory://name`) is accepted too. Anything else is `ConfigValidation`.
    fn allowed(prefix: &str) -> Result<Place> {
        let bare = |scheme: &str| {
            prefix
                .strip_prefix(scheme)
                .map(|rest| rest.trim_end_matches('/'))
                .filter(|name| !name.is_empty() && !name.contains('/'))
                .map(str::to_owned)
        };
        if let Some(bucket) = bare("s3://") {
            return Ok(Place::S3 {
                bucket,
                key: String::new(),
            });
        }
        if let Some(name) = bare("memory://") {
            return Ok(Place::Memory {
                name,
                key: String::new(),
            });
        }
        Place::of(prefix).ok_or_else(|| {
            Error::config(format!(
                "allowed URL prefix {prefix:?} is not usable: give s3://bucket[/prefix], \
                 memory://name[/prefix], file:///abs/dir or an absolute path, without '.' or \
                 '..' segments"
            ))
        })
    }

    /// Whether `other` lies inside this place: same bucket or store name (any key inside it),
    /// or, for files, at or below this directory.
    fn contains(&self, other: &Place) -> bool {
        match (self, other) {
            (Place::S3 { bucket: a, .. }, Place::S3 { bucket: b, .. }) => a == b,
            (Place::Memory { name: a, .. }, Place::Memory { name: b, .. }) => a == b,
            (Place::File { path: a }, Place::File { path: b }) => under(b, a),
            _ => false,
        }
    }

    /// Whether `other` lies below this exact prefix (allow-list entries are prefixes, not
    /// whole buckets).
    fn prefixes(&self, other: &Place) -> bool {
        match (self, other) {
            (Place::S3 { bucket: a, key: ka }, Place::S3 { bucket: b, key: kb })
            | (Place::Memory { name: a, key: ka }, Place::Memory { name: b, key: kb }) => {
                a == b && (ka.is_empty() || under(kb, ka))
            }
            (Place::File { path: a }, Place::File { path: b }) => under(b, a),
            _ => false,
        }
    }
}

/// `path` equals `dir` or lies below it, segment-wise (both come without a trailing `/`).
fn under(path: &str, dir: &str) -> bool {
    path == dir
        || path
            .strip_prefix(dir)
            .is_some_and(|rest| rest.starts_with('/'))
}

impl UrlBoundary {
    /// The boundary of a store opened at `root_url` (a prefix URL or path).
    pub fn new(root_url: &str) -> Result<Self> {
        let root = Place::of(root_url).ok_or_else(|| {
            Error::config(format!(
                "cannot use {root_url:?} as a trust boundary: give an s3://, memory://, file:// \
                 URL or an absolute path without '.' or '..' segments"
            ))
        })?;
        Ok(UrlBoundary {
            root,
            allowed: Vec::new(),
        })
    }

    /// Also permit URLs under each of `prefixes` (`s3://shared-bucket`,
    /// `s3://shared-bucket/features`, `memory://name`, `file:///dir`, `/dir`); an entry that
    /// cannot be used is `ConfigValidation` naming it.
    pub fn allow<S: AsRef<str>>(mut self, prefixes: impl IntoIterator<Item = S>) -> Result<Self> {
        for p in prefixes {
            self.allowed.push(Place::allowed(p.as_ref())?);
        }
        Ok(self)
    }

    /// Whether `url` may be followed.
    pub fn permits(&self, url: &str) -> bool {
        Place::of(url)
            .is_some_and(|p| self.root.contains(&p) || self.allowed.iter().any(|a| a.prefixes(&p)))
    }

    /// `Ok` when `url` may be followed, else `ManifestParse` naming it and how to allow it.
    pub fn check(&self, url: &str, what: &str) -> Result<()> {
        if self.permits(url) {
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::ManifestParse,
            format!(
                "{what} {url:?} lies outside the trust boundary of the store ({}): URLs read \
                 from storage may only name the store's own bucket or directory. If this \
                 snapshot really lives elsewhere, allow that prefix explicitly \
                 (allowed_url_prefixes in reader.toml, --allow-url-prefix, or the store's \
                 allow-list)",
                self.root_description()
            ),
        ))
    }

    fn root_description(&self) -> String {
        match &self.root {
            Place::S3 { bucket, .. } => format!("s3://{bucket}"),
            Place::Memory { name, .. } => format!("memory://{name}"),
            Place::File { path } => format!("file://{path}"),
        }
    }
}

/// Check a list of allowed URL prefixes (see [`UrlBoundary::allow`]): `ConfigValidation` naming
/// the first unusable entry.
pub fn validate_allowed_url_prefixes<S: AsRef<str>>(prefixes: &[S]) -> Result<()> {
    for p in prefixes {
        Place::allowed(p.as_ref())?;
    }
    Ok(())
}

/// Confine the `db_url`s of a manifest read from a database store (SPEC 15.3): they must lie
/// within the bucket, store name or directory of the manifest's own recorded `s3_prefix` (a
/// relative local prefix is taken relative to the working directory), or under `allowed`.
///
/// The recorded prefix comes from the same row as the `db_url`s, so this bounds what a
/// manifest can name by the data it claims as its own; whoever can write the database is
/// trusted as much as whoever can write an object store's prefix.
pub fn confine_to_recorded_prefix<S: AsRef<str>>(
    manifest: &mut ParsedManifest,
    allowed: &[S],
) -> Result<()> {
    let recorded = &manifest.build.s3_prefix;
    let root = match canonical(recorded) {
        Some(c) => c,
        None => {
            let abs = std::env::current_dir()
                .map_err(|e| {
                    Error::new(
                        ErrorKind::ManifestParse,
                        format!("cannot resolve the relative s3_prefix {recorded:?}: {e}"),
                    )
                })?
                .join(recorded);
            format!("file://{}", abs.to_string_lossy().trim_end_matches('/'))
        }
    };
    let boundary = UrlBoundary::new(&root)
        .map_err(|e| Error::new(ErrorKind::ManifestParse, e.message().to_owned()))?
        .allow(allowed.iter().map(AsRef::as_ref))?;
    confine_manifest(manifest, None, &boundary)
}

/// Rebase `url` from the prefix a snapshot was written at (`recorded`, as stored in its
/// manifest) onto the prefix the store was opened at (`opened`, canonical): a URL under
/// `recorded` keeps its remainder. `None` when `url` is not under `recorded`.
///
/// ```
/// use shardyfusion_core::rebase_url;
/// assert_eq!(
///     rebase_url("s3://a/p/shards/db=00001", "s3://a/p/", "file:///copy/p").as_deref(),
///     Some("file:///copy/p/shards/db=00001")
/// );
/// assert_eq!(rebase_url("s3://a/q/x", "s3://a/p", "s3://b/p"), None);
/// ```
pub fn rebase_url(url: &str, recorded: &str, opened: &str) -> Option<String> {
    rebase_canonical(url, &canonical(recorded)?, opened)
}

/// [`rebase_url`] with the recorded prefix already canonical.
fn rebase_canonical(url: &str, recorded: &str, opened: &str) -> Option<String> {
    let url = canonical(url)?;
    let rest = url.strip_prefix(recorded)?;
    if !(rest.is_empty() || rest.starts_with('/')) {
        return None;
    }
    Some(url_join(opened, &[rest]))
}

/// The canonical URL of a recorded prefix (`s3://b/k`, `memory://n/k`, `file:///abs`), or
/// `None` for a relative path (it depends on the writer's working directory).
fn canonical(prefix: &str) -> Option<String> {
    Some(match PrefixUrl::parse(prefix).ok()? {
        PrefixUrl::S3 { bucket, key } => format!("s3://{bucket}/{key}"),
        PrefixUrl::Memory { name, key } if key.is_empty() => format!("memory://{name}"),
        PrefixUrl::Memory { name, key } => format!("memory://{name}/{key}"),
        PrefixUrl::File { path } => format!("file://{path}"),
        PrefixUrl::LocalPath { path } if path.starts_with('/') => {
            format!("file://{}", path.trim_end_matches('/'))
        }
        PrefixUrl::LocalPath { .. } => return None,
    })
}

/// Rebase every `db_url` of `manifest` that lies under its recorded `s3_prefix` onto `opened`
/// (when given: the prefix the store was opened at), then check every `db_url` against
/// `boundary`. A relative recorded prefix (a local path given relative to the writer's working
/// directory) is matched by its shard layout segment (`/<shard_prefix>/run_id=<run_id>/`).
pub fn confine_manifest(
    manifest: &mut ParsedManifest,
    opened: Option<&str>,
    boundary: &UrlBoundary,
) -> Result<()> {
    // `None`: a relative recorded prefix (a local path relative to the writer's directory).
    let recorded = canonical(&manifest.build.s3_prefix);
    let layout = format!(
        "/{}/run_id={}/",
        manifest.build.shard_prefix.trim_matches('/'),
        manifest.build.run_id
    );
    for shard in &mut manifest.shards {
        let Some(url) = shard.db_url.as_mut() else {
            continue;
        };
        if let Some(opened) = opened {
            let rebased = match &recorded {
                Some(recorded) => rebase_canonical(url, recorded, opened),
                // Relative recorded prefix: everything from the layout segment on is the
                // snapshot's own part.
                None => url.find(&layout).map(|at| url_join(opened, &[&url[at..]])),
            };
            if let Some(r) = rebased {
                *url = r;
            }
        }
        boundary.check(url, &format!("db_url of shard {}", shard.db_id))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{RequiredBuildMeta, RequiredShardMeta};

    fn manifest(prefix: &str, urls: &[&str]) -> ParsedManifest {
        let build = RequiredBuildMeta::new("r1", 4, prefix);
        let shards = urls
            .iter()
            .enumerate()
            .map(|(i, u)| {
                let mut s = RequiredShardMeta::empty(i as u32);
                s.db_url = Some((*u).to_owned());
                s.row_count = 1;
                s
            })
            .collect();
        ParsedManifest { build, shards }
    }

    #[test]
    fn hostile_urls_are_refused() {
        let b = UrlBoundary::new("file:///srv/snap").unwrap();
        for bad in [
            "/etc",
            "/etc/passwd",
            "file:///",
            "file:///etc",
            "file:///srv/snapshot-other",
            "file:///srv/snap/../../etc",
            "relative/path",
            "s3://bucket/srv/snap",
            "memory://x/y",
            "http://evil/x",
            "",
        ] {
            let err = b.check(bad, "db_url").unwrap_err();
            assert_eq!(err.kind(), ErrorKind::ManifestParse, "{bad}");
            assert!(err.message().contains(&format!("{bad:?}")), "{err}");
        }
        assert!(b.permits("file:///srv/snap"));
        assert!(b.permits("/srv/snap/shards/run_id=a/db=00000/attempt=00"));
        let s3 = UrlBoundary::new("s3://b/p").unwrap();
        assert!(s3.permits("s3://b/anything/else"));
        assert!(!s3.permits("s3://b2/p"));
        let allowed = s3.clone().allow(["s3://shared/features/"]).unwrap();
        assert!(allowed.permits("s3://shared/features/x"));
        assert!(!allowed.permits("s3://shared/featuresX/x"));
        assert!(!allowed.permits("s3://shared/other"));
        // A whole bucket or memory store may be allowed; unusable entries are errors.
        let whole = s3.clone().allow(["s3://shared", "memory://m/"]).unwrap();
        assert!(whole.permits("s3://shared/any/thing") && whole.permits("memory://m/k"));
        for bad in ["relative/dir", "s3://", "ftp://x/y", "file:///a/../b", ""] {
            let err = s3.clone().allow([bad]).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::ConfigValidation, "{bad}");
        }
    }

    #[test]
    fn copied_snapshots_read_from_their_copy() {
        let mut m = manifest(
            "s3://orig/snap/",
            &[
                "s3://orig/snap/shards/run_id=r1/db=00000/attempt=00",
                "s3://orig/elsewhere/x",
            ],
        );
        let b = UrlBoundary::new("file:///copy/snap").unwrap();
        let err = confine_manifest(&mut m, Some("file:///copy/snap"), &b).unwrap_err();
        // The first is rebased; the second is not under the recorded prefix and stays outside.
        assert_eq!(
            m.shards[0].db_url.as_deref(),
            Some("file:///copy/snap/shards/run_id=r1/db=00000/attempt=00")
        );
        assert!(err.message().contains("s3://orig/elsewhere/x"), "{err}");

        // A relative recorded prefix is matched by the layout segment.
        let mut m = manifest(
            "target/snap",
            &["file:///home/u/target/snap/shards/run_id=r1/db=00000/attempt=00"],
        );
        let b = UrlBoundary::new("file:///mnt/copy").unwrap();
        confine_manifest(&mut m, Some("file:///mnt/copy"), &b).unwrap();
        assert_eq!(
            m.shards[0].db_url.as_deref(),
            Some("file:///mnt/copy/shards/run_id=r1/db=00000/attempt=00")
        );

        // Without an opened prefix (database stores) nothing moves, and the check still runs.
        let mut m = manifest("s3://b/p", &["s3://other/p/x"]);
        let b = UrlBoundary::new("s3://b/p").unwrap();
        assert!(confine_manifest(&mut m, None, &b).is_err());
    }
}
