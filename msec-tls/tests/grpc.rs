//! gRPC over mTLS: a tonic client → tonic server with a SPIFFE allowlist through msec-tls's serve loop, the
//! server verified by SPIFFE ID. Statuses are read by a real tonic client.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::{Pki, TD_A, TD_B, source};
use msec_core::PeerIdentity;
use msec_core::policy::{AuthorizeLayer, Policy, Requirement};
use msec_test_support::pb::echo_client::EchoClient;
use msec_test_support::pb::echo_server::{Echo, EchoServer};
use msec_test_support::pb::{SayReply, SayRequest};
use msec_test_support::{TestCert, net};
use msec_tls::{ClientAuth, ClientTls, RequirePeerLayer, ServerAuth, ServerTls, SpiffeId};
use tonic::Code;
use tower::ServiceBuilder;

#[derive(Default)]
struct EchoImpl;

#[tonic::async_trait]
impl Echo for EchoImpl {
    async fn say(&self, req: tonic::Request<SayRequest>) -> Result<tonic::Response<SayReply>, tonic::Status> {
        // The serve loop put the identity in the extensions; tonic hands them to the method.
        let peer = req
            .extensions()
            .get::<Arc<PeerIdentity>>()
            .map(|p| PeerIdentity::clone(p));
        Ok(tonic::Response::new(SayReply {
            message: req.into_inner().message,
            subject: String::new(),
            peer: peer
                .and_then(|p| p.spiffe_id)
                .map(|id| id.to_string())
                .unwrap_or_default(),
        }))
    }
}

const ECHO_ID: &str = "spiffe://example.org/ns/prod/sa/echo";
const FRONTEND: &str = "/ns/prod/sa/frontend";

/// The server presents an SVID; clients verify it by SPIFFE ID, not DNS name.
fn echo_tls(pki: &Pki) -> ServerTls {
    ServerTls::builder()
        .client_auth(ClientAuth::required(pki.spiffe_trust()))
        .certificate(source(&pki.a.svid("/ns/prod/sa/echo")))
        .build()
        .unwrap()
}

fn spiffe_client(pki: &Pki, me: &TestCert) -> ClientTls {
    ClientTls::builder()
        .server_auth(ServerAuth::spiffe_id(pki.spiffe_trust(), ECHO_ID.parse().unwrap()))
        .client_cert(source(me))
        .build()
        .unwrap()
}

async fn channel(tls: &ClientTls, addr: std::net::SocketAddr) -> EchoClient<tonic::transport::Channel> {
    // An http:// URI keeps tonic out of TLS; the connector does it.
    let ch = tonic::transport::Endpoint::from_shared(format!("http://localhost:{}", addr.port()))
        .unwrap()
        .connect_with_connector(tls.connector())
        .await
        .unwrap();
    EchoClient::new(ch)
}

async fn say(client: &mut EchoClient<tonic::transport::Channel>) -> Result<SayReply, tonic::Status> {
    client
        .say(SayRequest { message: "hi".into() })
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn tonic_client_to_tonic_server_with_a_spiffe_allowlist_in_a_policy() {
    let pki = Pki::new();
    let frontend_id: SpiffeId = format!("spiffe://{TD_A}{FRONTEND}").parse().unwrap();
    let policy = Policy::builder()
        .allow(
            "frontend may say",
            ["grpc /msec.test.v1.Echo/Say"],
            Requirement::peer_spiffe_id(frontend_id.clone()),
        )
        .build()
        .unwrap();
    let svc = ServiceBuilder::new()
        .layer(AuthorizeLayer::new(policy))
        .service(EchoServer::new(EchoImpl));
    let (listener, addr) = net::listener().await;
    let server = msec_tls::serve(listener, echo_tls(&pki), svc).spawn().unwrap();

    let mut allowed = channel(&spiffe_client(&pki, &pki.a.svid(FRONTEND)), addr).await;
    let reply = say(&mut allowed).await.unwrap();
    assert_eq!(
        (reply.message.as_str(), reply.peer.as_str()),
        ("hi", frontend_id.as_str())
    );

    let mut other = channel(&spiffe_client(&pki, &pki.a.svid("/ns/prod/sa/batch")), addr).await;
    let st = say(&mut other).await.unwrap_err();
    assert_eq!(st.code(), Code::PermissionDenied);
    assert_eq!(
        st.message(),
        "peer_not_allowed: the calling service is not allowed to access this resource"
    );

    // Another trust domain's workload with the same path is another identity.
    let mut foreign = channel(&spiffe_client(&pki, &pki.b.svid(FRONTEND)), addr).await;
    assert_eq!(say(&mut foreign).await.unwrap_err().code(), Code::PermissionDenied);

    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn require_peer_layer_on_a_tonic_service() {
    let pki = Pki::new();
    let svc = ServiceBuilder::new()
        .layer(RequirePeerLayer::trust_domain(Pki::td(TD_B)))
        .service(EchoServer::new(EchoImpl));
    let (listener, addr) = net::listener().await;
    let _server = msec_tls::serve(listener, echo_tls(&pki), svc).spawn().unwrap();

    let mut b = channel(&spiffe_client(&pki, &pki.b.svid("/ns/batch/sa/reporter")), addr).await;
    assert_eq!(
        say(&mut b).await.unwrap().peer,
        "spiffe://other.org/ns/batch/sa/reporter"
    );
    let mut a = channel(&spiffe_client(&pki, &pki.a.svid(FRONTEND)), addr).await;
    let st = say(&mut a).await.unwrap_err();
    assert_eq!(st.code(), Code::PermissionDenied);
    assert!(st.message().starts_with("peer_not_allowed"), "{}", st.message());
}

#[tokio::test]
async fn client_refuses_a_server_with_another_spiffe_id() {
    let pki = Pki::new();
    let (listener, addr) = net::listener().await;
    let _server = msec_tls::serve(listener, echo_tls(&pki), EchoServer::new(EchoImpl))
        .spawn()
        .unwrap();
    let wrong = ClientTls::builder()
        .server_auth(ServerAuth::spiffe_id(
            pki.spiffe_trust(),
            "spiffe://example.org/ns/prod/sa/payments".parse().unwrap(),
        ))
        .client_cert(source(&pki.a.svid(FRONTEND)))
        .build()
        .unwrap();
    let err = tonic::transport::Endpoint::from_shared(format!("http://localhost:{}", addr.port()))
        .unwrap()
        .connect_with_connector(wrong.connector())
        .await
        .unwrap_err();
    let mut source: Option<&dyn std::error::Error> = Some(&err);
    let mut chain = String::new();
    while let Some(e) = source {
        chain.push_str(&format!("{e} / "));
        source = e.source();
    }
    assert!(
        chain.contains(r#"NotAccepted("spiffe://example.org/ns/prod/sa/echo")"#),
        "{chain}"
    );
}
