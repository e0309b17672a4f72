//! Adapters for servers that terminate TLS with their own acceptor: axum-server (`TlsInfo`) and tonic's
//! built-in TLS (`TlsConnectInfo`, `Request::peer_certs`). Each fills the same `Arc<PeerIdentity>` (source
//! [`PeerSource::Handshake`]: this process did the handshake), so policies and handlers do not care which
//! server accepted the connection.
//!
//! These adapters see the certificates per request, not per connection; the layers keep a bounded cache of
//! parsed identities by certificate hash, so a request pays a SHA-256 and a lookup (see `docs/bench/msec-tls.md`).
//! [`serve`](crate::serve) parses once per connection and pays nothing per request.

use std::sync::Arc;
use std::task::{Context, Poll};

use msec_core::{PeerIdentity, PeerSource, SecureTransport};
use tower_layer::Layer;
use tower_service::Service;

use crate::identity::peer_identity_from_der;

fn identity_of(der: &[u8]) -> Option<Arc<PeerIdentity>> {
    match peer_identity_from_der(der, PeerSource::Handshake) {
        Ok(p) => Some(Arc::new(p)),
        Err(e) => {
            tracing::warn!(error = %e, "verified peer certificate cannot be parsed; request has no peer identity");
            None
        }
    }
}

/// How many parsed identities an adapter layer keeps (bounded; least recently used go first).
pub const IDENTITY_CACHE_CAPACITY: usize = 1024;

/// Parsed identities by SHA-256 of the certificate, so an adapter that sees the certificate on every request
/// pays a hash and a lookup instead of a parse. Bounded: a client cannot grow it.
#[derive(Clone)]
struct IdentityCache {
    cache: Arc<quick_cache::sync::Cache<[u8; 32], Arc<PeerIdentity>>>,
}

impl std::fmt::Debug for IdentityCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityCache").field("len", &self.cache.len()).finish()
    }
}

impl IdentityCache {
    fn new() -> Self {
        Self {
            cache: Arc::new(quick_cache::sync::Cache::new(IDENTITY_CACHE_CAPACITY)),
        }
    }

    fn get(&self, der: &[u8]) -> Option<Arc<PeerIdentity>> {
        let mut key = [0u8; 32];
        key.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, der).as_ref());
        if let Some(p) = self.cache.get(&key) {
            return Some(p);
        }
        let p = identity_of(der)?;
        self.cache.insert(key, p.clone());
        Some(p)
    }
}

/// axum-server: turns its `Arc<TlsInfo>` into `Arc<PeerIdentity>` (feature `axum-server`).
#[cfg(feature = "axum-server")]
pub mod axum_server {
    use super::*;

    use ::axum_server::tls::TlsInfo;

    /// Adds `Arc<PeerIdentity>` (from axum-server's `TlsInfo::peer_certificates`) and `SecureTransport` to
    /// every request served by axum-server's rustls acceptor. Any identity already present is replaced.
    ///
    /// Build the acceptor's configuration with [`ServerTls`](crate::ServerTls) and pass
    /// `RustlsConfig::from_config(tls.config().clone())`, so the same verifiers (SPIFFE bundles, reload) apply.
    ///
    /// ```
    /// use axum::{routing::get, Router};
    /// use msec_tls::adapters::axum_server::TlsInfoPeerLayer;
    ///
    /// let app: Router = Router::new()
    ///     .route("/", get(|peer: msec_core::PeerIdentity| async move { peer.subject }))
    ///     .layer(TlsInfoPeerLayer::new());
    /// # let _ = app;
    /// ```
    ///
    /// Parsed identities are cached by certificate hash ([`IDENTITY_CACHE_CAPACITY`] entries, shared by clones).
    #[derive(Debug, Clone)]
    pub struct TlsInfoPeerLayer {
        cache: IdentityCache,
    }

    impl Default for TlsInfoPeerLayer {
        fn default() -> Self {
            Self::new()
        }
    }

    impl TlsInfoPeerLayer {
        /// The layer.
        pub fn new() -> Self {
            Self {
                cache: IdentityCache::new(),
            }
        }
    }

    impl<S> Layer<S> for TlsInfoPeerLayer {
        type Service = TlsInfoPeer<S>;
        fn layer(&self, inner: S) -> Self::Service {
            TlsInfoPeer {
                inner,
                cache: self.cache.clone(),
            }
        }
    }

    /// The service of [`TlsInfoPeerLayer`].
    #[derive(Debug, Clone)]
    pub struct TlsInfoPeer<S> {
        inner: S,
        cache: IdentityCache,
    }

    impl<S> TlsInfoPeer<S> {
        /// The inner service.
        pub fn get_ref(&self) -> &S {
            &self.inner
        }
        /// The inner service, mutably.
        pub fn get_mut(&mut self) -> &mut S {
            &mut self.inner
        }
        /// Unwraps the inner service.
        pub fn into_inner(self) -> S {
            self.inner
        }
    }

    impl<S, B> Service<http::Request<B>> for TlsInfoPeer<S>
    where
        S: Service<http::Request<B>>,
    {
        type Response = S::Response;
        type Error = S::Error;
        type Future = S::Future;

        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            self.inner.poll_ready(cx)
        }

        fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
            let peer = req
                .extensions()
                .get::<Arc<TlsInfo>>()
                .map(|info| info.peer_certificates.first().and_then(|der| self.cache.get(der)));
            if let Some(peer) = peer {
                let ext = req.extensions_mut();
                ext.insert(SecureTransport);
                ext.remove::<Arc<PeerIdentity>>();
                if let Some(p) = peer {
                    ext.insert(p);
                }
            }
            self.inner.call(req)
        }
    }
}

/// tonic's built-in TLS: turns `TlsConnectInfo` into `Arc<PeerIdentity>` (feature `tonic`).
#[cfg(feature = "tonic")]
pub mod tonic {
    use super::*;

    use ::tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
    use msec_core::ClientAddr;

    /// The peer identity of a tonic request served with tonic's own TLS (`Request::peer_certs`), parsed now.
    pub fn peer_identity<T>(req: &::tonic::Request<T>) -> Option<PeerIdentity> {
        if let Some(p) = req.extensions().get::<Arc<PeerIdentity>>() {
            return Some(PeerIdentity::clone(p));
        }
        let certs = req.peer_certs()?;
        let der = certs.first()?;
        identity_of(der.as_ref()).map(|p| PeerIdentity::clone(&p))
    }

    /// Adds `Arc<PeerIdentity>` (from tonic's `TlsConnectInfo::peer_certs`), the socket [`ClientAddr`] and
    /// `SecureTransport` to every request of a tonic server with built-in TLS, so
    /// [`AuthorizeLayer`](msec_core::policy::AuthorizeLayer) and [`RequirePeerLayer`](crate::RequirePeerLayer)
    /// work with it: `Server::builder().tls_config(..)?.layer(TonicTlsPeerLayer::new())`.
    ///
    /// Parsed identities are cached by certificate hash ([`IDENTITY_CACHE_CAPACITY`] entries, shared by clones).
    #[derive(Debug, Clone)]
    pub struct TonicTlsPeerLayer {
        cache: IdentityCache,
    }

    impl Default for TonicTlsPeerLayer {
        fn default() -> Self {
            Self::new()
        }
    }

    impl TonicTlsPeerLayer {
        /// The layer.
        pub fn new() -> Self {
            Self {
                cache: IdentityCache::new(),
            }
        }
    }

    impl<S> Layer<S> for TonicTlsPeerLayer {
        type Service = TonicTlsPeer<S>;
        fn layer(&self, inner: S) -> Self::Service {
            TonicTlsPeer {
                inner,
                cache: self.cache.clone(),
            }
        }
    }

    /// The service of [`TonicTlsPeerLayer`].
    #[derive(Debug, Clone)]
    pub struct TonicTlsPeer<S> {
        inner: S,
        cache: IdentityCache,
    }

    impl<S> TonicTlsPeer<S> {
        /// The inner service.
        pub fn get_ref(&self) -> &S {
            &self.inner
        }
        /// The inner service, mutably.
        pub fn get_mut(&mut self) -> &mut S {
            &mut self.inner
        }
        /// Unwraps the inner service.
        pub fn into_inner(self) -> S {
            self.inner
        }
    }

    impl<S, B> Service<http::Request<B>> for TonicTlsPeer<S>
    where
        S: Service<http::Request<B>>,
    {
        type Response = S::Response;
        type Error = S::Error;
        type Future = S::Future;

        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            self.inner.poll_ready(cx)
        }

        fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
            let info = req.extensions().get::<TlsConnectInfo<TcpConnectInfo>>().map(|info| {
                let peer = info
                    .peer_certs()
                    .and_then(|c| c.first().and_then(|der| self.cache.get(der.as_ref())));
                (peer, info.get_ref().remote_addr())
            });
            if let Some((peer, remote)) = info {
                let ext = req.extensions_mut();
                ext.insert(SecureTransport);
                ext.remove::<Arc<PeerIdentity>>();
                if let Some(p) = peer {
                    ext.insert(p);
                }
                if let Some(a) = remote {
                    ext.insert(ClientAddr::from_socket(a));
                }
            }
            self.inner.call(req)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_returns_the_same_identity_and_stays_bounded() {
        let ca = msec_test_support::TestCa::new("example.org");
        let a = ca.svid("/a").cert_der;
        let cache = IdentityCache::new();
        let first = cache.get(&a).unwrap();
        assert!(Arc::ptr_eq(&first, &cache.get(&a).unwrap()));
        assert!(cache.get(b"garbage").is_none());
        for i in 0..(IDENTITY_CACHE_CAPACITY + 200) {
            // Distinct (unparseable) inputs are not cached at all; parseable ones are bounded by capacity.
            let _ = cache.get(format!("junk {i}").as_bytes());
        }
        assert!(cache.cache.len() <= IDENTITY_CACHE_CAPACITY);
    }
}
