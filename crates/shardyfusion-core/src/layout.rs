//! Prefix URLs, URL joining and the object layout under a snapshot prefix.
//!
//! A snapshot lives under one prefix: `s3://bucket/key-prefix`, `file:///abs/dir`,
//! `memory://name/key-prefix`, or a plain filesystem path (the embedded default). This module
//! validates and classifies those strings and renders every path inside the prefix; turning them
//! into object stores is the storage crate's job.

use std::fmt;

use crate::error::{Error, Result};

/// A validated snapshot prefix, classified by scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrefixUrl {
    /// `s3://<bucket>/<key>`.
    S3 {
        /// Bucket name.
        bucket: String,
        /// Key prefix inside the bucket, without leading or trailing `/`.
        key: String,
    },
    /// `file:///<absolute dir>`.
    File {
        /// Absolute directory, without a trailing `/`.
        path: String,
    },
    /// `memory://<name>/<key>`: a process-global in-memory store registered under `name`.
    Memory {
        /// Name of the in-memory store.
        name: String,
        /// Key prefix inside the store (may be empty).
        key: String,
    },
    /// A filesystem path (absolute or relative); stored as the `file://` URL of its absolute form.
    LocalPath {
        /// The path as given.
        path: String,
    },
}

impl PrefixUrl {
    /// Validate and classify a prefix URL.
    ///
    /// ```
    /// use shardyfusion_core::PrefixUrl;
    /// let p = PrefixUrl::parse("s3://bucket/a/b/").unwrap();
    /// assert_eq!(p, PrefixUrl::S3 { bucket: "bucket".into(), key: "a/b".into() });
    /// assert!(PrefixUrl::parse("s3://bucket/").is_err());
    /// assert!(matches!(PrefixUrl::parse("./data").unwrap(), PrefixUrl::LocalPath { .. }));
    /// ```
    pub fn parse(url: &str) -> Result<Self> {
        if url.trim().is_empty() {
            return Err(Error::config("prefix URL must not be empty"));
        }
        let Some((scheme, rest)) = url.split_once("://") else {
            return Ok(PrefixUrl::LocalPath {
                path: url.to_owned(),
            });
        };
        match scheme {
            "s3" => {
                let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
                if bucket.is_empty() {
                    return Err(Error::config(format!(
                        "prefix URL {url:?} has an empty bucket"
                    )));
                }
                let key = key.trim_matches('/');
                if key.is_empty() {
                    return Err(Error::config(format!(
                        "prefix URL {url:?} has an empty key prefix: use s3://{bucket}/<prefix>"
                    )));
                }
                Ok(PrefixUrl::S3 {
                    bucket: bucket.to_owned(),
                    key: key.to_owned(),
                })
            }
            "file" => {
                if !rest.starts_with('/') {
                    return Err(Error::config(format!(
                        "prefix URL {url:?} must name an absolute directory (file:///abs/dir)"
                    )));
                }
                let path = rest.trim_end_matches('/');
                if path.is_empty() {
                    return Err(Error::config(format!(
                        "prefix URL {url:?} must not be the filesystem root"
                    )));
                }
                Ok(PrefixUrl::File {
                    path: path.to_owned(),
                })
            }
            "memory" => {
                let (name, key) = rest.split_once('/').unwrap_or((rest, ""));
                if name.is_empty() {
                    return Err(Error::config(format!(
                        "prefix URL {url:?} has an empty store name"
                    )));
                }
                Ok(PrefixUrl::Memory {
                    name: name.to_owned(),
                    key: key.trim_matches('/').to_owned(),
                })
            }
            other => Err(Error::config(format!(
                "prefix URL {url:?} has unsupported scheme {other:?}: use s3://, file://, memory:// or a path"
            ))),
        }
    }
}

/// Join URL parts: strip trailing `/` from `base`, strip leading and trailing `/` from every
/// non-empty part, join with `/`.
///
/// ```
/// use shardyfusion_core::url_join;
/// assert_eq!(url_join("s3://b/p/", &["/shards/", "", "db=00001"]), "s3://b/p/shards/db=00001");
/// ```
pub fn url_join(base: &str, parts: &[&str]) -> String {
    let mut out = base.trim_end_matches('/').to_owned();
    for part in parts {
        let p = part.trim_matches('/');
        if !p.is_empty() {
            out.push('/');
            out.push_str(p);
        }
    }
    out
}

/// Check a single-segment path setting (`shard_prefix`, `run_registry_prefix`): non-empty,
/// characters `[A-Za-z0-9._-]`, not `.` or `..`.
pub fn validate_path_segment(setting: &str, value: &str) -> Result<()> {
    let ok_chars = value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if value.is_empty() || !ok_chars || value.contains("..") || value == "." {
        return Err(Error::config(format!(
            "{setting} must be a single path segment of [A-Za-z0-9._-] without '..', got {value:?}"
        )));
    }
    Ok(())
}

/// Longest run id a writer accepts (it is a path segment of every shard and manifest).
pub const MAX_RUN_ID_LEN: usize = 128;

/// Check a run id a writer is given: 1 to 128 characters of `[A-Za-z0-9._-]`, not `.` or `..`
/// (it becomes a path segment of every shard URL and manifest directory). Run ids read from
/// storage are not checked: the Python writer does not validate them.
pub fn validate_run_id(run_id: &str) -> Result<()> {
    let ok_chars = run_id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if run_id.is_empty()
        || run_id.len() > MAX_RUN_ID_LEN
        || !ok_chars
        || run_id == "."
        || run_id == ".."
    {
        return Err(Error::config(format!(
            "run_id must be 1 to {MAX_RUN_ID_LEN} characters of [A-Za-z0-9._-] (not '.' or '..'), \
             got {run_id:?}"
        )));
    }
    Ok(())
}

/// Format an attempt number as `attempt=<NN>` (minimum width 2).
pub fn attempt_segment(attempt: u32) -> String {
    format!("attempt={attempt:02}")
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum TemplatePart {
    Literal(String),
    DbId { width: usize, zero: bool },
}

/// A `db_path_template` such as `db={db_id:05d}`: the subset of Python's `str.format` made of
/// literal text, `{{`, `}}`, `{db_id}`, `{db_id:d}`, `{db_id:Nd}` and `{db_id:0Nd}`.
#[derive(Clone, PartialEq, Eq)]
pub struct DbPathTemplate {
    source: String,
    parts: Vec<TemplatePart>,
}

/// The default shard path template.
pub const DEFAULT_DB_PATH_TEMPLATE: &str = "db={db_id:05d}";

impl DbPathTemplate {
    /// Parse a template; anything outside the supported subset is a `ConfigValidation` error.
    ///
    /// ```
    /// use shardyfusion_core::DbPathTemplate;
    /// let t = DbPathTemplate::parse("db={db_id:05d}").unwrap();
    /// assert_eq!(t.render(7), "db=00007");
    /// assert_eq!(DbPathTemplate::parse("{{x}}/{db_id:3d}").unwrap().render(5), "{x}/  5");
    /// assert!(DbPathTemplate::parse("{shard}").is_err());
    /// ```
    pub fn parse(template: &str) -> Result<Self> {
        let bad = |why: &str| {
            Error::config(format!(
                "db_path_template {template:?} is not supported ({why}); use literal text, '{{{{', '}}}}', \
                 {{db_id}}, {{db_id:d}}, {{db_id:Nd}} or {{db_id:0Nd}}"
            ))
        };
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut chars = template.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    lit.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    lit.push('}');
                }
                '}' => return Err(bad("single '}'")),
                '{' => {
                    let mut field = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(ch) => field.push(ch),
                            None => return Err(bad("unclosed '{'")),
                        }
                    }
                    let spec = match field.split_once(':') {
                        None if field == "db_id" => "",
                        Some(("db_id", spec)) => spec,
                        _ => return Err(bad(&format!("unknown field {{{field}}}"))),
                    };
                    let (zero, width) = match spec {
                        "" | "d" => (false, 0),
                        s => {
                            let digits = s
                                .strip_suffix('d')
                                .ok_or_else(|| bad("format spec must end in 'd'"))?;
                            let zero = digits.starts_with('0') && digits.len() > 1;
                            let w = if zero { &digits[1..] } else { digits };
                            if w.is_empty() || !w.bytes().all(|b| b.is_ascii_digit()) {
                                return Err(bad(&format!("format spec {s:?}")));
                            }
                            let width: usize = w.parse().map_err(|_| bad("width too large"))?;
                            if width > 64 {
                                return Err(bad("width above 64"));
                            }
                            (zero, width)
                        }
                    };
                    if !lit.is_empty() {
                        parts.push(TemplatePart::Literal(std::mem::take(&mut lit)));
                    }
                    parts.push(TemplatePart::DbId { width, zero });
                }
                c => lit.push(c),
            }
        }
        if !lit.is_empty() {
            parts.push(TemplatePart::Literal(lit));
        }
        Ok(DbPathTemplate {
            source: template.to_owned(),
            parts,
        })
    }

    /// The template text as given (stored verbatim in the manifest).
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Render the path of shard `db_id`.
    pub fn render(&self, db_id: u32) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                TemplatePart::Literal(s) => out.push_str(s),
                TemplatePart::DbId { width, zero: true } => {
                    out.push_str(&format!("{db_id:0width$}"))
                }
                TemplatePart::DbId { width, zero: false } => {
                    out.push_str(&format!("{db_id:>width$}"))
                }
            }
        }
        out
    }
}

impl Default for DbPathTemplate {
    fn default() -> Self {
        DbPathTemplate {
            source: DEFAULT_DB_PATH_TEMPLATE.to_owned(),
            parts: vec![
                TemplatePart::Literal("db=".to_owned()),
                TemplatePart::DbId {
                    width: 5,
                    zero: true,
                },
            ],
        }
    }
}

impl fmt::Debug for DbPathTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DbPathTemplate({:?})", self.source)
    }
}

/// Default prefix of the run registry under the snapshot prefix (SPEC 2.4).
pub const DEFAULT_RUN_REGISTRY_PREFIX: &str = "runs";

/// The directory of one run record: `<TS>_run_id=<run_id>_<uuid4hex>` (SPEC 2), with `ts` in
/// its key form and `uuid_hex` the 32 hex digits of a UUIDv4.
pub fn run_record_dir(ts: &str, run_id: &str, uuid_hex: &str) -> String {
    format!("{ts}_run_id={run_id}_{uuid_hex}")
}

/// The run id in a run record directory name made by [`run_record_dir`], or `None` when the
/// name is not one.
pub fn run_id_of_record_dir(dir: &str) -> Option<&str> {
    let rest = &dir[dir.find("_run_id=")? + "_run_id=".len()..];
    let (id, suffix) = rest.rsplit_once('_')?;
    (!id.is_empty() && suffix.len() == 32 && suffix.bytes().all(|b| b.is_ascii_hexdigit()))
        .then_some(id)
}

/// The `db_url` of one shard attempt:
/// `join(prefix, shard_prefix, "run_id=" + run_id, db_path, "attempt=" + NN)`.
pub fn shard_attempt_url(
    prefix: &str,
    shard_prefix: &str,
    run_id: &str,
    template: &DbPathTemplate,
    db_id: u32,
    attempt: u32,
) -> String {
    url_join(
        prefix,
        &[
            shard_prefix,
            &format!("run_id={run_id}"),
            &template.render(db_id),
            &attempt_segment(attempt),
        ],
    )
}

/// Where a run's shard-attempt claims live, relative to the prefix: `_claims/run_id=<run_id>`
/// (a writer claims `<db_id:05>.<NN>` there create-only before it opens an attempt, so two
/// runs of one engine task never share a `db_url`).
pub fn attempt_claims_dir(run_id: &str) -> String {
    format!("_claims/run_id={run_id}")
}

/// The claim object of one shard attempt: `join(prefix, attempt_claims_dir(run_id),
/// "<db_id:05>.<NN>")`.
pub fn attempt_claim_url(prefix: &str, run_id: &str, db_id: u32, attempt: u32) -> String {
    url_join(
        prefix,
        &[
            &attempt_claims_dir(run_id),
            &format!("{db_id:05}.{attempt:02}"),
        ],
    )
}

/// `(db_id, attempt)` of a claim object's name (`<db_id:05>.<NN>`), or `None`.
pub fn parse_attempt_claim(name: &str) -> Option<(u32, u32)> {
    let (db, attempt) = name.split_once('.')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(db) || !digits(attempt) {
        return None;
    }
    Some((db.parse().ok()?, attempt.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn claim_names_round_trip() {
        let url = attempt_claim_url("s3://b/p", "r1", 7, 123);
        let name = url.rsplit('/').next().unwrap();
        assert_eq!(parse_attempt_claim(name), Some((7, 123)));
        assert_eq!(parse_attempt_claim("00007"), None);
        assert_eq!(parse_attempt_claim("0x7.01"), None);
        assert_eq!(parse_attempt_claim(".01"), None);
    }

    #[test]
    fn run_record_dirs_round_trip() {
        let dir = run_record_dir(
            "2026-12-01T10:00:00.000000Z",
            "abc_def",
            "0123456789abcdef0123456789abcdef",
        );
        assert_eq!(
            dir,
            "2026-12-01T10:00:00.000000Z_run_id=abc_def_0123456789abcdef0123456789abcdef"
        );
        assert_eq!(run_id_of_record_dir(&dir), Some("abc_def"));
        assert_eq!(run_id_of_record_dir("2026_run_id=abc"), None);
        assert_eq!(run_id_of_record_dir("manifests"), None);
    }

    fn rejects(url: &str, needle: &str) {
        let err = PrefixUrl::parse(url).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ConfigValidation);
        assert!(err.message().contains(needle), "{url}: {err}");
    }

    #[test]
    fn prefix_rules() {
        rejects("", "empty");
        rejects("gs://b/p", "\"gs\"");
        rejects("s3:///p", "empty bucket");
        rejects("s3://bucket", "empty key prefix");
        rejects("s3://bucket/", "empty key prefix");
        rejects("file://relative/dir", "absolute");
        rejects("file:///", "root");
        rejects("memory:///x", "empty store name");
        assert_eq!(
            PrefixUrl::parse("file:///tmp/x/").unwrap(),
            PrefixUrl::File {
                path: "/tmp/x".into()
            }
        );
        assert_eq!(
            PrefixUrl::parse("memory://t/a").unwrap(),
            PrefixUrl::Memory {
                name: "t".into(),
                key: "a".into()
            }
        );
    }

    #[test]
    fn layout_paths() {
        let t = DbPathTemplate::default();
        assert_eq!(
            shard_attempt_url("s3://bucket/prefix/", "shards", "abc", &t, 7, 1),
            "s3://bucket/prefix/shards/run_id=abc/db=00007/attempt=01"
        );
        assert_eq!(attempt_segment(123), "attempt=123");
        assert_eq!(DbPathTemplate::parse(DEFAULT_DB_PATH_TEMPLATE).unwrap(), t);
        assert_eq!(DbPathTemplate::parse("p{db_id}").unwrap().render(12), "p12");
        assert_eq!(DbPathTemplate::parse("{db_id:d}").unwrap().render(3), "3");
    }

    #[test]
    fn template_rejections_name_the_template() {
        for bad in [
            "{db_id:x}",
            "{db_id:05}",
            "{id}",
            "{db_id",
            "a}b",
            "{db_id!r}",
            "{db_id:+5d}",
            "{}",
        ] {
            let err = DbPathTemplate::parse(bad).unwrap_err();
            assert!(err.message().contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn segments() {
        for ok in ["shards", "a.b_c-1"] {
            validate_path_segment("shard_prefix", ok).unwrap();
        }
        for bad in ["", "a/b", "a\\b", "..", ".", "a..b", "sp ace", "é"] {
            let err = validate_path_segment("shard_prefix", bad).unwrap_err();
            assert!(err.message().contains(&format!("{bad:?}")), "{err}");
        }
        for bad in ["a/b", "", ".", "..", "a b", "a=b", "a\\b", "ü"] {
            assert!(validate_run_id(bad).is_err(), "{bad:?}");
        }
        assert!(validate_run_id(&"a".repeat(MAX_RUN_ID_LEN + 1)).is_err());
        for good in [
            "r1",
            "0123abcdef",
            "nightly-2026.12.02_a",
            &"a".repeat(MAX_RUN_ID_LEN),
        ] {
            validate_run_id(good).unwrap();
        }
    }
}
