//! Conditional updates of the `_CURRENT` pointer (SPEC 15.2): compare-and-swap against the
//! version read before the publish, by ETag (`If-Match` / `If-None-Match`) where the store
//! supports it, under an exclusive lock file on local directories, where it does not.

use std::time::Duration;

use shardyfusion_core::{Error, ErrorKind, Timestamp};
use shardyfusion_storage::object_store::path::Path;
use shardyfusion_storage::object_store::{
    GetOptions, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion,
};
use shardyfusion_storage::{ErrorClass, RetryFailure, StorageResolver, StoreLocation};

/// A lock file older than this is left over from a crashed publisher and may be broken.
const LOCK_STALE: Duration = Duration::from_secs(30);
/// How long a publisher waits for another one's lock before giving up.
const LOCK_WAIT: Duration = Duration::from_secs(10);

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

/// How the pointer object of one store is updated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UpdateMode {
    /// `PutMode::Create` / `PutMode::Update` (S3, memory).
    Versioned,
    /// A lock file held across read, compare and the atomic rename of the new pointer (local
    /// directories: `LocalFileSystem` has no `PutMode::Update`).
    Locked,
    /// Plain overwrite: only when the user opted into unconditional writes.
    Unconditional,
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
            put(
                resolver,
                loc,
                path,
                body,
                PutOptions {
                    mode: PutMode::Overwrite,
                    ..opts
                },
            )
            .await
        }
        UpdateMode::Locked => {
            let lock = lock_path(path);
            acquire(resolver, loc, &lock).await?;
            let res = async {
                let now = read(resolver, loc, path).await?;
                if now.bytes() != seen.bytes() {
                    return Ok(Swap::Lost);
                }
                put(
                    resolver,
                    loc,
                    path,
                    body,
                    PutOptions {
                        mode: PutMode::Overwrite,
                        ..opts
                    },
                )
                .await
            }
            .await;
            // Release even when the update failed; a lock left behind goes stale.
            if let Err(e) = loc.store.delete(&lock).await {
                tracing::warn!(lock = %lock, error = %e, "could not remove the pointer lock file");
            }
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

fn lock_path(pointer: &Path) -> Path {
    Path::from(format!("{pointer}.lock"))
}

/// Take the lock file (create-only); break it when it is stale.
async fn acquire(
    resolver: &StorageResolver,
    loc: &StoreLocation,
    lock: &Path,
) -> std::result::Result<(), RetryFailure> {
    let started = std::time::Instant::now();
    let mut pause = Duration::from_millis(2);
    loop {
        let body = format!("pid={} at={}", std::process::id(), Timestamp::now());
        let opts = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match put(resolver, loc, lock, body.as_bytes(), opts).await? {
            Swap::Done => return Ok(()),
            Swap::Lost => {}
        }
        if let Ok(meta) = loc.store.head(lock).await {
            let age = chrono_age(meta.last_modified);
            if age > LOCK_STALE {
                tracing::warn!(lock = %lock, ?age, "breaking a stale pointer lock file");
                let _ = loc.store.delete(lock).await;
                continue;
            }
        }
        if started.elapsed() > LOCK_WAIT {
            return Err(RetryFailure {
                class: ErrorClass::Transient,
                attempts: 1,
                error: shardyfusion_storage::object_store::Error::AlreadyExists {
                    path: lock.to_string(),
                    source: format!(
                        "another publisher has held the pointer lock for over {LOCK_WAIT:?}; if \
                         none is running, delete the lock file"
                    )
                    .into(),
                },
            });
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

fn chrono_age(t: chrono::DateTime<chrono::Utc>) -> Duration {
    (chrono::Utc::now() - t).to_std().unwrap_or_default()
}

/// The error of a publish or rollback whose pointer update lost the race.
pub(crate) fn moved_concurrently(pointer_url: &str, target: &str, now: Option<&str>) -> Error {
    let to = now.map_or_else(|| "nothing (it was deleted)".to_owned(), str::to_owned);
    Error::new(
        ErrorKind::PublishCurrent,
        format!(
            "{pointer_url} was moved concurrently (by another publish or a rollback) to {to}; \
             it was not changed to {target}. Check `shardy history` and publish or roll back \
             again on purpose"
        ),
    )
    .with_manifest_ref(target)
}
