//! # msec-tls
//!
//! mTLS that hands every request its peer's identity: rustls configurations with every security decision
//! spelled out, SPIFFE identities with one trust bundle per trust domain, hot reload of certificates and
//! bundles, a serve loop that puts an `Arc<PeerIdentity>` on every request, adapters for servers that terminate
//! TLS elsewhere, and per-route peer allowlists.
//!
//! | piece | what it does |
//! |---|---|
//! | [`ServerTls`] | server config: [`ClientAuth::required`] / [`optional`](ClientAuth::optional) / [`none`](ClientAuth::none), a [`CertSource`] (PEM files, memory, [`ReloadingCert`]), TLS 1.2+1.3 or [`tls13_only`](ServerTlsBuilder::tls13_only), ALPN `h2` + `http/1.1` |
//! | [`Trust`] | CA roots, or SPIFFE bundles per trust domain ([`Trust::spiffe`]); CRLs; fixed or [`ReloadingTrust`] |
//! | [`ClientTls`] | outbound (m)TLS, verifying the server by DNS name or by SPIFFE ID ([`ServerAuth`]); a [`TlsConnector`] for hyper-util and tonic |
//! | [`serve`] | accept loop on hyper-util (HTTP/1.1 + HTTP/2), handshake timeout, connection cap, graceful shutdown; `Arc<PeerIdentity>`, [`ClientAddr`](msec_core::ClientAddr), [`SecureTransport`](msec_core::SecureTransport) in every request |
//! | [`Watcher`] | polls reloading certificates and bundles in the background; [`ReloadingCert::poll`] does one reload in tests |
//! | [`RequirePeerLayer`] | a one-line SPIFFE allowlist (exact ID, path prefix, trust domain) on msec-core's policy evaluation |
//! | [`xfcc`] | Envoy's `x-forwarded-client-cert`, only from trusted proxies |
//! | `adapters` | axum-server's `TlsInfo` and tonic's built-in TLS → `PeerIdentity` (features `axum-server`, `tonic`) |
//!
//! ```no_run
//! use axum::{routing::get, Router};
//! use msec_core::PeerIdentity;
//! use msec_core::policy::{AuthorizeLayer, Policy, Requirement};
//! use msec_tls::{ClientAuth, RequirePeerLayer, ReloadingCert, ServerTls, Trust, Watcher};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // SPIRE writes the SVID, its key and the bundle to disk and rotates them about every half hour.
//! let svid = ReloadingCert::from_pem_files("/run/spire/svid.pem", "/run/spire/svid_key.pem")?;
//! let bundle = Trust::spiffe()
//!     .bundle_pem_file("example.org".parse()?, "/run/spire/bundle.pem")
//!     .build_reloading()?;
//! let _watcher = Watcher::new(std::time::Duration::from_secs(5)).watch(svid.clone()).watch(bundle.clone()).spawn();
//!
//! let tls = ServerTls::builder()
//!     .client_auth(ClientAuth::required(bundle))
//!     .certificate(svid)
//!     .build()?;
//!
//! let app = Router::new()
//!     .route("/orders", get(|peer: PeerIdentity| async move { format!("hello {:?}", peer.spiffe_id) }))
//!     .route_layer(RequirePeerLayer::spiffe_prefix("example.org".parse()?, "/ns/prod"));
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:8443").await?;
//! msec_tls::serve(listener, tls, app).await?;
//! # Ok(()) }
//! ```
//!
//! ## Identity model
//!
//! The serve loop parses the verified leaf certificate once per connection (x509-parser) into
//! [`PeerIdentity`](msec_core::PeerIdentity): the SPIFFE ID (set only for a valid leaf X.509-SVID — exactly one
//! URI SAN), DNS and URI SANs, RFC 4514 subject and issuer, serial (hex), SHA-256 fingerprint (the RFC 8705
//! `x5t#S256` thumbprint) and validity. Every request on the connection gets a clone of the same `Arc`.
//!
//! ## SPIFFE
//!
//! [`SpiffeId`] and [`TrustDomain`] are msec-core's strict parsers, re-exported here. With [`Trust::spiffe`], a
//! peer certificate must be a leaf X.509-SVID and must chain to the bundle of its **own** trust domain, as
//! Envoy's SPIFFE validator does: trusting domains A and B does not let A's CA mint B's identities.
//!
//! ## Observability
//!
//! Counters `msec_tls_handshakes_total{result}`, `msec_tls_peer_rejected_total{reason}`,
//! `msec_tls_reloads_total{kind,result}`, `msec_tls_xfcc_total{result}`; gauge `msec_tls_connections_active`;
//! `tracing` events for failed handshakes (debug), reloads (info / warn) and XFCC from trusted proxies.
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod cert;
mod client;
mod error;
mod identity;
mod pem;
mod reload;
mod require;
mod serve;
mod server;
mod trust;
mod verify;
pub mod xfcc;

#[cfg(any(feature = "axum-server", feature = "tonic"))]
pub mod adapters;

pub use cert::{CertSource, ReloadingCert};
pub use client::{
    ClientReady, ClientTls, ClientTlsBuilder, ServerAuth, TlsConnection, TlsConnector, WantsClientCert, WantsServerAuth,
};
pub use error::TlsConfigError;
pub use identity::{CertificateParseError, SvidError, peer_identity_from_der, svid_spiffe_id};
pub use msec_core::spiffe::{SpiffeId, SpiffeIdError, TrustDomain};
pub use reload::{Reload, ReloadStatus, Watcher, WatcherHandle};
pub use require::{PEER_ALLOWED, RequirePeer, RequirePeerLayer};
pub use serve::{HyperService, PeerExtensions, Running, Serve, from_hyper, serve};
pub use server::{ClientAuth, ServerReady, ServerTls, ServerTlsBuilder, WantsCertificate, WantsClientAuth, alpn};
pub use trust::{ReloadingTrust, Roots, Spiffe, Trust, TrustBuilder};
pub use xfcc::ForwardedClientCertLayer;

/// rustls and tokio-rustls, as this crate uses them.
pub use {rustls, tokio_rustls};

/// Bodies of the cargo-fuzz targets in `fuzz/` (also run over proptest inputs by this crate's tests).
#[doc(hidden)]
pub mod fuzzing {
    use msec_core::PeerSource;

    /// XFCC parsing never panics; whatever parses yields an identity or a typed error.
    pub fn xfcc(data: &[u8]) {
        if let Ok(s) = std::str::from_utf8(data)
            && let Ok(elements) = crate::xfcc::parse(s)
        {
            assert!(!elements.is_empty());
            for e in &elements {
                if let Ok(peer) = e.peer_identity() {
                    assert_eq!(peer.source, PeerSource::TrustedProxy);
                }
            }
        }
    }

    /// Certificate parsing never panics; a parsed certificate's fingerprint is the SHA-256 of its bytes, and an
    /// SVID's SPIFFE ID is the identity's.
    pub fn peer_cert(data: &[u8]) {
        let svid = crate::svid_spiffe_id(data);
        if let Ok(peer) = crate::peer_identity_from_der(data, PeerSource::Handshake) {
            assert_eq!(
                &peer.fingerprint_sha256[..],
                ring::digest::digest(&ring::digest::SHA256, data).as_ref()
            );
            assert_eq!(peer.spiffe_id, svid.ok());
        }
    }
}
