//! [`ClientTls`]: outbound (m)TLS, verifying the server by DNS name or by SPIFFE ID, and a connector for
//! hyper-util's client and tonic's `Endpoint::connect_with_connector`.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use msec_core::policy::Requirement;
use msec_core::spiffe::{SpiffeId, TrustDomain};
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::cert::{CertSource, provider};
use crate::error::TlsConfigError;
use crate::server::{alpn, versions};
use crate::trust::Trust;
use crate::verify::{Expect, ServerVerifier};

/// How the client verifies the server.
#[derive(Clone, Debug)]
pub struct ServerAuth {
    trust: Trust,
    expect: Expect,
}

impl ServerAuth {
    /// Classic WebPKI: the certificate chains to `trust` and names the host the client connects to (DNS name
    /// or IP address). `trust` must be plain roots.
    pub fn dns(trust: impl Into<Trust>) -> Self {
        Self {
            trust: trust.into(),
            expect: Expect::Dns,
        }
    }

    /// SPIFFE: the certificate is an X.509-SVID that chains to the bundle of its trust domain, and its SPIFFE ID
    /// satisfies `requirement` — one of msec-core's peer requirements ([`Requirement::PeerSpiffeId`],
    /// [`Requirement::PeerSpiffePrefix`], [`Requirement::PeerTrustDomain`], or combinations). The host name is
    /// not checked.
    pub fn spiffe(trust: impl Into<Trust>, requirement: Requirement) -> Self {
        Self {
            trust: trust.into(),
            expect: Expect::Spiffe(requirement),
        }
    }

    /// SPIFFE: the server must be exactly `id`.
    pub fn spiffe_id(trust: impl Into<Trust>, id: SpiffeId) -> Self {
        Self::spiffe(trust, Requirement::peer_spiffe_id(id))
    }

    /// SPIFFE: the server may be any workload of `trust_domain`.
    pub fn trust_domain(trust: impl Into<Trust>, trust_domain: TrustDomain) -> Self {
        Self::spiffe(trust, Requirement::peer_trust_domain(trust_domain))
    }
}

/// Builder state: server verification is next.
#[derive(Debug)]
pub struct WantsServerAuth(());
/// Builder state: the client certificate decision is next.
#[derive(Debug)]
pub struct WantsClientCert {
    server: ServerAuth,
}
/// Builder state: complete; options may follow.
#[derive(Debug)]
pub struct ClientReady {
    server: ServerAuth,
    cert: Option<CertSource>,
}

/// Builds a [`ClientTls`]: [`server_auth`](ClientTlsBuilder::server_auth), then
/// [`client_cert`](ClientTlsBuilder::client_cert) or [`no_client_cert`](ClientTlsBuilder::no_client_cert),
/// then options and [`build`](ClientTlsBuilder::build).
///
/// Defaults: the ring provider, TLS 1.3 and 1.2, ALPN `h2` then `http/1.1`, no session resumption (every
/// connection is a full handshake; see [`allow_resumption`](ClientTlsBuilder::allow_resumption)).
#[must_use]
pub struct ClientTlsBuilder<S> {
    state: S,
    tls13_only: bool,
    alpn: Vec<Vec<u8>>,
    resumption: bool,
}

impl<S: fmt::Debug> fmt::Debug for ClientTlsBuilder<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTlsBuilder").field("state", &self.state).finish()
    }
}

impl ClientTlsBuilder<WantsServerAuth> {
    /// Decides how the server is verified.
    pub fn server_auth(self, server: ServerAuth) -> ClientTlsBuilder<WantsClientCert> {
        ClientTlsBuilder {
            state: WantsClientCert { server },
            tls13_only: self.tls13_only,
            alpn: self.alpn,
            resumption: self.resumption,
        }
    }
}

impl ClientTlsBuilder<WantsClientCert> {
    /// Presents this certificate (mTLS). A [`ReloadingCert`](crate::ReloadingCert) follows rotations.
    pub fn client_cert(self, cert: impl Into<CertSource>) -> ClientTlsBuilder<ClientReady> {
        ClientTlsBuilder {
            state: ClientReady {
                server: self.state.server,
                cert: Some(cert.into()),
            },
            tls13_only: self.tls13_only,
            alpn: self.alpn,
            resumption: self.resumption,
        }
    }

    /// Presents no certificate (server-only TLS).
    pub fn no_client_cert(self) -> ClientTlsBuilder<ClientReady> {
        ClientTlsBuilder {
            state: ClientReady {
                server: self.state.server,
                cert: None,
            },
            tls13_only: self.tls13_only,
            alpn: self.alpn,
            resumption: self.resumption,
        }
    }
}

impl ClientTlsBuilder<ClientReady> {
    /// Offers TLS 1.3 only.
    pub fn tls13_only(mut self) -> Self {
        self.tls13_only = true;
        self
    }

    /// Replaces the ALPN protocols offered (default `h2`, `http/1.1`).
    pub fn alpn_protocols<I, P>(mut self, protocols: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: AsRef<[u8]>,
    {
        self.alpn = protocols.into_iter().map(|p| p.as_ref().to_vec()).collect();
        self
    }

    /// Resumes TLS sessions with servers that allow it (off by default).
    ///
    /// A resumed session skips server verification and presents no client certificate: the server keeps the
    /// client identity of the first handshake, and the client the server identity it verified then. Rotated
    /// client certificates, trust bundles and SPIFFE expectations then apply only to full handshakes.
    pub fn allow_resumption(mut self) -> Self {
        self.resumption = true;
        self
    }

    /// Builds the configuration.
    pub fn build(self) -> Result<ClientTls, TlsConfigError> {
        let ServerAuth { trust, expect } = self.state.server;
        if matches!(expect, Expect::Dns) && trust.is_spiffe() {
            return Err(TlsConfigError::Invalid(
                "DNS server verification needs plain roots; use ServerAuth::spiffe* with SPIFFE bundles",
            ));
        }
        let builder = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(versions(self.tls13_only))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ServerVerifier::new(trust, expect)));
        let mut config = match &self.state.cert {
            Some(cert) => builder.with_client_cert_resolver(cert.resolver()),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = self.alpn;
        if !self.resumption {
            config.resumption = rustls::client::Resumption::disabled();
        }
        Ok(ClientTls {
            config: Arc::new(config),
        })
    }
}

/// An outbound TLS configuration: connect with [`connect`](Self::connect), or hand
/// [`connector`](Self::connector) to hyper-util's client or tonic.
///
/// ```
/// use msec_tls::{CertSource, ClientTls, ServerAuth, Trust};
///
/// let ca = msec_test_support::TestCa::new("example.org");
/// let me = ca.svid("/ns/prod/sa/frontend");
/// let trust = Trust::spiffe().bundle("example.org".parse()?, [ca.cert()]).build()?;
/// let client = ClientTls::builder()
///     .server_auth(ServerAuth::spiffe_id(trust, "spiffe://example.org/ns/prod/sa/orders".parse()?))
///     .client_cert(CertSource::pem(me.cert_pem.as_bytes(), me.key_pem.as_bytes())?)
///     .build()?;
/// # let _ = client;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// The rustls client verifier is `dangerous()` only in rustls' sense (a custom verifier): it verifies the
/// chain with webpki and the SPIFFE ID or host name as configured. Cheap to clone.
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<ClientConfig>,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls").finish_non_exhaustive()
    }
}

fn server_name_for(host: &str) -> io::Result<ServerName<'static>> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_owned()).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

impl ClientTls {
    /// Starts building a configuration.
    pub fn builder() -> ClientTlsBuilder<WantsServerAuth> {
        ClientTlsBuilder {
            state: WantsServerAuth(()),
            tls13_only: false,
            alpn: vec![alpn::H2.to_vec(), alpn::HTTP_1_1.to_vec()],
            resumption: false,
        }
    }

    /// The rustls configuration.
    pub fn config(&self) -> &Arc<ClientConfig> {
        &self.config
    }

    /// Connects to `addr` and completes the handshake, sending `server_name` as SNI (and checking it, with
    /// [`ServerAuth::dns`]).
    pub async fn connect(
        &self,
        addr: impl tokio::net::ToSocketAddrs,
        server_name: &str,
    ) -> io::Result<TlsStream<TcpStream>> {
        let name = server_name_for(server_name)?;
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        tokio_rustls::TlsConnector::from(self.config.clone())
            .connect(name, tcp)
            .await
    }

    /// A connector (`tower::Service<Uri>`) for hyper-util's legacy client and tonic's
    /// `Endpoint::connect_with_connector`. The URI's host is the SNI name; its port defaults to 443. It always
    /// does TLS, whatever the URI's scheme: give tonic an `http://` URI so that tonic does not try TLS itself.
    pub fn connector(&self) -> TlsConnector {
        TlsConnector {
            tls: self.clone(),
            server_name: None,
        }
    }
}

/// Connects over TCP and TLS for a URI. See [`ClientTls::connector`].
#[derive(Clone, Debug)]
pub struct TlsConnector {
    tls: ClientTls,
    server_name: Option<Arc<str>>,
}

impl TlsConnector {
    /// Sends `name` as SNI (and checks it, with [`ServerAuth::dns`]) instead of the URI's host.
    #[must_use]
    pub fn server_name(mut self, name: &str) -> Self {
        self.server_name = Some(Arc::from(name));
        self
    }
}

impl tower_service::Service<Uri> for TlsConnector {
    type Response = TlsConnection;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TlsConnection>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let tls = self.tls.clone();
        let sni = self.server_name.clone();
        Box::pin(async move {
            let host = uri
                .host()
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "URI has no host"))?
                .to_owned();
            let port = uri.port_u16().unwrap_or(443);
            let bare = host.trim_start_matches('[').trim_end_matches(']').to_owned();
            let name = sni.as_deref().unwrap_or(&bare).to_owned();
            let stream = tls.connect((bare.as_str(), port), &name).await?;
            Ok(TlsConnection {
                io: TokioIo::new(stream),
            })
        })
    }
}

/// A client TLS connection, usable as hyper I/O.
#[derive(Debug)]
pub struct TlsConnection {
    io: TokioIo<TlsStream<TcpStream>>,
}

impl TlsConnection {
    /// The TLS stream.
    pub fn get_ref(&self) -> &TlsStream<TcpStream> {
        self.io.inner()
    }
}

impl Connection for TlsConnection {
    fn connected(&self) -> Connected {
        let (tcp, session) = self.io.inner().get_ref();
        let connected = tcp.connected();
        if session.alpn_protocol() == Some(alpn::H2) {
            connected.negotiated_h2()
        } else {
            connected
        }
    }
}

impl hyper::rt::Read for TlsConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for TlsConnection {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
}
