//! Credentials that work in production (SPEC 15.5): a provider whose credentials expire is asked
//! again; without static keys the default chain runs (here: the container-credentials endpoint,
//! served on loopback); unsigned requests only when asked.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use shardyfusion_core::{
    CredentialProvider, EnvLookup, ErrorKind, ManifestStore, NoopPublishObserver,
    S3ConnectionOptions, S3Credentials, SecretString,
};
use shardyfusion_storage::{StorageResolver, StorageRetry};
use shardyfusion_store_conformance::sample_snapshot;
use shardyfusion_store_s3::ObjectStoreManifestStore;

use crate::{s3_server, s3_test_identity, unique};

/// The test identity, valid for two more seconds each time it is asked (storage asks again
/// after half of that).
#[derive(Debug)]
struct ShortLived {
    calls: AtomicU32,
}

impl CredentialProvider for ShortLived {
    fn resolve(&self) -> shardyfusion_core::Result<Option<S3Credentials>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let (id, secret) = s3_test_identity();
        Ok(Some(S3Credentials {
            access_key_id: id,
            secret_access_key: SecretString::new(secret),
            session_token: None,
            expires_at: Some(SystemTime::now() + Duration::from_secs(2)),
        }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiring_credentials_are_asked_for_again_mid_run() {
    let Some((endpoint, bucket)) = s3_server() else {
        return;
    };
    let provider = Arc::new(ShortLived {
        calls: AtomicU32::new(0),
    });
    let resolver = StorageResolver::builder()
        .credential_provider(provider.clone())
        .s3_options(
            S3ConnectionOptions::new()
                .with_endpoint_url(&endpoint)
                .with_region("us-east-1"),
        )
        .build();
    let prefix = format!("s3://{bucket}/{}", unique("creds"));
    let store = ObjectStoreManifestStore::new(&prefix, resolver).unwrap();
    let (b, s) = sample_snapshot("c0", &prefix);
    store.publish(&b, &s, &NoopPublishObserver).await.unwrap();
    let first = provider.calls.load(Ordering::SeqCst);
    // The credentials expire mid-run: the next requests must ask again and still work.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (b, s) = sample_snapshot("c1", &prefix);
    store.publish(&b, &s, &NoopPublishObserver).await.unwrap();
    assert_eq!(store.load_current().await.unwrap().unwrap().run_id, "c1");
    assert!(first >= 1, "{provider:?}");
    assert!(
        provider.calls.load(Ordering::SeqCst) > first,
        "asked again after expiry: {provider:?}"
    );
}

/// A container-credentials endpoint on loopback (the EKS pod identity protocol) that counts
/// the requests it answers.
fn credentials_endpoint() -> (String, Arc<AtomicU32>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/creds", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicU32::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().take(16) {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            counter.fetch_add(1, Ordering::SeqCst);
            let body = r#"{"AccessKeyId":"AKIDFROMCHAIN","SecretAccessKey":"chain-secret","Token":"chain-token","Expiration":"2099-01-01T00:00:00Z"}"#;
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (url, hits)
}

fn resolver_with_env(vars: Vec<(&'static str, String)>, anonymous: bool) -> StorageResolver {
    let env: EnvLookup = Arc::new(move |k| {
        vars.iter()
            .find(|(name, _)| *name == k)
            .map(|(_, v)| v.clone())
    });
    StorageResolver::builder()
        .env(env)
        .s3_options(
            // Nothing listens on port 9: the request fails after the credentials were fetched.
            S3ConnectionOptions::new()
                .with_endpoint_url("http://127.0.0.1:9")
                .with_region("us-east-1")
                .with_max_attempts(1)
                .with_connect_timeout(Duration::from_millis(300))
                .with_anonymous(anonymous),
        )
        .retry(StorageRetry::none())
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_static_keys_the_default_chain_runs_and_anonymous_skips_it() {
    let token_file = std::env::temp_dir().join(unique("sf-token"));
    std::fs::write(&token_file, "pod-identity-token").unwrap();
    for anonymous in [false, true] {
        let (url, hits) = credentials_endpoint();
        let resolver = resolver_with_env(
            vec![
                ("AWS_CONTAINER_CREDENTIALS_FULL_URI", url),
                (
                    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                    token_file.display().to_string(),
                ),
            ],
            anonymous,
        );
        let store = ObjectStoreManifestStore::new("s3://chain-bucket/p", resolver).unwrap();
        let err = store.load_current().await.unwrap_err();
        assert!(
            matches!(
                err.kind(),
                ErrorKind::S3Transient | ErrorKind::ManifestStore
            ),
            "{err}"
        );
        let asked = hits.load(Ordering::SeqCst);
        if anonymous {
            assert_eq!(
                asked, 0,
                "anonymous requests are unsigned: no credential lookup"
            );
        } else {
            assert!(asked >= 1, "the default chain fetched credentials: {err}");
        }
    }
    std::fs::remove_file(token_file).unwrap();
}
