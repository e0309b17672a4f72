//! Servers that terminate TLS with their own acceptor: axum-server (`TlsInfo`) and tonic's built-in TLS
//! (`peer_certs`) fill the same `PeerIdentity` through the adapters (features `axum-server` and `tonic`).
#![cfg(all(feature = "axum-server", feature = "tonic"))]
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use common::{Outcome, Pki, TD_A, attempt, source};
use msec_core::PeerIdentity;
use msec_test_support::pb::echo_client::EchoClient;
use msec_test_support::pb::echo_server::{Echo, EchoServer};
use msec_test_support::pb::{SayReply, SayRequest};
use msec_test_support::{TestCert, net};
use msec_tls::adapters::axum_server::TlsInfoPeerLayer;
use msec_tls::adapters::tonic::TonicTlsPeerLayer;
use msec_tls::{ClientAuth, ClientTls, RequirePeerLayer, ServerAuth, SpiffeId};
use tonic::Code;

const FRONTEND: &str = "/ns/prod/sa/frontend";

#[tokio::test]
async fn axum_server_tls_info_becomes_a_peer_identity() {
    let pki = Pki::new();
    let tls = pki.server_tls(ClientAuth::optional(pki.spiffe_trust()));
    let frontend: SpiffeId = format!("spiffe://{TD_A}{FRONTEND}").parse().unwrap();
    let app = Router::new()
        .route(
            "/whoami",
            get(|peer: Option<PeerIdentity>| async move {
                peer.map(|p| {
                    format!(
                        "{} via {:?}",
                        p.spiffe_id.map(|i| i.to_string()).unwrap_or_default(),
                        p.source
                    )
                })
                .unwrap_or_else(|| "anonymous".into())
            }),
        )
        .route(
            "/frontend",
            get(|| async { "ok" }).route_layer(RequirePeerLayer::spiffe_id(frontend)),
        )
        .layer(TlsInfoPeerLayer::new());
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = std_listener.local_addr().unwrap();
    // axum-server's acceptor, with msec-tls's rustls configuration (SPIFFE verifier included).
    let config = axum_server::tls_rustls::RustlsConfig::from_config(tls.config().clone());
    let server = axum_server::from_tcp_rustls(std_listener, config).unwrap();
    tokio::spawn(server.serve(app.into_make_service()));

    let svid = pki.svid_a(FRONTEND);
    let o = attempt(&pki.client_h1(Some(&svid)), addr, "/whoami").await;
    assert!(
        matches!(&o, Outcome::Answered(200, b) if b == "spiffe://example.org/ns/prod/sa/frontend via Handshake"),
        "{o:?}"
    );
    assert!(matches!(
        attempt(&pki.client_h1(Some(&svid)), addr, "/frontend").await,
        Outcome::Answered(200, _)
    ));
    let other = pki.svid_a("/ns/prod/sa/batch");
    assert!(matches!(
        attempt(&pki.client_h1(Some(&other)), addr, "/frontend").await,
        Outcome::Answered(403, _)
    ));
    assert!(
        matches!(attempt(&pki.client_h1(None), addr, "/whoami").await, Outcome::Answered(200, b) if b == "anonymous")
    );
    assert!(
        matches!(attempt(&pki.client_h1(None), addr, "/frontend").await, Outcome::Answered(403, b) if b.contains("missing_peer_identity"))
    );
}

#[derive(Default)]
struct EchoImpl;

#[tonic::async_trait]
impl Echo for EchoImpl {
    async fn say(&self, req: tonic::Request<SayRequest>) -> Result<tonic::Response<SayReply>, tonic::Status> {
        // The layer's extension and the direct reading of tonic's peer_certs agree.
        let from_layer = req
            .extensions()
            .get::<Arc<PeerIdentity>>()
            .map(|p| PeerIdentity::clone(p));
        let direct = msec_tls::adapters::tonic::peer_identity(&req);
        assert_eq!(from_layer, direct);
        Ok(tonic::Response::new(SayReply {
            message: req.into_inner().message,
            subject: String::new(),
            peer: direct
                .and_then(|p| p.spiffe_id)
                .map(|id| id.to_string())
                .unwrap_or_default(),
        }))
    }
}

#[tokio::test]
async fn tonic_builtin_tls_through_the_adapter() {
    let pki = Pki::new();
    let server = pki.server.clone();
    let tls = tonic::transport::ServerTlsConfig::new()
        .identity(tonic::transport::Identity::from_pem(&server.cert_pem, &server.key_pem))
        .client_ca_root(tonic::transport::Certificate::from_pem(pki.a.cert_pem()));
    let (incoming, addr) = net::tonic_incoming().await;
    let frontend: SpiffeId = format!("spiffe://{TD_A}{FRONTEND}").parse().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .tls_config(tls)
            .unwrap()
            .layer(TonicTlsPeerLayer::new())
            .layer(RequirePeerLayer::spiffe_id(frontend.clone()))
            .add_service(EchoServer::new(EchoImpl))
            .serve_with_incoming(incoming),
    );
    // tonic's server certificate is for localhost: the client checks the DNS name.
    let channel = |me: &TestCert| {
        let tls = ClientTls::builder()
            .server_auth(ServerAuth::dns(pki.roots_a()))
            .client_cert(source(me))
            .build()
            .unwrap();
        async move {
            let ch = tonic::transport::Endpoint::from_shared(format!("http://localhost:{}", addr.port()))
                .unwrap()
                .connect_with_connector(tls.connector())
                .await
                .unwrap();
            EchoClient::new(ch)
        }
    };
    let req = || SayRequest { message: "hi".into() };
    let mut ok = channel(&pki.a.svid(FRONTEND)).await;
    assert_eq!(ok.say(req()).await.unwrap().into_inner().peer, frontend.as_str());
    let mut no = channel(&pki.a.svid("/ns/prod/sa/batch")).await;
    let st = no.say(req()).await.unwrap_err();
    assert_eq!(st.code(), Code::PermissionDenied);
    assert!(st.message().starts_with("peer_not_allowed"));
}
