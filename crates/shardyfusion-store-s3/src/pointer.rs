//! Conditional updates of the `_CURRENT` pointer (SPEC 15.2): compare-and-swap against the
//! version read before the publish, by ETag (`If-Match` / `If-None-Match`) where the store
//! supports it, under an exclusive lock file on local directories, where it does not.

use std::sync::Arc;
use std::time::Duration;

use shardyfusion_core::{Error, ErrorKind, Timestamp};
use shardyfusion_storage::object_store::path::{Path, PathPart};
use shardyfusion_storage::object_store::{
    self, GetOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion,
};
use shardyfusion_storage::{ErrorClass, RetryFailure, StorageResolver, StoreLocation};

/// A lock file older than this is left over from a crashed publisher and may be broken.
const LOCK_STALE: Duration = Duration::from_secs(30);
/// How long a publisher waits for another one's lock (longer than [`LOCK_STALE`], so a lock
/// left by a crash is always broken before a waiter gives up).
const LOCK_WAIT: Duration = Duration::from_secs(45);

/// The pointer as a publisher saw it before its publish.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Seen {
    /// No pointer object.
    Absent,
    /// The pointer's bytes and the version to make the update conditional on.
    Present {
        /// ETag / version of the object.
        version: UpdateVersion,
        /// Its content (compared under the lock where versions are not supported).
        bytes: Vec<u8>,
    },
}

impl Seen {
    pub(crate) fn bytes(&self) -> Option<&[u8]> {
        match self {
            Seen::Absent => None,
            Seen::Present { bytes, .. } => Some(bytes),
        }
    }
}

/// How the objects of one store are written conditionally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UpdateMode {
    /// `PutMode::Create` / `PutMode::Update` (S3, memory).
    Versioned,
    /// A lock file held across read, compare and the atomic rename of the new pointer (local
    /// directories: `LocalFileSystem` has no `PutMode::Update`).
    Locked,
    /// Plain overwrites: only when the user opted into unconditional writes.
    Unconditional,
}

impl UpdateMode {
    /// The mode a store at `url` supports.
    pub(crate) fn for_url(url: &str) -> Self {
        if url.starts_with("file://") {
            UpdateMode::Locked
        } else {
            UpdateMode::Versioned
        }
    }

    /// The put mode of an object that must not exist yet (manifests, locks).
    pub(crate) fn create(self) -> PutMode {
        match self {
            UpdateMode::Unconditional => PutMode::Overwrite,
            _ => PutMode::Create,
        }
    }
}

/// The outcome of a conditional write.
#[derive(Debug)]
pub(crate) enum Swap {
    /// The pointer now holds the new bytes.
    Done,
    /// The pointer changed since it was read; nothing was written.
    Lost,
}

/// Read the pointer object with its version.
pub(crate) async fn read(
    resolver: &StorageResolver,
    loc: &StoreLocation,
    path: &Path,
) -> std::result::Result<Seen, RetryFailure> {
    let store = &loc.store;
    let res = resolver
        .retry()
        .run("get", resolver.metrics().map(|m| m.as_ref()), || async {
            let got = store.get_opts(path, GetOptions::default()).await?;
            if got.meta.size > crate::object::MAX_POINTER_BYTES {
                return Err(object_store::Error::Generic {
                    store: "shardyfusion",
                    source: format!(
                        "the pointer object is {} bytes: not a pointer this library wrote",
                        got.meta.size
                    )
                    .into(),
                });
            }
            let version = UpdateVersion {
                e_tag: got.meta.e_tag.clone(),
                version: got.meta.version.clone(),
            };
            let bytes = got.bytes().await?;
            Ok(Seen::Present {
                version,
                bytes: bytes.to_vec(),
            })
        })
        .await;
    match res {
        Err(f) if f.class == ErrorClass::NotFound => Ok(Seen::Absent),
        other => other,
    }
}

/// Write `body` to the pointer if it still is what `seen` says.
pub(crate) async fn swap(
    resolver: &StorageResolver,
    loc: &StoreLocation,
    path: &Path,
    seen: &Seen,
    body: &[u8],
    mode: UpdateMode,
    opts: PutOptions,
) -> std::result::Result<Swap, RetryFailure> {
    match mode {
        UpdateMode::Versioned => {
            let put_mode = match seen {
                Seen::Absent => PutMode::Create,
                Seen::Present { version, .. } => PutMode::Update(version.clone()),
            };
            put(
                resolver,
                loc,
                path,
                body,
                PutOptions {
                    mode: put_mode,
                    ..opts
                },
            )
            .await
        }
        UpdateMode::Unconditional => {
            let opts = PutOptions {
                mode: PutMode::Overwrite,
                ..opts
            };
            put(resolver, loc, path, body, opts).await
        }
        UpdateMode::Locked => {
            let lock = Lock::acquire(resolver, loc, path).await?;
            let res = async {
                let now = read(resolver, loc, path).await?;
                if now.bytes() != seen.bytes() {
                    return Ok(Swap::Lost);
                }
                let opts = PutOptions {
                    mode: PutMode::Overwrite,
                    ..opts
                };
                put(resolver, loc, path, body, opts).await
            }
            .await;
            // Released even when the update failed (and by its drop guard when cancelled).
            lock.release().await;
            res
        }
    }
}

async fn put(
    resolver: &StorageResolver,
    loc: &StoreLocation,
    path: &Path,
    body: &[u8],
    opts: PutOptions,
) -> std::result::Result<Swap, RetryFailure> {
    let store = &loc.store;
    let res = resolver
        .retry()
        .run(
            "put_current",
            resolver.metrics().map(|m| m.as_ref()),
            || store.put_opts(path, PutPayload::from(body.to_vec()), opts.clone()),
        )
        .await;
    match res {
        Ok(_) => Ok(Swap::Done),
        Err(f) if f.class == ErrorClass::Conflict => Ok(Swap::Lost),
        Err(f) => Err(f),
    }
}

/// `_CURRENT.lock` beside the pointer: created create-only with a random token in it; released
/// only by its holder (the token is compared first); broken when older than [`LOCK_STALE`] by
/// an atomic rename, so two waiters can never both break it.
struct Lock {
    store: Arc<dyn ObjectStore>,
    path: Path,
    token: String,
    released: bool,
}

impl Lock {
    fn path_beside(pointer: &Path) -> Path {
        with_suffix(pointer, ".lock")
    }

    async fn acquire(
        resolver: &StorageResolver,
        loc: &StoreLocation,
        pointer: &Path,
    ) -> std::result::Result<Lock, RetryFailure> {
        let path = Self::path_beside(pointer);
        let token = uuid::Uuid::new_v4().simple().to_string();
        let body = format!(
            "token={token} pid={} at={}",
            std::process::id(),
            Timestamp::now()
        );
        let started = std::time::Instant::now();
        let mut pause = Duration::from_millis(2);
        loop {
            let opts = PutOptions {
                mode: PutMode::Create,
                ..PutOptions::default()
            };
            if let Swap::Done = put(resolver, loc, &path, body.as_bytes(), opts).await? {
                return Ok(Lock {
                    store: loc.store.clone(),
                    path,
                    token,
                    released: false,
                });
            }
            Self::break_if_stale(&loc.store, &path).await;
            if started.elapsed() > LOCK_WAIT {
                return Err(RetryFailure {
                    class: ErrorClass::Transient,
                    attempts: 1,
                    error: object_store::Error::AlreadyExists {
                        path: path.to_string(),
                        source: format!(
                            "another publisher has held the pointer lock for over {LOCK_WAIT:?}"
                        )
                        .into(),
                    },
                });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    /// Remove the lock when it is older than [`LOCK_STALE`]: rename it to a unique name (only
    /// one renamer can win), and put it back if what was renamed is not the stale lock seen.
    async fn break_if_stale(store: &Arc<dyn ObjectStore>, path: &Path) {
        let Ok(got) = store.get(path).await else {
            return;
        };
        let age = (chrono::Utc::now() - got.meta.last_modified)
            .to_std()
            .unwrap_or_default();
        let Ok(stale_body) = got.bytes().await else {
            return;
        };
        if age <= LOCK_STALE {
            return;
        }
        let aside = with_suffix(path, &format!(".stale-{}", uuid::Uuid::new_v4().simple()));
        if store.rename(path, &aside).await.is_err() {
            return; // another waiter broke it first
        }
        let renamed = store.get(&aside).await;
        let same = match renamed {
            Ok(r) => r.bytes().await.is_ok_and(|b| b == stale_body),
            Err(_) => false,
        };
        if same {
            tracing::warn!(lock = %path, ?age, "broke a stale pointer lock file");
            let _ = store.delete(&aside).await;
        } else if store.rename_if_not_exists(&aside, path).await.is_err() {
            let _ = store.delete(&aside).await;
        }
    }

    async fn release(mut self) {
        self.released = true;
        release(&self.store, &self.path, &self.token).await;
    }
}

/// `path` with `suffix` appended to its last segment (segment-wise: no re-encoding).
fn with_suffix(path: &Path, suffix: &str) -> Path {
    let mut parts: Vec<PathPart<'_>> = path.parts().collect();
    let last = parts
        .pop()
        .map(|p| p.as_ref().to_owned())
        .unwrap_or_default();
    parts.push(PathPart::from(format!("{last}{suffix}")));
    Path::from_iter(parts)
}

/// Delete the lock at `path` if it still holds `token`.
async fn release(store: &Arc<dyn ObjectStore>, path: &Path, token: &str) {
    let ours = match store.get(path).await {
        Ok(got) => got
            .bytes()
            .await
            .is_ok_and(|b| b.starts_with(format!("token={token} ").as_bytes())),
        Err(_) => false,
    };
    if ours && let Err(e) = store.delete(path).await {
        tracing::warn!(lock = %path, error = %e, "could not remove the pointer lock file");
    }
}

impl Drop for Lock {
    /// A publish cancelled while holding the lock releases it on the runtime.
    fn drop(&mut self) {
        if self.released {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let (store, path, token) = (self.store.clone(), self.path.clone(), self.token.clone());
            rt.spawn(async move { release(&store, &path, &token).await });
        }
    }
}

/// The error of a publish or rollback whose pointer update lost the race.
pub(crate) fn moved_concurrently(pointer_url: &str, target: &str, now: Option<&str>) -> Error {
    let to = now.map_or_else(|| "nothing (it was deleted)".to_owned(), str::to_owned);
    Error::new(
        ErrorKind::PublishCurrent,
        format!(
            "{pointer_url} was moved concurrently (by another publish or a rollback) to {to}; \
             it was not changed to {target}, which is published but not current. Check \
             `shardy history`, and make it current on purpose if it should be \
             (`shardy rollback --ref {target}`)"
        ),
    )
    .with_manifest_ref(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_sits_beside_the_pointer() {
        // Segments that need percent-encoding keep their one encoding (no double encoding).
        let p = Path::from_iter(["data dir", "snap%x", "_CURRENT"]);
        let parts =
            |p: &Path| -> Vec<String> { p.parts().map(|p| p.as_ref().to_owned()).collect() };
        let mut want = parts(&p);
        want[2] = "_CURRENT.lock".to_owned();
        assert_eq!(parts(&Lock::path_beside(&p)), want);
        assert_eq!(want[1], "snap%25x");
    }
}
