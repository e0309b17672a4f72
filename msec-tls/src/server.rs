//! [`ServerTls`]: a rustls server configuration built with every security decision spelled out.

use std::fmt;
use std::sync::Arc;

use rustls::server::{NoClientAuth, NoServerSessionStorage};
use rustls::{ServerConfig, SupportedProtocolVersion};

use crate::cert::{CertSource, provider};
use crate::error::TlsConfigError;
use crate::trust::Trust;
use crate::verify;

/// ALPN protocol ids.
pub mod alpn {
    /// HTTP/2.
    pub const H2: &[u8] = b"h2";
    /// HTTP/1.1.
    pub const HTTP_1_1: &[u8] = b"http/1.1";
}

#[derive(Clone, Debug)]
enum Mode {
    Required(Trust),
    Optional(Trust),
    None,
}

/// Whether and how the server authenticates clients by certificate.
///
/// - [`required`](Self::required): a client without a valid certificate cannot complete the handshake
///   (Istio PeerAuthentication `STRICT`).
/// - [`optional`](Self::optional): a certificate is asked for and verified when sent; clients without one still
///   connect and their requests carry no `PeerIdentity` (`PERMISSIVE`). Pair it with per-route peer
///   requirements ([`RequirePeerLayer`](crate::RequirePeerLayer) or a Policy).
/// - [`none`](Self::none): no client certificate is asked for (server-only TLS).
#[derive(Clone, Debug)]
pub struct ClientAuth {
    mode: Mode,
}

impl ClientAuth {
    /// Every client must present a certificate that verifies against `trust`.
    pub fn required(trust: impl Into<Trust>) -> Self {
        Self {
            mode: Mode::Required(trust.into()),
        }
    }

    /// Clients may present a certificate; one that is presented must verify against `trust`.
    pub fn optional(trust: impl Into<Trust>) -> Self {
        Self {
            mode: Mode::Optional(trust.into()),
        }
    }

    /// No client authentication.
    pub fn none() -> Self {
        Self { mode: Mode::None }
    }
}

/// Builder state: the client authentication decision is next.
#[derive(Debug)]
pub struct WantsClientAuth(());
/// Builder state: the server certificate is next.
#[derive(Debug)]
pub struct WantsCertificate {
    auth: ClientAuth,
}
/// Builder state: complete; options may follow.
#[derive(Debug)]
pub struct ServerReady {
    auth: ClientAuth,
    cert: CertSource,
}

/// Builds a [`ServerTls`]: [`client_auth`](ServerTlsBuilder::client_auth), then
/// [`certificate`](ServerTlsBuilder::certificate), then options and [`build`](ServerTlsBuilder::build).
///
/// Defaults: the ring provider, TLS 1.3 and 1.2 (switch to [`tls13_only`](ServerTlsBuilder::tls13_only)),
/// ALPN `h2` then `http/1.1`, and — with client authentication — no session resumption, so every connection's
/// certificate is verified against the trust in force (see
/// [`danger_allow_resumption_with_client_auth`](ServerTlsBuilder::danger_allow_resumption_with_client_auth)).
#[must_use]
pub struct ServerTlsBuilder<S> {
    state: S,
    tls13_only: bool,
    alpn: Vec<Vec<u8>>,
    resumption: bool,
}

impl<S: fmt::Debug> fmt::Debug for ServerTlsBuilder<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTlsBuilder")
            .field("state", &self.state)
            .field("tls13_only", &self.tls13_only)
            .finish()
    }
}

impl ServerTlsBuilder<WantsClientAuth> {
    /// Decides client authentication: [`ClientAuth::required`], [`ClientAuth::optional`] or
    /// [`ClientAuth::none`].
    pub fn client_auth(self, auth: ClientAuth) -> ServerTlsBuilder<WantsCertificate> {
        ServerTlsBuilder {
            state: WantsCertificate { auth },
            tls13_only: self.tls13_only,
            alpn: self.alpn,
            resumption: self.resumption,
        }
    }
}

impl ServerTlsBuilder<WantsCertificate> {
    /// Sets the server's certificate chain and key: PEM files, memory, or a [`ReloadingCert`](crate::ReloadingCert).
    pub fn certificate(self, cert: impl Into<CertSource>) -> ServerTlsBuilder<ServerReady> {
        ServerTlsBuilder {
            state: ServerReady {
                auth: self.state.auth,
                cert: cert.into(),
            },
            tls13_only: self.tls13_only,
            alpn: self.alpn,
            resumption: self.resumption,
        }
    }
}

static TLS13_ONLY: [&SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
static TLS13_AND_12: [&SupportedProtocolVersion; 2] = [&rustls::version::TLS13, &rustls::version::TLS12];

pub(crate) fn versions(tls13_only: bool) -> &'static [&'static SupportedProtocolVersion] {
    if tls13_only { &TLS13_ONLY } else { &TLS13_AND_12 }
}

impl ServerTlsBuilder<ServerReady> {
    /// Accepts TLS 1.3 only (the default accepts 1.3 and 1.2).
    pub fn tls13_only(mut self) -> Self {
        self.tls13_only = true;
        self
    }

    /// Replaces the ALPN protocols offered, in order of preference (default `h2`, `http/1.1`). An empty list
    /// disables ALPN.
    pub fn alpn_protocols<I, P>(mut self, protocols: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: AsRef<[u8]>,
    {
        self.alpn = protocols.into_iter().map(|p| p.as_ref().to_vec()).collect();
        self
    }

    /// Lets clients resume TLS sessions even when they authenticated with a certificate.
    ///
    /// Off by default under [`ClientAuth::required`] / [`ClientAuth::optional`]: a resumed session skips
    /// certificate verification and keeps the identity of its first handshake, so a rotated trust bundle, a new
    /// CRL or the client certificate's expiry would not apply to it. With resumption allowed they apply only to
    /// full handshakes. (Without client authentication rustls' default resumption stays on.)
    pub fn danger_allow_resumption_with_client_auth(mut self) -> Self {
        self.resumption = true;
        self
    }

    /// Builds the configuration.
    pub fn build(self) -> Result<ServerTls, TlsConfigError> {
        let builder =
            ServerConfig::builder_with_provider(provider()).with_protocol_versions(versions(self.tls13_only))?;
        let (builder, mode) = match self.state.auth.mode {
            Mode::Required(t) => (
                builder.with_client_cert_verifier(verify::client_verifier(t, true)),
                "required",
            ),
            Mode::Optional(t) => (
                builder.with_client_cert_verifier(verify::client_verifier(t, false)),
                "optional",
            ),
            Mode::None => (builder.with_client_cert_verifier(Arc::new(NoClientAuth)), "none"),
        };
        let mut config = builder.with_cert_resolver(self.state.cert.resolver());
        config.alpn_protocols = self.alpn;
        if mode != "none" && !self.resumption {
            // Every connection re-verifies its client certificate against the trust in force.
            config.session_storage = Arc::new(NoServerSessionStorage {});
            config.send_tls13_tickets = 0;
        }
        Ok(ServerTls {
            config: Arc::new(config),
            client_auth: mode,
        })
    }
}

/// A server TLS configuration for [`serve`](crate::serve) (or any rustls acceptor: [`config`](Self::config)
/// gives the rustls `ServerConfig`, e.g. for axum-server's `RustlsConfig::from_config`).
///
/// ```
/// use msec_tls::{CertSource, ClientAuth, ServerTls, Trust};
///
/// let ca = msec_test_support::TestCa::new("example.org");
/// let server = ca.localhost();
/// let tls = ServerTls::builder()
///     .client_auth(ClientAuth::required(Trust::spiffe().bundle("example.org".parse()?, [ca.cert()]).build()?))
///     .certificate(CertSource::pem(server.cert_pem.as_bytes(), server.key_pem.as_bytes())?)
///     .tls13_only()
///     .build()?;
/// assert_eq!(tls.config().alpn_protocols, [b"h2".to_vec(), b"http/1.1".to_vec()]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// Cheap to clone.
#[derive(Clone)]
pub struct ServerTls {
    config: Arc<ServerConfig>,
    client_auth: &'static str,
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls")
            .field("client_auth", &self.client_auth)
            .field("alpn", &self.config.alpn_protocols.len())
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Starts building a configuration.
    pub fn builder() -> ServerTlsBuilder<WantsClientAuth> {
        ServerTlsBuilder {
            state: WantsClientAuth(()),
            tls13_only: false,
            alpn: vec![alpn::H2.to_vec(), alpn::HTTP_1_1.to_vec()],
            resumption: false,
        }
    }

    /// Wraps a rustls configuration you built yourself.
    pub fn from_config(config: Arc<ServerConfig>) -> Self {
        Self {
            config,
            client_auth: "custom",
        }
    }

    /// The rustls configuration.
    pub fn config(&self) -> &Arc<ServerConfig> {
        &self.config
    }

    /// A tokio-rustls acceptor over this configuration.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config.clone())
    }
}

impl From<Arc<ServerConfig>> for ServerTls {
    fn from(config: Arc<ServerConfig>) -> Self {
        Self::from_config(config)
    }
}
