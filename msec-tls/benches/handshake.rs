//! msec-tls benchmarks, each msec measurement beside the raw primitive it builds on.
//!
//! - `handshake_first_request`: a new mTLS connection (full TLS 1.3 handshake with a client SVID) and one
//!   HTTP/1.1 request, against (a) tokio-rustls + hyper-util with rustls' own `WebPkiClientVerifier`, (b) the
//!   same raw loop with msec's SPIFFE verifier (per-domain bundles, SVID checks), (c) that loop plus parsing the
//!   peer certificate into `Arc<PeerIdentity>` and putting it in the request, (d) `msec_tls::serve`.
//!   (c) vs (b) is the cost of identity extraction; (d) vs (c) the serve loop's timeouts, cap and shutdown.
//! - `identity_extraction`: the per-connection parse alone, beside SHA-256 of the same DER.
//! - `per_request_identity`: what each request pays to carry and read the identity.
//!
//! - `adapter_per_request` (feature `axum-server`): what an adapter layer adds per request.
//!
//! Run: `cargo bench -p msec-tls --all-features --bench handshake -- --warm-up-time 1 --measurement-time 3`
#![allow(missing_docs, clippy::unwrap_used)]

mod support;

use std::convert::Infallible;
use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use http::Request;
use msec_core::{PeerIdentity, PeerSource};
use msec_test_support::TestCa;
use msec_tls::PeerExtensions;
use tokio::runtime::Runtime;
use tower::{Service, ServiceExt};

fn handshake(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let (servers, client) = rt.block_on(support::setup());
    // Sequential runs drift with the load of a shared machine; benches/handshake_paired.rs alternates the four
    // servers connection by connection for the ratios.
    let mut g = c.benchmark_group("handshake_first_request");
    for (addr, name) in servers.iter().zip(support::NAMES) {
        g.bench_function(name, |b| b.iter(|| rt.block_on(support::first_request(&client, *addr))));
    }
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
