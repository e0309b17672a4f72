//! TLS for msec's PostgreSQL clients (the API key store, the audit sink): [`PgTls`] and [`connect`].
//!
//! tokio-postgres leaves TLS to a connector; this one is rustls (ring) with verified certificates and host names,
//! like every other outbound connection msec makes. The rules [`connect`] applies:
//!
//! - **A [`PgTls`] given** → TLS is required (`sslmode=require` is forced, whatever the connection string
//!   says): a server that does not offer TLS, a certificate that does not chain to the configured roots, or one
//!   that does not name the host, fails the connection. Configured TLS is never downgraded to plain TCP.
//! - **No `PgTls`, `sslmode=require` in the connection string** → TLS against the Mozilla roots
//!   ([`PgTls::webpki_roots`]), verified as above (libpq's `require` would not verify; this does).
//! - **No `PgTls`, `sslmode` `disable` or `prefer` (tokio-postgres's default)** → plain TCP. Keep such databases
//!   on a private network or a local socket.
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! use msec_core::postgres::{PgTls, connect};
//!
//! let tls = PgTls::from_pem_roots(&std::fs::read("/etc/msec/db-ca.pem")?)?;
//! let config = "host=db.internal user=app dbname=app".parse()?;
//! let client = connect(&config, Some(&tls)).await?;
//! client.simple_query("SELECT 1").await?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};
use tokio_postgres::{Client, Config};

/// Why a [`PgTls`] could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PgTlsError {
    /// The PEM text holds no certificate.
    #[error("no certificate in the PEM text")]
    NoCertificate,
    /// A PEM block or a certificate is unreadable.
    #[error("unreadable root certificate: {0}")]
    BadCertificate(String),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// A rustls connector for tokio-postgres: verified server certificates and host names, TLS 1.2 and 1.3, ring.
/// Clones share the configuration.
///
/// ```
/// let tls = msec_core::postgres::PgTls::webpki_roots()?;
/// assert!(format!("{tls:?}").contains("PgTls"));
/// # Ok::<(), msec_core::postgres::PgTlsError>(())
/// ```
#[derive(Clone)]
pub struct PgTls {
    config: Arc<rustls::ClientConfig>,
}

impl fmt::Debug for PgTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgTls")
            .field("client_auth", &self.config.client_auth_cert_resolver.has_certs())
            .finish_non_exhaustive()
    }
}

fn config_with(roots: rustls::RootCertStore) -> Result<rustls::ClientConfig, PgTlsError> {
    Ok(
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| PgTlsError::Config(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

impl PgTls {
    /// Trusts the Mozilla root program (the `webpki-roots` set): for managed databases with public certificates.
    /// Built once and shared.
    pub fn webpki_roots() -> Result<Self, PgTlsError> {
        static SHARED: OnceLock<Result<PgTls, PgTlsError>> = OnceLock::new();
        SHARED
            .get_or_init(|| {
                let mut roots = rustls::RootCertStore::empty();
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                Ok(PgTls {
                    config: Arc::new(config_with(roots)?),
                })
            })
            .clone()
    }

    /// Trusts exactly the certificates in `pem` (one or more `CERTIFICATE` blocks): for a database with a
    /// private CA, or a self-signed server certificate pinned as its own root.
    pub fn from_pem_roots(pem: &[u8]) -> Result<Self, PgTlsError> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| PgTlsError::BadCertificate(e.to_string()))?;
            roots.add(cert).map_err(|e| PgTlsError::BadCertificate(e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(PgTlsError::NoCertificate);
        }
        Ok(Self {
            config: Arc::new(config_with(roots)?),
        })
    }

    /// Uses a rustls configuration made elsewhere (client certificates for mTLS to the database, say). Its
    /// certificate verification is what it is: build it with a verifier.
    pub fn from_client_config(config: Arc<rustls::ClientConfig>) -> Self {
        Self { config }
    }
}

/// Why [`connect`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PgConnectError {
    /// The TLS configuration could not be made.
    #[error(transparent)]
    Tls(#[from] PgTlsError),
    /// The connection or its TLS handshake failed (an unverified certificate shows here).
    #[error(transparent)]
    Postgres(#[from] tokio_postgres::Error),
}

/// Connects to PostgreSQL under the rules of the [module docs](self) and spawns the connection's task on the
/// current Tokio runtime (it ends when the client is dropped; a broken connection is logged at `warn`). No
/// timeout is applied: wrap the call in one.
pub async fn connect(config: &Config, tls: Option<&PgTls>) -> Result<Client, PgConnectError> {
    let tls = match tls {
        Some(t) => Some(t.clone()),
        None if config.get_ssl_mode() == SslMode::Require => Some(PgTls::webpki_roots()?),
        None => None,
    };
    match tls {
        Some(tls) => {
            let mut config = config.clone();
            config.ssl_mode(SslMode::Require);
            let (client, conn) = config.connect(tls).await?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::warn!(error = %e, "msec: PostgreSQL connection closed");
                }
            });
            Ok(client)
        }
        None => {
            let (client, conn) = config.connect(tokio_postgres::NoTls).await?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::warn!(error = %e, "msec: PostgreSQL connection closed");
                }
            });
            Ok(client)
        }
    }
}

impl<S> MakeTlsConnect<S> for PgTls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = PgTlsStream<S>;
    type TlsConnect = PgTlsConnect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<PgTlsConnect, io::Error> {
        let name = ServerName::try_from(domain.to_owned())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("{domain:?} is not a host name")))?;
        Ok(PgTlsConnect {
            connector: tokio_rustls::TlsConnector::from(Arc::clone(&self.config)),
            name,
        })
    }
}

/// One connection attempt's TLS handshake (made by [`PgTls`]).
pub struct PgTlsConnect {
    connector: tokio_rustls::TlsConnector,
    name: ServerName<'static>,
}

impl fmt::Debug for PgTlsConnect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgTlsConnect")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl<S> TlsConnect<S> for PgTlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = PgTlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<PgTlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let tls = self.connector.connect(self.name, stream).await?;
            Ok(PgTlsStream(tls))
        })
    }
}

/// A TLS stream to PostgreSQL. No channel binding is offered (SCRAM runs without `-PLUS`; the server is
/// authenticated by its verified certificate).
pub struct PgTlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S> fmt::Debug for PgTlsStream<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgTlsStream").finish_non_exhaustive()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> tokio_postgres::tls::TlsStream for PgTlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for PgTlsStream<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for PgTlsStream<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
