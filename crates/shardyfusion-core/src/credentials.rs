//! S3 credentials, credential providers, and S3 connection options.
//!
//! Secrets are held in [`SecretString`], whose `Debug` and `Display` print `***`, so credentials
//! can sit in configs that are logged without leaking.
//!
//! ```
//! use shardyfusion_core::{CredentialProvider, StaticCredentialProvider};
//! let p = StaticCredentialProvider::new("AKIA123", "very-secret", None);
//! let creds = p.resolve().unwrap().unwrap();
//! assert_eq!(creds.secret_access_key.expose(), "very-secret");
//! assert!(!format!("{p:?}").contains("very-secret"));
//! ```

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};

/// A string that never shows itself in `Debug` or `Display` output.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct SecretString(String);

impl SecretString {
    /// Wrap a secret.
    pub fn new(s: impl Into<String>) -> Self {
        SecretString(s.into())
    }

    /// The secret itself, for handing to a client library.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl From<&str> for SecretString {
    fn from(s: &str) -> Self {
        SecretString::new(s)
    }
}
impl From<String> for SecretString {
    fn from(s: String) -> Self {
        SecretString(s)
    }
}

/// Access key credentials for an S3-compatible store.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Credentials {
    /// The access key id (not secret, printed in `Debug`).
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: SecretString,
    /// An optional session token.
    pub session_token: Option<SecretString>,
    /// When these credentials stop working (`None` = never). Storage asks the provider again
    /// shortly before this moment, so a long-running reader survives rotation.
    pub expires_at: Option<std::time::SystemTime>,
}

impl fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &self.secret_access_key)
            .field("session_token", &self.session_token.as_ref().map(|_| "***"))
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Supplies credentials. Providers are immutable and shareable across threads.
///
/// Storage calls `resolve` when it first needs credentials and again shortly before the
/// [`expires_at`](S3Credentials::expires_at) of the last ones, off the async worker threads (a
/// provider may read files or call a service).
pub trait CredentialProvider: Send + Sync + fmt::Debug {
    /// The credentials to use. `None` means "none here": the environment provider returns it
    /// when no keys are set, and storage then uses the default chain (web identity, container
    /// and instance metadata; SPEC 15.5). A provider given explicitly must return credentials;
    /// from it `None` is an authentication error (remove it to use the default chain).
    fn resolve(&self) -> Result<Option<S3Credentials>>;
}

/// Fixed credentials given inline.
#[derive(Clone, Debug)]
pub struct StaticCredentialProvider {
    credentials: S3Credentials,
}

impl StaticCredentialProvider {
    /// Credentials from their parts.
    pub fn new(
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<SecretString>,
        session_token: Option<SecretString>,
    ) -> Self {
        StaticCredentialProvider {
            credentials: S3Credentials {
                access_key_id: access_key_id.into(),
                secret_access_key: secret_access_key.into(),
                session_token,
                expires_at: None,
            },
        }
    }
}

impl CredentialProvider for StaticCredentialProvider {
    fn resolve(&self) -> Result<Option<S3Credentials>> {
        Ok(Some(self.credentials.clone()))
    }
}

/// A function that reads one environment variable (injectable for tests).
pub type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// The process environment as an [`EnvLookup`].
pub fn process_env() -> EnvLookup {
    Arc::new(|name| std::env::var(name).ok())
}

fn first_non_empty(env: &EnvLookup, names: &[&str]) -> Option<String> {
    names.iter().find_map(|n| env(n).filter(|v| !v.is_empty()))
}

/// Credentials from the environment: per field the first non-empty of `S3_ACCESS_KEY_ID`,
/// `AWS_ACCESS_KEY_ID`; `S3_SECRET_ACCESS_KEY`, `AWS_SECRET_ACCESS_KEY`; `S3_SESSION_TOKEN`,
/// `AWS_SESSION_TOKEN`. Resolves to `None` unless both the key id and the secret are set.
#[derive(Clone)]
pub struct EnvCredentialProvider {
    env: EnvLookup,
}

impl EnvCredentialProvider {
    /// Read the process environment.
    pub fn new() -> Self {
        EnvCredentialProvider { env: process_env() }
    }

    /// Read variables through `lookup` instead of the process environment.
    pub fn with_lookup(lookup: EnvLookup) -> Self {
        EnvCredentialProvider { env: lookup }
    }
}

impl Default for EnvCredentialProvider {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for EnvCredentialProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EnvCredentialProvider")
    }
}

impl CredentialProvider for EnvCredentialProvider {
    fn resolve(&self) -> Result<Option<S3Credentials>> {
        let id = first_non_empty(&self.env, &["S3_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID"]);
        let secret = first_non_empty(
            &self.env,
            &["S3_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY"],
        );
        let token = first_non_empty(&self.env, &["S3_SESSION_TOKEN", "AWS_SESSION_TOKEN"]);
        Ok(match (id, secret) {
            (Some(access_key_id), Some(secret)) => Some(S3Credentials {
                access_key_id,
                secret_access_key: SecretString(secret),
                session_token: token.map(SecretString),
                expires_at: None,
            }),
            _ => None,
        })
    }
}

/// S3 URL addressing style.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AddressingStyle {
    /// Let the client decide (the default).
    #[default]
    Auto,
    /// `https://endpoint/bucket/key`.
    Path,
    /// `https://bucket.endpoint/key`.
    Virtual,
}

impl std::str::FromStr for AddressingStyle {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(AddressingStyle::Auto),
            "path" => Ok(AddressingStyle::Path),
            "virtual" => Ok(AddressingStyle::Virtual),
            other => Err(Error::config(format!(
                "addressing_style must be one of path, virtual, auto; got {other:?}"
            ))),
        }
    }
}

/// TLS verification.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum VerifySsl {
    /// Verify against the system roots (the default).
    #[default]
    Verify,
    /// Accept any certificate.
    Skip,
    /// Verify against an extra CA bundle (PEM file).
    CaBundle(PathBuf),
}

/// Connection options for an S3-compatible endpoint. Unset fields fall back to the
/// environment (`SLATEDB_S3_ENDPOINT_URL`; `S3_REGION`, `AWS_REGION`) or the client default.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct S3ConnectionOptions {
    /// Endpoint URL, e.g. `http://127.0.0.1:9000`; `http://` allows plain HTTP.
    pub endpoint_url: Option<String>,
    /// Region name.
    pub region_name: Option<String>,
    /// Addressing style.
    pub addressing_style: AddressingStyle,
    /// Accepted for compatibility and ignored (SigV4 is always used).
    pub signature_version: Option<String>,
    /// TLS verification.
    pub verify_ssl: VerifySsl,
    /// TCP connect timeout.
    pub connect_timeout: Option<Duration>,
    /// Per-request timeout.
    pub read_timeout: Option<Duration>,
    /// Total attempts per request (retries = attempts − 1).
    pub max_attempts: Option<u32>,
    /// Send unsigned requests (public buckets). Off by default: without credentials the
    /// default chain (environment, web identity, container and instance metadata) is used.
    pub anonymous: bool,
}

impl S3ConnectionOptions {
    /// Options with every field unset.
    pub fn new() -> Self {
        Self::default()
    }

    /// Set the endpoint URL.
    #[must_use]
    pub fn with_endpoint_url(mut self, url: impl Into<String>) -> Self {
        self.endpoint_url = Some(url.into());
        self
    }

    /// Set the region.
    #[must_use]
    pub fn with_region(mut self, region: impl Into<String>) -> Self {
        self.region_name = Some(region.into());
        self
    }

    /// Set the addressing style.
    #[must_use]
    pub fn with_addressing_style(mut self, style: AddressingStyle) -> Self {
        self.addressing_style = style;
        self
    }

    /// Set TLS verification.
    #[must_use]
    pub fn with_verify_ssl(mut self, verify: VerifySsl) -> Self {
        self.verify_ssl = verify;
        self
    }

    /// Set the connect timeout.
    #[must_use]
    pub fn with_connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = Some(d);
        self
    }

    /// Set the per-request timeout.
    #[must_use]
    pub fn with_read_timeout(mut self, d: Duration) -> Self {
        self.read_timeout = Some(d);
        self
    }

    /// Send unsigned requests (anonymous access to a public bucket).
    #[must_use]
    pub fn with_anonymous(mut self, on: bool) -> Self {
        self.anonymous = on;
        self
    }

    /// Set the total attempts per request.
    #[must_use]
    pub fn with_max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = Some(n);
        self
    }

    /// Check the options: timeouts > 0, `max_attempts` ≥ 1, endpoint is an http(s) URL.
    pub fn validate(&self) -> Result<()> {
        if let Some(url) = &self.endpoint_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(Error::config(format!(
                "endpoint_url must start with http:// or https://, got {url:?}"
            )));
        }
        for (name, t) in [
            ("connect_timeout", self.connect_timeout),
            ("read_timeout", self.read_timeout),
        ] {
            if t == Some(Duration::ZERO) {
                return Err(Error::config(format!("{name} must be > 0 seconds, got 0")));
            }
        }
        if self.max_attempts == Some(0) {
            return Err(Error::config("max_attempts must be >= 1, got 0"));
        }
        Ok(())
    }

    /// Fill unset endpoint and region from the environment (`SLATEDB_S3_ENDPOINT_URL`;
    /// `S3_REGION`, then `AWS_REGION`).
    #[must_use]
    pub fn with_env_fallbacks(mut self, env: &EnvLookup) -> Self {
        if self.endpoint_url.is_none() {
            self.endpoint_url = first_non_empty(env, &["SLATEDB_S3_ENDPOINT_URL"]);
        }
        if self.region_name.is_none() {
            self.region_name = first_non_empty(env, &["S3_REGION", "AWS_REGION"]);
        }
        self
    }

    /// Retries per request implied by `max_attempts` (`max(0, max_attempts − 1)`).
    pub fn max_retries(&self) -> Option<u32> {
        self.max_attempts.map(|a| a.saturating_sub(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> EnvLookup {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Arc::new(move |k| map.get(k).cloned())
    }

    #[test]
    fn env_precedence_prefers_s3_names_and_skips_empty() {
        let p = EnvCredentialProvider::with_lookup(env(&[
            ("S3_ACCESS_KEY_ID", ""),
            ("AWS_ACCESS_KEY_ID", "aws-id"),
            ("S3_SECRET_ACCESS_KEY", "s3-secret"),
            ("AWS_SECRET_ACCESS_KEY", "aws-secret"),
            ("AWS_SESSION_TOKEN", "tok"),
        ]));
        let c = p.resolve().unwrap().unwrap();
        assert_eq!(c.access_key_id, "aws-id");
        assert_eq!(c.secret_access_key.expose(), "s3-secret");
        assert_eq!(
            c.session_token.as_ref().map(SecretString::expose),
            Some("tok")
        );
        let dbg = format!("{c:?}");
        assert!(
            !dbg.contains("s3-secret") && !dbg.contains("tok\""),
            "{dbg}"
        );
        assert!(
            EnvCredentialProvider::with_lookup(env(&[("AWS_ACCESS_KEY_ID", "x")]))
                .resolve()
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn connection_options() {
        let o = S3ConnectionOptions::new().with_env_fallbacks(&env(&[
            ("SLATEDB_S3_ENDPOINT_URL", "http://127.0.0.1:9000"),
            ("AWS_REGION", "eu-west-1"),
        ]));
        assert_eq!(o.endpoint_url.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(o.region_name.as_deref(), Some("eu-west-1"));
        assert_eq!(
            S3ConnectionOptions::new()
                .with_max_attempts(3)
                .max_retries(),
            Some(2)
        );
        let e = S3ConnectionOptions::new()
            .with_max_attempts(0)
            .validate()
            .unwrap_err();
        assert!(e.message().contains("got 0"));
        let e = S3ConnectionOptions::new()
            .with_endpoint_url("localhost:9000")
            .validate()
            .unwrap_err();
        assert!(e.message().contains("\"localhost:9000\""));
        let e = S3ConnectionOptions::new()
            .with_read_timeout(Duration::ZERO)
            .validate()
            .unwrap_err();
        assert!(e.message().contains("read_timeout"));
        assert_eq!(
            "path".parse::<AddressingStyle>().unwrap(),
            AddressingStyle::Path
        );
        assert!(
            "diagonal"
                .parse::<AddressingStyle>()
                .unwrap_err()
                .message()
                .contains("\"diagonal\"")
        );
    }
}
