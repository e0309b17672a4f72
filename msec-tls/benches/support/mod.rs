//! Servers and a client shared by the msec-tls benches.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::convert::Infallible;
use std::future::IntoFuture;
use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use msec_core::{PeerIdentity, PeerSource};
use msec_test_support::{TestCa, TestCert};
use msec_tls::{CertSource, ClientAuth, ClientTls, PeerExtensions, ServerAuth, ServerTls, Trust};

/// The four servers of the handshake comparison, in order.
pub const NAMES: [&str; 4] = [
    "raw: rustls WebPkiClientVerifier + tokio-rustls + hyper",
    "raw loop + msec SPIFFE verifier, no identity extraction",
    "raw loop + msec SPIFFE verifier + identity extraction",
    "msec_tls::serve (SPIFFE verifier, identity, timeouts, cap, graceful)",
];

pub fn source(c: &TestCert) -> CertSource {
    CertSource::pem(c.cert_pem.as_bytes(), c.key_pem.as_bytes()).unwrap()
}

pub async fn ok(_req: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(b"ok"))))
}

/// The raw primitive: accept, tokio-rustls handshake, hyper-util auto. With `extract`, the same loop also
/// parses the peer certificate into `Arc<PeerIdentity>` and puts it in each request (what `serve` does), so the
/// two differ only by the identity extraction.
pub async fn raw_server(config: Arc<rustls::ServerConfig>, extract: bool) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let (tcp, remote) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = tcp.set_nodelay(true);
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let http = auto::Builder::new(TokioExecutor::new());
                if extract {
                    let peer = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map(|der| Arc::new(msec_tls::peer_identity_from_der(der, PeerSource::Handshake).unwrap()));
                    let svc = PeerExtensions::new(tower::service_fn(reads_identity), peer, remote);
                    let svc = hyper_util::service::TowerToHyperService::new(svc);
                    let _ = http.serve_connection(TokioIo::new(tls), svc).await;
                } else {
                    let _ = http
                        .serve_connection(TokioIo::new(tls), hyper::service::service_fn(ok))
                        .await;
                }
            });
        }
    });
    addr
}

/// A handler that reads the identity, as real ones do.
pub async fn reads_identity(req: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    black_box(req.extensions().get::<Arc<PeerIdentity>>().cloned());
    Ok(Response::new(Full::new(Bytes::from_static(b"ok"))))
}

pub async fn msec_server(tls: ServerTls) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(msec_tls::serve(listener, tls, tower::service_fn(reads_identity)).into_future());
    addr
}

/// One new connection, one GET.
pub async fn first_request(client: &ClientTls, addr: SocketAddr) {
    let stream = client.connect(addr, "localhost").await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get("/")
        .header("host", "localhost")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    black_box(resp.into_body().collect().await.unwrap());
}

/// Starts the four servers (see [`NAMES`]) and a client presenting an SVID, offering HTTP/1.1, no resumption.
pub async fn setup() -> ([SocketAddr; 4], ClientTls) {
    let ca = TestCa::new("example.org");
    let server_cert = ca.localhost();
    let svid = ca.svid("/ns/prod/sa/frontend");
    let spiffe = Trust::spiffe()
        .bundle("example.org".parse().unwrap(), [ca.cert()])
        .build()
        .unwrap();
    let msec_tls = ServerTls::builder()
        .client_auth(ClientAuth::required(spiffe))
        .certificate(source(&server_cert))
        .build()
        .unwrap();

    // rustls alone: WebPkiClientVerifier over CA roots, the same certificate, no resumption.
    let rustls_config = {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.cert()).unwrap();
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .unwrap();
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![server_cert.cert()], server_cert.key())
            .unwrap();
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        cfg.send_tls13_tickets = 0;
        Arc::new(cfg)
    };

    let servers = [
        raw_server(rustls_config, false).await,
        raw_server(msec_tls.config().clone(), false).await,
        raw_server(msec_tls.config().clone(), true).await,
        msec_server(msec_tls.clone()).await,
    ];
    let client = ClientTls::builder()
        .server_auth(ServerAuth::dns(Trust::roots().cert(ca.cert()).build().unwrap()))
        .client_cert(source(&svid))
        .alpn_protocols(["http/1.1"])
        .build()
        .unwrap();

    (servers, client)
}
