//! S3 credentials for `object_store` from a shardyfusion [`CredentialProvider`]: cached, asked
//! again shortly before they expire (SPEC 15.5), and resolved off the async worker threads.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use object_store::aws::AwsCredential;
use shardyfusion_core::CredentialProvider;

/// Credentials are asked for again this long before they expire (or at half their lifetime,
/// when that is shorter).
pub(crate) const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(5 * 60);

/// An `object_store` credential provider backed by a shardyfusion one. One refresh at a time:
/// concurrent requests wait for it rather than each asking the provider.
#[derive(Debug)]
pub(crate) struct RefreshingCredentials {
    provider: Arc<dyn CredentialProvider>,
    cached: tokio::sync::Mutex<Option<Cached>>,
}

#[derive(Debug, Clone)]
struct Cached {
    credential: Arc<AwsCredential>,
    expires_at: Option<SystemTime>,
    /// When to ask again.
    refresh_at: Option<SystemTime>,
}

impl Cached {
    fn new(credential: AwsCredential, expires_at: Option<SystemTime>) -> Self {
        let now = SystemTime::now();
        let refresh_at = expires_at.map(|at| {
            let life = at.duration_since(now).unwrap_or_default();
            at - REFRESH_BEFORE_EXPIRY.min(life / 2)
        });
        Cached {
            credential: Arc::new(credential),
            expires_at,
            refresh_at,
        }
    }

    fn fresh(&self, now: SystemTime) -> bool {
        self.refresh_at.is_none_or(|at| now < at)
    }

    fn valid(&self, now: SystemTime) -> bool {
        self.expires_at.is_none_or(|at| now < at)
    }
}

impl RefreshingCredentials {
    pub(crate) fn new(provider: Arc<dyn CredentialProvider>) -> Self {
        RefreshingCredentials {
            provider,
            cached: tokio::sync::Mutex::new(None),
        }
    }
}

fn failure(msg: String) -> object_store::Error {
    object_store::Error::Unauthenticated {
        path: String::new(),
        source: msg.into(),
    }
}

#[async_trait]
impl object_store::CredentialProvider for RefreshingCredentials {
    type Credential = AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        let mut cached = self.cached.lock().await;
        let now = SystemTime::now();
        if let Some(c) = cached.as_ref()
            && c.fresh(now)
        {
            return Ok(c.credential.clone());
        }
        let provider = self.provider.clone();
        // A provider may read files or call a service: never on an async worker thread.
        let resolved = tokio::task::spawn_blocking(move || provider.resolve())
            .await
            .map_err(|e| object_store::Error::JoinError { source: e })?;
        let c = match resolved {
            Ok(Some(c)) => c,
            // A failed refresh keeps serving credentials that have not expired yet.
            Err(e) => match cached.as_ref() {
                Some(c) if c.valid(now) => {
                    tracing::warn!(error = %e, "refreshing S3 credentials failed; using the current ones until they expire");
                    return Ok(c.credential.clone());
                }
                _ => return Err(failure(format!("the credential provider failed: {e}"))),
            },
            Ok(None) => {
                return Err(failure(format!(
                    "the credential provider {:?} returned no credentials; remove it to use \
                     the default chain, or set anonymous access for a public bucket",
                    self.provider
                )));
            }
        };
        let fresh = Cached::new(
            AwsCredential {
                key_id: c.access_key_id,
                secret_key: c.secret_access_key.expose().to_owned(),
                token: c.session_token.map(|t| t.expose().to_owned()),
            },
            c.expires_at,
        );
        let credential = fresh.credential.clone();
        *cached = Some(fresh);
        Ok(credential)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::CredentialProvider as _;
    use shardyfusion_core::{S3Credentials, SecretString};
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Hands out a new session token on every call, valid for `ttl`.
    #[derive(Debug)]
    struct Rotating {
        calls: AtomicU32,
        ttl: Duration,
    }

    impl CredentialProvider for Rotating {
        fn resolve(&self) -> shardyfusion_core::Result<Option<S3Credentials>> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            Ok(Some(S3Credentials {
                access_key_id: "AKID".into(),
                secret_access_key: SecretString::new("secret"),
                session_token: Some(SecretString::new(format!("token-{n}"))),
                expires_at: Some(SystemTime::now() + self.ttl),
            }))
        }
    }

    #[tokio::test]
    async fn expiring_credentials_are_asked_for_again() {
        // Expired already: every use asks the provider again.
        let p = Arc::new(Rotating {
            calls: AtomicU32::new(0),
            ttl: Duration::ZERO,
        });
        let creds = RefreshingCredentials::new(p.clone());
        let a = creds.get_credential().await.unwrap();
        let b = creds.get_credential().await.unwrap();
        assert_eq!(p.calls.load(Ordering::SeqCst), 2);
        assert_eq!(a.token.as_deref(), Some("token-0"));
        assert_eq!(b.token.as_deref(), Some("token-1"));

        // Valid for hours: cached.
        let p = Arc::new(Rotating {
            calls: AtomicU32::new(0),
            ttl: Duration::from_secs(3 * 3600),
        });
        let creds = RefreshingCredentials::new(p.clone());
        for _ in 0..5 {
            creds.get_credential().await.unwrap();
        }
        assert_eq!(p.calls.load(Ordering::SeqCst), 1);
    }
}
