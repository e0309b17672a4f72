//! The TLS serve loop: accept, handshake (with a timeout), parse the peer certificate once per connection, and
//! serve HTTP/1.1 and HTTP/2 (hyper-util auto) with the peer identity in every request's extensions.

use std::fmt;
use std::future::{Future, IntoFuture};
use std::io;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use msec_core::{ClientAddr, PeerIdentity, PeerSource, SecureTransport};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;
use tower_service::Service;

use crate::identity::peer_identity_from_der;
use crate::server::ServerTls;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Signal = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Serves `service` over TLS on `listener`.
///
/// Each accepted connection gets the TLS handshake (bounded by a [handshake
/// timeout](Serve::handshake_timeout)); the verified peer certificate, if any, is parsed **once** into an
/// `Arc<PeerIdentity>` (source [`PeerSource::Handshake`]); then HTTP/1.1 or HTTP/2 is served (hyper-util auto,
/// upgrades allowed) and every request carries, in its extensions:
///
/// - `Arc<PeerIdentity>` — when the client presented a certificate (always, under
///   [`ClientAuth::required`](crate::ClientAuth::required)); reading it is a pointer clone;
/// - [`ClientAddr`] — the socket peer;
/// - [`SecureTransport`] — so `SecureHeadersLayer` sends HSTS.
///
/// `service` is any cloneable tower service: an axum `Router`, tonic `Routes`, a `tower::service_fn`, or a
/// hyper `service_fn` wrapped in [`from_hyper`]. At most [`max_connections`](Serve::max_connections) are
/// served at once (accepting pauses at the cap). Await the returned [`Serve`] to run it, add a
/// [graceful shutdown](Serve::with_graceful_shutdown) signal, or [`spawn`](Serve::spawn) it (handy in tests).
///
/// ```no_run
/// use axum::{routing::get, Router};
/// use msec_core::PeerIdentity;
/// use msec_tls::{CertSource, ClientAuth, ServerTls, Trust};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let trust = Trust::spiffe().bundle_pem_file("example.org".parse()?, "bundle.pem").build()?;
/// let tls = ServerTls::builder()
///     .client_auth(ClientAuth::required(trust))
///     .certificate(CertSource::pem_files("server.pem", "server.key")?)
///     .build()?;
/// let app = Router::new().route("/whoami", get(|peer: PeerIdentity| async move {
///     peer.spiffe_id.map(|id| id.to_string()).unwrap_or_default()
/// }));
/// let listener = tokio::net::TcpListener::bind("0.0.0.0:8443").await?;
/// let (stop, stopped) = tokio::sync::oneshot::channel::<()>(); // e.g. fired by a SIGTERM handler
/// msec_tls::serve(listener, tls, app)
///     .with_graceful_shutdown(async { let _ = stopped.await; })
///     .await?;
/// # drop(stop);
/// # Ok(()) }
/// ```
pub fn serve<S>(listener: TcpListener, tls: impl Into<ServerTls>, service: S) -> Serve<S> {
    Serve {
        listener,
        tls: tls.into(),
        service,
        handshake_timeout: Duration::from_secs(10),
        max_connections: NonZeroUsize::new(10_000).unwrap_or(NonZeroUsize::MIN),
        shutdown_timeout: None,
        signal: None,
        http: default_http(),
    }
}

fn default_http() -> auto::Builder<TokioExecutor> {
    let mut http = auto::Builder::new(TokioExecutor::new());
    http.http1().timer(TokioTimer::new());
    http.http2().timer(TokioTimer::new());
    http
}

/// A TLS server being configured; `.await` it to run. See [`serve`].
#[must_use = "a Serve does nothing until awaited or spawned"]
pub struct Serve<S> {
    listener: TcpListener,
    tls: ServerTls,
    service: S,
    handshake_timeout: Duration,
    max_connections: NonZeroUsize,
    shutdown_timeout: Option<Duration>,
    signal: Option<Signal>,
    http: auto::Builder<TokioExecutor>,
}

impl<S> fmt::Debug for Serve<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Serve")
            .field("local_addr", &self.listener.local_addr().ok())
            .field("tls", &self.tls)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("max_connections", &self.max_connections)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .finish_non_exhaustive()
    }
}

impl<S> Serve<S> {
    /// How long a client has to complete the TLS handshake (default 10 s). Slow or silent clients are
    /// disconnected.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// The most connections served at once, handshakes included (default 10 000). At the cap, accepting pauses
    /// until a connection ends; new clients wait in the listen backlog.
    pub fn max_connections(mut self, max: NonZeroUsize) -> Self {
        self.max_connections = max;
        self
    }

    /// Stops accepting when `signal` completes, asks every connection to finish its in-flight requests (HTTP/1.1
    /// `Connection: close`, HTTP/2 GOAWAY), waits for them, then returns.
    pub fn with_graceful_shutdown(mut self, signal: impl Future<Output = ()> + Send + 'static) -> Self {
        self.signal = Some(Box::pin(signal));
        self
    }

    /// After a graceful shutdown starts, waits at most this long for connections before closing them (default:
    /// wait for all).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = Some(timeout);
        self
    }

    /// Adjusts the HTTP server (hyper-util auto builder): HTTP/2 settings, header read timeout, ...
    pub fn configure_http(mut self, f: impl FnOnce(&mut auto::Builder<TokioExecutor>)) -> Self {
        f(&mut self.http);
        self
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

impl<S, B> Serve<S>
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    /// Runs the server on a new tokio task and returns a handle that can stop it gracefully. Any signal set
    /// with [`with_graceful_shutdown`](Self::with_graceful_shutdown) still works too.
    ///
    /// ```no_run
    /// # async fn t(listener: tokio::net::TcpListener, tls: msec_tls::ServerTls, app: axum::Router) -> std::io::Result<()> {
    /// let server = msec_tls::serve(listener, tls, app).spawn()?;
    /// let url = format!("https://localhost:{}/", server.local_addr().port());
    /// // ... requests ...
    /// server.shutdown().await?;
    /// # let _ = url; Ok(()) }
    /// ```
    pub fn spawn(mut self) -> io::Result<Running> {
        let local_addr = self.listener.local_addr()?;
        let (tx, rx) = oneshot::channel::<()>();
        let user = self.signal.take();
        // A dropped `Running` detaches (like a dropped `JoinHandle`): only an explicit `shutdown()` stops.
        let requested = async move {
            if rx.await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        self.signal = Some(Box::pin(async move {
            match user {
                Some(user) => {
                    tokio::select! {
                        _ = user => {}
                        _ = requested => {}
                    }
                }
                None => requested.await,
            }
        }));
        let task = tokio::spawn(self.run());
        Ok(Running {
            local_addr,
            stop: Some(tx),
            task,
        })
    }

    async fn run(self) -> io::Result<()> {
        let Serve {
            listener,
            tls,
            service,
            handshake_timeout,
            max_connections,
            shutdown_timeout,
            signal,
            http,
        } = self;
        let mut signal: Signal = signal.unwrap_or_else(|| Box::pin(std::future::pending()));
        let acceptor = tls.acceptor();
        let http = Arc::new(http);
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut conns: JoinSet<()> = JoinSet::new();

        loop {
            while conns.try_join_next().is_some() {}
            if conns.len() >= max_connections.get() {
                tokio::select! {
                    _ = &mut signal => break,
                    _ = conns.join_next() => continue,
                }
            }
            let (tcp, remote) = tokio::select! {
                _ = &mut signal => break,
                _ = conns.join_next(), if !conns.is_empty() => continue,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) if is_connection_error(&e) => continue,
                    Err(e) => {
                        tracing::error!(error = %e, "accept failed; pausing before the next accept");
                        tokio::select! {
                            _ = &mut signal => break,
                            _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                        }
                    }
                },
            };
            conns.spawn(connection(
                tcp,
                remote,
                acceptor.clone(),
                handshake_timeout,
                service.clone(),
                http.clone(),
                stop_rx.clone(),
            ));
        }

        // Graceful shutdown: stop accepting, ask every connection to finish, wait for them.
        drop(listener);
        let _ = stop_tx.send(true);
        let drain = async { while conns.join_next().await.is_some() {} };
        match shutdown_timeout {
            Some(t) => {
                if tokio::time::timeout(t, drain).await.is_err() {
                    tracing::warn!(
                        remaining = conns.len(),
                        "shutdown timeout: closing the remaining connections"
                    );
                    conns.abort_all();
                    while conns.join_next().await.is_some() {}
                }
            }
            None => drain.await,
        }
        Ok(())
    }
}

impl<S, B> IntoFuture for Serve<S>
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Output = io::Result<()>;
    type IntoFuture = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

/// Completes when the server starts shutting down (or is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard returned by `wait_for` is not `Send`: drop it here.
    let _ = stop.wait_for(|s| *s).await.map(|_| ());
}

/// Counts a live connection in the `msec_tls_connections_active` gauge.
struct ActiveGuard;

impl ActiveGuard {
    fn new() -> Self {
        metrics::gauge!("msec_tls_connections_active").increment(1.0);
        Self
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        metrics::gauge!("msec_tls_connections_active").decrement(1.0);
    }
}

fn handshake_result(result: &'static str) {
    metrics::counter!("msec_tls_handshakes_total", "result" => result).increment(1);
}

async fn connection<S, B>(
    tcp: TcpStream,
    remote: SocketAddr,
    acceptor: tokio_rustls::TlsAcceptor,
    handshake_timeout: Duration,
    service: S,
    http: Arc<auto::Builder<TokioExecutor>>,
    mut stop: watch::Receiver<bool>,
) where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let _active = ActiveGuard::new();
    let _ = tcp.set_nodelay(true);
    let stream = tokio::select! {
        r = tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)) => match r {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                handshake_result("error");
                tracing::debug!(%remote, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                handshake_result("timeout");
                tracing::debug!(%remote, "TLS handshake timed out");
                return;
            }
        },
        _ = stopped(&mut stop) => return,
    };
    let peer = match stream.get_ref().1.peer_certificates().and_then(|c| c.first()) {
        None => None,
        Some(der) => match peer_identity_from_der(der.as_ref(), PeerSource::Handshake) {
            Ok(p) => Some(Arc::new(p)),
            Err(e) => {
                // The chain verified, yet x509-parser refuses the leaf: do not serve an identity we cannot read.
                handshake_result("unreadable_peer_certificate");
                tracing::warn!(%remote, error = %e, "closing a connection whose verified peer certificate cannot be parsed");
                return;
            }
        },
    };
    handshake_result("ok");
    let svc = TowerToHyperService::new(PeerExtensions::new(service, peer, remote));
    let conn = http.serve_connection_with_upgrades(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(%remote, error = %e, "connection ended with an error");
            }
        }
        _ = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            if let Err(e) = conn.await {
                tracing::debug!(%remote, error = %e, "connection ended with an error during shutdown");
            }
        }
    }
}

/// A server started with [`Serve::spawn`]. Dropping it detaches the server (it keeps running, like a dropped
/// `JoinHandle`); [`shutdown`](Self::shutdown) stops it gracefully, [`abort`](Self::abort) at once.
#[derive(Debug)]
pub struct Running {
    local_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<io::Result<()>>,
}

impl Running {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Shuts down gracefully (finishing in-flight requests) and waits for the server to stop.
    pub async fn shutdown(mut self) -> io::Result<()> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match (&mut self.task).await {
            Ok(r) => r,
            Err(e) => Err(io::Error::other(e)),
        }
    }

    /// Stops the server at once, dropping every connection.
    pub fn abort(self) {
        self.task.abort();
    }
}

/// The per-connection service of [`serve`]: inserts the connection's `Arc<PeerIdentity>` (when there is one),
/// [`ClientAddr`] and [`SecureTransport`] into every request, then calls `inner`.
///
/// Public for servers with their own accept loop: build one per connection after the handshake.
#[derive(Debug, Clone)]
pub struct PeerExtensions<S> {
    inner: S,
    peer: Option<Arc<PeerIdentity>>,
    addr: ClientAddr,
}

impl<S> PeerExtensions<S> {
    /// Wraps `inner` for one connection from `remote` with `peer`.
    pub fn new(inner: S, peer: Option<Arc<PeerIdentity>>, remote: SocketAddr) -> Self {
        Self {
            inner,
            peer,
            addr: ClientAddr::from_socket(remote),
        }
    }
    /// The connection's peer identity.
    pub fn peer(&self) -> Option<&Arc<PeerIdentity>> {
        self.peer.as_ref()
    }
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

impl<S, B> Service<Request<B>> for PeerExtensions<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let ext = req.extensions_mut();
        ext.insert(self.addr);
        ext.insert(SecureTransport);
        if let Some(peer) = &self.peer {
            ext.insert(peer.clone());
        }
        self.inner.call(req)
    }
}

/// Adapts a hyper service (such as `hyper::service::service_fn(..)`) to a tower service for [`serve`].
///
/// ```
/// use std::convert::Infallible;
/// use hyper::service::service_fn;
///
/// let svc = msec_tls::from_hyper(service_fn(|_req: http::Request<hyper::body::Incoming>| async {
///     Ok::<_, Infallible>(http::Response::new(String::from("hi")))
/// }));
/// # let _ = svc;
/// ```
pub fn from_hyper<S>(service: S) -> HyperService<S> {
    HyperService { inner: service }
}

/// A hyper service as a tower service. See [`from_hyper`].
#[derive(Debug, Clone)]
pub struct HyperService<S> {
    inner: S,
}

impl<S, R> Service<R> for HyperService<S>
where
    S: hyper::service::Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // hyper services are always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: R) -> Self::Future {
        self.inner.call(req)
    }
}
