//! msec-tls benchmarks, each msec measurement beside the raw primitive it builds on.
//!
//! - `handshake_first_request`: a new mTLS connection (full TLS 1.3 handshake with a client SVID) and one
//!   HTTP/1.1 request, against (a) tokio-rustls + hyper-util with rustls' own `WebPkiClientVerifier`, (b) the
//!   same raw loop with msec's SPIFFE verifier (per-domain bundles, SVID checks), (c) `msec_tls::serve` (SPIFFE
//!   verifier + parsing the peer certificate into `Arc<PeerIdentity>` + request extensions).
//! - `identity_extraction`: the per-connection parse alone, beside SHA-256 of the same DER.
//! - `per_request_identity`: what each request pays to carry and read the identity.
//!
//! - `adapter_per_request` (feature `axum-server`): what an adapter layer adds per request.
//!
//! Run: `cargo bench -p msec-tls --all-features --bench handshake -- --warm-up-time 1 --measurement-time 3`
#![allow(missing_docs, clippy::unwrap_used)]

use std::convert::Infallible;
use std::future::IntoFuture;
use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use msec_core::{PeerIdentity, PeerSource};
use msec_test_support::{TestCa, TestCert};
use msec_tls::{CertSource, ClientAuth, ClientTls, PeerExtensions, ServerAuth, ServerTls, Trust};
use tokio::runtime::Runtime;
use tower::{Service, ServiceExt};

fn source(c: &TestCert) -> CertSource {
    CertSource::pem(c.cert_pem.as_bytes(), c.key_pem.as_bytes()).unwrap()
}

async fn ok(_req: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(b"ok"))))
}

/// The raw primitive: accept, tokio-rustls handshake, hyper-util auto; no identity, no extensions.
async fn raw_server(config: Arc<rustls::ServerConfig>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = tcp.set_nodelay(true);
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), hyper::service::service_fn(ok))
                    .await;
            });
        }
    });
    addr
}

async fn msec_server(tls: ServerTls) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = tower::service_fn(|req: Request<hyper::body::Incoming>| async move {
        // A handler that reads the identity, as real ones do.
        black_box(req.extensions().get::<Arc<PeerIdentity>>().cloned());
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
    });
    tokio::spawn(msec_tls::serve(listener, tls, app).into_future());
    addr
}

/// One new connection, one GET.
async fn first_request(client: &ClientTls, addr: SocketAddr) {
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

fn handshake(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
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

    let (rustls_addr, spiffe_raw_addr, msec_addr) = rt.block_on(async {
        (
            raw_server(rustls_config).await,
            raw_server(msec_tls.config().clone()).await,
            msec_server(msec_tls.clone()).await,
        )
    });
    let client = ClientTls::builder()
        .server_auth(ServerAuth::dns(Trust::roots().cert(ca.cert()).build().unwrap()))
        .client_cert(source(&svid))
        .alpn_protocols(["http/1.1"])
        .build()
        .unwrap();

    let mut g = c.benchmark_group("handshake_first_request");
    g.bench_function("raw: rustls WebPkiClientVerifier + tokio-rustls + hyper", |b| {
        b.iter(|| rt.block_on(first_request(&client, rustls_addr)));
    });
    g.bench_function("raw loop + msec SPIFFE verifier (no identity extraction)", |b| {
        b.iter(|| rt.block_on(first_request(&client, spiffe_raw_addr)));
    });
    g.bench_function("msec_tls::serve (SPIFFE verifier + identity extraction)", |b| {
        b.iter(|| rt.block_on(first_request(&client, msec_addr)));
    });
    g.finish();
}

fn identity_extraction(c: &mut Criterion) {
    let ca = TestCa::new("example.org");
    let der = ca.svid("/ns/prod/sa/frontend").cert_der;
    let mut g = c.benchmark_group("identity_extraction");
    g.bench_function("raw: SHA-256 of the DER certificate", |b| {
        b.iter(|| black_box(ring::digest::digest(&ring::digest::SHA256, black_box(&der))));
    });
    g.bench_function("raw: x509-parser parse only", |b| {
        b.iter(|| {
            black_box(
                x509_parser::parse_x509_certificate(black_box(&der))
                    .unwrap()
                    .1
                    .serial
                    .bits(),
            )
        });
    });
    g.bench_function(
        "msec: peer_identity_from_der (parse, SANs, SVID checks, RFC 4514, SHA-256)",
        |b| {
            b.iter(|| black_box(msec_tls::peer_identity_from_der(black_box(&der), PeerSource::Handshake).unwrap()));
        },
    );
    g.finish();
}

fn per_request(c: &mut Criterion) {
    let ca = TestCa::new("example.org");
    let peer = Arc::new(
        msec_tls::peer_identity_from_der(&ca.svid("/ns/prod/sa/frontend").cert_der, PeerSource::Handshake).unwrap(),
    );
    let remote: SocketAddr = "127.0.0.1:5555".parse().unwrap();
    let rt = Runtime::new().unwrap();

    let mut g = c.benchmark_group("per_request_identity");
    g.bench_function("raw: Arc<PeerIdentity> clone", |b| {
        b.iter(|| black_box(Arc::clone(black_box(&peer))));
    });
    g.bench_function("msec: read Arc<PeerIdentity> from request extensions", |b| {
        let mut req = Request::new(());
        req.extensions_mut().insert(peer.clone());
        b.iter(|| black_box(black_box(&req).extensions().get::<Arc<PeerIdentity>>().cloned()));
    });
    g.bench_function("msec: msec-core axum extractor (owned PeerIdentity: deep clone)", |b| {
        b.iter(|| black_box(PeerIdentity::clone(black_box(&peer))));
    });

    // What the serve loop adds to each request: the identity, ClientAddr and SecureTransport extensions.
    let noop = tower::service_fn(|req: Request<()>| async move { Ok::<_, Infallible>(black_box(req)) });
    g.bench_function("raw: call a service with a fresh request", |b| {
        let mut svc = noop;
        b.iter(|| rt.block_on(async { svc.ready().await.unwrap().call(Request::new(())).await.unwrap() }));
    });
    g.bench_function("msec: PeerExtensions call (Arc clone + 3 extension inserts)", |b| {
        let mut svc = PeerExtensions::new(noop, Some(peer.clone()), remote);
        b.iter(|| rt.block_on(async { svc.ready().await.unwrap().call(Request::new(())).await.unwrap() }));
    });
    g.finish();
}

/// Adapters see the certificate on every request: a cached lookup (SHA-256 + map) instead of a parse.
#[cfg(feature = "axum-server")]
fn adapters(c: &mut Criterion) {
    use axum_server::tls::TlsInfo;
    use msec_tls::adapters::axum_server::TlsInfoPeerLayer;
    use tower::Layer;

    let ca = TestCa::new("example.org");
    let der = ca.svid("/ns/prod/sa/frontend").cert_der;
    let mut info = TlsInfo::default();
    info.peer_certificates = vec![der.clone()];
    let info = Arc::new(info);
    let rt = Runtime::new().unwrap();
    let noop = tower::service_fn(|req: Request<()>| async move { Ok::<_, Infallible>(black_box(req)) });
    let request = || {
        let mut req = Request::new(());
        req.extensions_mut().insert(info.clone());
        req
    };
    let mut g = c.benchmark_group("adapter_per_request");
    g.bench_function("raw: call a service with a request carrying TlsInfo", |b| {
        let mut svc = noop;
        b.iter(|| rt.block_on(async { svc.ready().await.unwrap().call(request()).await.unwrap() }));
    });
    g.bench_function("msec: TlsInfoPeer call (SHA-256 + cache hit + inserts)", |b| {
        let mut svc = TlsInfoPeerLayer::new().layer(noop);
        b.iter(|| rt.block_on(async { svc.ready().await.unwrap().call(request()).await.unwrap() }));
    });
    g.finish();
}

#[cfg(not(feature = "axum-server"))]
fn adapters(_: &mut Criterion) {}

criterion_group!(benches, handshake, identity_extraction, per_request, adapters);
criterion_main!(benches);
