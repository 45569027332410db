//! The one public error type of shardyfusion and its coarse kinds.
//!
//! Every failure carries an [`ErrorKind`] that tells the caller what to do (retry, or fix the
//! input), a message that names the offending value, and optionally the backend error as
//! `source`. Backend error types (`object_store`, `slatedb`, `rusqlite`, `postgres`) never appear
//! in the public API except through [`std::error::Error::source`].

use std::fmt;

/// A boxed error from a backend, kept as the `source` of an [`Error`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with shardyfusion's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, coarsely: the names mirror the error names of the specification.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Invalid configuration, option, input record, key, routing context or CEL expression.
    ConfigValidation,
    /// A shard database binding is unavailable or incompatible, or a shard read failed.
    DbAdapter,
    /// Building the manifest image or rows failed.
    ManifestBuild,
    /// Pointer or manifest bytes are invalid, or a manifest was not found in a database store.
    ManifestParse,
    /// The manifest store's transport or query failed, or a manifest object is missing.
    ManifestStore,
    /// A reader pool checkout timed out.
    PoolExhausted,
    /// The manifest was written but the `_CURRENT` pointer could not be updated.
    PublishCurrent,
    /// The manifest upload or database publish failed; nothing became current.
    PublishManifest,
    /// The reader is closed or not opened, `_CURRENT` is missing, or fallback was exhausted.
    ReaderState,
    /// A transient object-storage failure persisted through the storage retry policy.
    S3Transient,
    /// Routing verification mismatch, out-of-range or non-dense ids, unknown categorical token
    /// at write time, or a CEL runtime error.
    ShardAssignment,
    /// Attempt results with a `db_id` outside `[0, num_dbs)` or a shard without a result.
    ShardCoverage,
    /// A shard write, flush, seal or close failed, or a shard operation timed out.
    ShardWrite,
}

impl ErrorKind {
    /// Every kind, in the order of the specification's error table.
    pub const ALL: &'static [ErrorKind] = &[
        ErrorKind::ConfigValidation,
        ErrorKind::DbAdapter,
        ErrorKind::ManifestBuild,
        ErrorKind::ManifestParse,
        ErrorKind::ManifestStore,
        ErrorKind::PoolExhausted,
        ErrorKind::PublishCurrent,
        ErrorKind::PublishManifest,
        ErrorKind::ReaderState,
        ErrorKind::S3Transient,
        ErrorKind::ShardAssignment,
        ErrorKind::ShardCoverage,
        ErrorKind::ShardWrite,
    ];

    /// The stable name of the kind, as used in run records and CLI error output.
    pub const fn name(self) -> &'static str {
        match self {
            ErrorKind::ConfigValidation => "ConfigValidation",
            ErrorKind::DbAdapter => "DbAdapter",
            ErrorKind::ManifestBuild => "ManifestBuild",
            ErrorKind::ManifestParse => "ManifestParse",
            ErrorKind::ManifestStore => "ManifestStore",
            ErrorKind::PoolExhausted => "PoolExhausted",
            ErrorKind::PublishCurrent => "PublishCurrent",
            ErrorKind::PublishManifest => "PublishManifest",
            ErrorKind::ReaderState => "ReaderState",
            ErrorKind::S3Transient => "S3Transient",
            ErrorKind::ShardAssignment => "ShardAssignment",
            ErrorKind::ShardCoverage => "ShardCoverage",
            ErrorKind::ShardWrite => "ShardWrite",
        }
    }

    /// Whether an operation that failed with this kind may succeed when tried again unchanged.
    pub const fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorKind::ManifestStore
                | ErrorKind::PoolExhausted
                | ErrorKind::PublishCurrent
                | ErrorKind::PublishManifest
                | ErrorKind::S3Transient
                | ErrorKind::ShardWrite
        )
    }

    /// When the kind is raised, in one sentence (used for the generated error reference).
    pub const fn description(self) -> &'static str {
        match self {
            ErrorKind::ConfigValidation => {
                "Invalid config, option, input record, key, routing context, CEL compile/binding/result type; \
                 unsupported manifest features; PostgreSQL `ensure_table` failure."
            }
            ErrorKind::DbAdapter => {
                "Shard database binding unavailable or incompatible, non-transient shard open failure, \
                 shard read failure, explicit close failure."
            }
            ErrorKind::ManifestBuild => {
                "Building the manifest image or rows failed (SQLite error, store limits such as a 32-bit `row_count`)."
            }
            ErrorKind::ManifestParse => {
                "Pointer or manifest bytes invalid, or a manifest/ref not found in a database store."
            }
            ErrorKind::ManifestStore => {
                "Manifest store transport or query failure, or a missing manifest object."
            }
            ErrorKind::PoolExhausted => "A reader pool checkout timed out.",
            ErrorKind::PublishCurrent => {
                "The manifest was written but the pointer update failed after retries (carries `manifest_ref`)."
            }
            ErrorKind::PublishManifest => {
                "The manifest upload or database publish failed; nothing became current."
            }
            ErrorKind::ReaderState => {
                "Reader closed or not opened, `_CURRENT` missing, or manifest fallback exhausted."
            }
            ErrorKind::S3Transient => {
                "Throttling, 5xx, timeout or connection error that persisted through the storage retry policy."
            }
            ErrorKind::ShardAssignment => {
                "Routing verification mismatch, out-of-range or non-dense shard ids, unknown categorical token \
                 at write time, CEL runtime error."
            }
            ErrorKind::ShardCoverage => {
                "Attempt results with a `db_id` outside `[0, num_dbs)` or a shard without a result."
            }
            ErrorKind::ShardWrite => {
                "Shard write, flush, seal or close failure, transient open failure, operation timeout."
            }
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error type of every shardyfusion crate.
///
/// ```
/// use shardyfusion_core::{Error, ErrorKind};
///
/// let err = Error::config("batch_size must be > 0, got 0");
/// assert_eq!(err.kind(), ErrorKind::ConfigValidation);
/// assert!(!err.is_retryable());
/// assert_eq!(err.to_string(), "ConfigValidation: batch_size must be > 0, got 0");
/// ```
#[derive(thiserror::Error)]
#[error("{kind}: {message}")]
pub struct Error {
    kind: ErrorKind,
    message: String,
    manifest_ref: Option<String>,
    input_row: Option<u64>,
    #[source]
    source: Option<BoxError>,
}

impl Error {
    /// An error of `kind` with a message that names the offending value and the rule it broke.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            manifest_ref: None,
            input_row: None,
            source: None,
        }
    }

    /// Shorthand for [`ErrorKind::ConfigValidation`].
    pub fn config(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::ConfigValidation, message)
    }

    /// A second publish of `run_id` into `store` (SPEC 15.1): `ConfigValidation` "run id
    /// already published", the same words from every manifest store.
    pub fn run_id_published(run_id: &str, store: &str) -> Self {
        Error::config(format!(
            "run id already published: {run_id:?} already has a manifest in {store}; published \
             manifests never change, so publish under a new run id"
        ))
    }

    /// Shorthand for [`ErrorKind::ManifestParse`].
    pub fn manifest_parse(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::ManifestParse, message)
    }

    /// Attach the backend error that caused this one.
    #[must_use]
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Attach the manifest reference (set on [`ErrorKind::PublishCurrent`]).
    #[must_use]
    pub fn with_manifest_ref(mut self, manifest_ref: impl Into<String>) -> Self {
        self.manifest_ref = Some(manifest_ref.into());
        self
    }

    /// Attach the 0-based number of the input row (in the order the write consumed its input)
    /// that caused this error, so a caller that fed several files can name the file and line.
    #[must_use]
    pub fn with_input_row(mut self, row: u64) -> Self {
        self.input_row = Some(row);
        self
    }

    /// The input row that caused this error, when a write could tell (see
    /// [`Error::with_input_row`]).
    pub fn input_row(&self) -> Option<u64> {
        self.input_row
    }

    /// The coarse kind.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, without the kind prefix.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The manifest that was written but not made current, for [`ErrorKind::PublishCurrent`].
    pub fn manifest_ref(&self) -> Option<&str> {
        self.manifest_ref.as_deref()
    }

    /// Whether retrying the same operation may succeed.
    pub fn is_retryable(&self) -> bool {
        self.kind.is_retryable()
    }

    /// A copy of this error with the same kind, message and manifest ref; the source is kept as
    /// its rendered text (backend errors are not `Clone`).
    pub fn to_detached(&self) -> Error {
        Error {
            kind: self.kind,
            message: self.message.clone(),
            manifest_ref: self.manifest_ref.clone(),
            input_row: self.input_row,
            source: self.source.as_ref().map(|s| BoxError::from(s.to_string())),
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind).field("message", &self.message);
        if let Some(r) = &self.manifest_ref {
            d.field("manifest_ref", r);
        }
        if let Some(s) = &self.source {
            d.field("source", &s.to_string());
        }
        d.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_kinds_match_the_spec_table() {
        let retryable: Vec<_> = ErrorKind::ALL
            .iter()
            .filter(|k| k.is_retryable())
            .map(|k| k.name())
            .collect();
        assert_eq!(
            retryable,
            [
                "ManifestStore",
                "PoolExhausted",
                "PublishCurrent",
                "PublishManifest",
                "S3Transient",
                "ShardWrite"
            ]
        );
        assert_eq!(ErrorKind::ALL.len(), 13);
    }

    #[test]
    fn source_and_manifest_ref_are_kept() {
        let io = std::io::Error::other("disk on fire");
        let err = Error::new(ErrorKind::PublishCurrent, "pointer update failed")
            .with_source(io)
            .with_manifest_ref("s3://b/p/manifests/x/manifest");
        assert_eq!(err.manifest_ref(), Some("s3://b/p/manifests/x/manifest"));
        let src = std::error::Error::source(&err).map(|s| s.to_string());
        assert_eq!(src.as_deref(), Some("disk on fire"));
        let detached = err.to_detached();
        assert_eq!(detached.kind(), ErrorKind::PublishCurrent);
        assert!(format!("{detached:?}").contains("disk on fire"));
    }
}
