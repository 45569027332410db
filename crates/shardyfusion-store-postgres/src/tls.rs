//! TLS for PostgreSQL connections, chosen by the DSN's `sslmode` (rustls behind the `tls` feature).
//!
//! * `disable`: plain TCP.
//! * `prefer` (the driver's default): TLS when the server offers it, plain TCP when it does not.
//!   As in libpq, the certificate is not verified (an active attacker could downgrade to plain
//!   TCP anyway) unless [`PostgresOptions::tls_root_cert`](crate::PostgresOptions) is given.
//! * `require`: TLS or no connection, and — stricter than libpq — the server certificate is
//!   always verified against the system's roots plus `tls_root_cert`, host name included.
//!
//! Without the `tls` feature, `sslmode=require` (or a `tls_root_cert`) is a `ConfigValidation`
//! error at construction saying to enable it, and `prefer` connects without TLS.

use std::path::{Path, PathBuf};

use postgres::config::SslMode;
use postgres::{Client, Config, NoTls};
use shardyfusion_core::{Error, Result};

/// How connections are made; built on the first connection (it reads certificate files), on a
/// blocking thread.
pub(crate) enum Connector {
    Plain,
    #[cfg(feature = "tls")]
    Rustls(tokio_postgres_rustls::MakeRustlsConnect),
}

/// What the DSN and options ask for, checked at construction without I/O.
#[derive(Debug, Clone)]
pub(crate) struct TlsPlan {
    mode: SslMode,
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    root_cert: Option<PathBuf>,
}

impl TlsPlan {
    pub(crate) fn new(config: &Config, root_cert: Option<&Path>, redacted: &str) -> Result<Self> {
        let mode = config.get_ssl_mode();
        if !cfg!(feature = "tls") {
            if mode == SslMode::Require {
                return Err(Error::config(format!(
                    "PostgreSQL connection {redacted} asks for sslmode=require, but \
                     shardyfusion-store-postgres was built without TLS support: enable its `tls` \
                     cargo feature (or connect with sslmode=disable or prefer)"
                )));
            }
            if let Some(p) = root_cert {
                return Err(Error::config(format!(
                    "tls_root_cert {} is set, but shardyfusion-store-postgres was built without \
                     TLS support: enable its `tls` cargo feature",
                    p.display()
                )));
            }
        }
        Ok(TlsPlan {
            mode,
            root_cert: root_cert.map(Path::to_path_buf),
        })
    }

    /// The connector for this plan (reads the root certificates; blocking).
    pub(crate) fn connector(&self) -> Result<Connector> {
        match self.mode {
            SslMode::Disable => Ok(Connector::Plain),
            _ => self.tls_connector(),
        }
    }

    #[cfg(not(feature = "tls"))]
    fn tls_connector(&self) -> Result<Connector> {
        // `TlsPlan::new` refused `require`; `prefer` without TLS support is plain TCP.
        Ok(Connector::Plain)
    }

    #[cfg(feature = "tls")]
    fn tls_connector(&self) -> Result<Connector> {
        let verify = self.mode == SslMode::Require || self.root_cert.is_some();
        let config = rustls_config::client_config(verify, self.root_cert.as_deref())?;
        Ok(Connector::Rustls(
            tokio_postgres_rustls::MakeRustlsConnect::new(config),
        ))
    }
}

impl Connector {
    /// Connect (blocking).
    pub(crate) fn connect(&self, config: &Config) -> std::result::Result<Client, postgres::Error> {
        match self {
            Connector::Plain => config.connect(NoTls),
            #[cfg(feature = "tls")]
            Connector::Rustls(tls) => config.connect(tls.clone()),
        }
    }
}

#[cfg(feature = "tls")]
mod rustls_config {
    //! rustls client configurations: verified (system roots plus a PEM file) or, for `prefer`,
    //! encryption without verification.

    use std::path::Path;
    use std::sync::Arc;

    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::crypto::WebPkiSupportedAlgorithms;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
    use shardyfusion_core::{Error, Result};

    pub(super) fn client_config(verify: bool, root_cert: Option<&Path>) -> Result<ClientConfig> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::config(format!("TLS for PostgreSQL: {e}")))?;
        if !verify {
            return Ok(builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(EncryptOnly(
                    provider.signature_verification_algorithms,
                )))
                .with_no_client_auth());
        }
        let mut roots = RootCertStore::empty();
        // Unreadable system certificates are skipped, as every TLS client does.
        let native = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(native.certs);
        if let Some(path) = root_cert {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<std::result::Result<Vec<_>, _>>())
                .map_err(|e| {
                    Error::config(format!(
                        "tls_root_cert {} is not a readable PEM certificate file: {e}",
                        path.display()
                    ))
                })?;
            if certs.is_empty() {
                return Err(Error::config(format!(
                    "tls_root_cert {} holds no certificate",
                    path.display()
                )));
            }
            for c in certs {
                roots.add(c).map_err(|e| {
                    Error::config(format!(
                        "tls_root_cert {} holds a certificate rustls cannot use: {e}",
                        path.display()
                    ))
                })?;
            }
        }
        if roots.is_empty() {
            return Err(Error::config(
                "sslmode=require verifies the server certificate, but no root certificate was found \
                 (no system roots and no tls_root_cert)",
            ));
        }
        Ok(builder.with_root_certificates(roots).with_no_client_auth())
    }

    /// `sslmode=prefer`: handshake signatures are checked, the certificate chain is not.
    #[derive(Debug)]
    struct EncryptOnly(WebPkiSupportedAlgorithms);

    impl ServerCertVerifier for EncryptOnly {
        fn verify_server_cert(
            &self,
            _end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp_response: &[u8],
            _now: UnixTime,
        ) -> std::result::Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.supported_schemes()
        }
    }
}

#[cfg(all(test, feature = "tls"))]
mod tests {
    //! Against the test server (`DATABASE_URL`), when it offers TLS: `pg_stat_ssl` shows what
    //! each sslmode did.
    #![allow(clippy::unwrap_used)]

    use std::str::FromStr;

    use super::*;

    fn encrypted(client: &mut Client) -> bool {
        client
            .query_one(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .unwrap()
            .try_get(0)
            .unwrap()
    }

    fn connect(dsn: &str, root_cert: Option<&Path>) -> Result<Client> {
        let config = Config::from_str(dsn).unwrap();
        let plan = TlsPlan::new(&config, root_cert, dsn)?;
        plan.connector()?
            .connect(&config)
            .map_err(|e| Error::config(format!("{e}: {:?}", std::error::Error::source(&e))))
    }

    #[test]
    fn sslmode_chooses_tls_and_require_verifies_the_certificate() {
        let Some(url) = shardyfusion_store_conformance::server_env("DATABASE_URL") else {
            return;
        };
        let with_mode = |mode: &str| {
            let sep = if url.contains('?') { '&' } else { '?' };
            format!("{url}{sep}sslmode={mode}")
        };
        let mut plain = connect(&with_mode("disable"), None).unwrap();
        assert!(!encrypted(&mut plain), "sslmode=disable is plain TCP");
        let ssl: String = plain.query_one("SHOW ssl", &[]).unwrap().get(0);
        if ssl != "on" {
            eprintln!("the test server does not offer TLS; the TLS checks did not run");
            return;
        }
        let cert: String = plain.query_one("SHOW ssl_cert_file", &[]).unwrap().get(0);
        let mut preferred = connect(&with_mode("prefer"), None).unwrap();
        assert!(
            encrypted(&mut preferred),
            "sslmode=prefer encrypts when offered"
        );

        // The test server's certificate is self-signed for `localhost`: by IP address, require
        // refuses it (unknown issuer, or a name that does not match).
        let err = connect(&with_mode("require"), None).err().unwrap();
        assert!(
            err.message().to_lowercase().contains("certificate"),
            "{err}"
        );
        // Trusting the server's own certificate, by the name in it, connects verified.
        let cert = Path::new(&cert);
        if cert.exists() && url.contains("127.0.0.1") {
            let by_name = with_mode("require").replace("127.0.0.1", "localhost");
            match connect(&by_name, Some(cert)) {
                Ok(mut c) => {
                    eprintln!("verified TLS by name");
                    assert!(encrypted(&mut c));
                }
                // The certificate names another host: verification must say so.
                Err(e) => assert!(e.message().to_lowercase().contains("certificate"), "{e}"),
            }
        }
        let err = connect(
            &with_mode("require"),
            Some(Path::new("/nonexistent/ca.pem")),
        )
        .err()
        .unwrap();
        assert_eq!(err.kind(), shardyfusion_core::ErrorKind::ConfigValidation);
        assert!(err.message().contains("/nonexistent/ca.pem"), "{err}");
    }
}
