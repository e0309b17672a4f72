//! RFC 8705 certificate-bound tokens over a real mTLS connection: msec-tls's serve loop puts the client
//! certificate's `PeerIdentity` on each request, `AuthnLayer` with the `CertificateBound` hook compares it with
//! the token's `cnf.x5t#S256`.
#![allow(clippy::unwrap_used, missing_docs)]

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::Extension;
use axum::routing::get;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use msec_authn::AuthnLayer;
use msec_authn::cnf::{CertificateBound, CnfMode, thumbprint};
use msec_authn::jwt::{Issuer, JwtValidator};
use msec_core::Principal;
use msec_test_support::{TestCa, TestCert, TestKey};
use msec_tls::{CertSource, ClientAuth, ClientTls, ServerAuth, ServerTls, Trust};
use serde_json::json;

const ISS: &str = "https://id.example.com";

struct Pki {
    ca: TestCa,
    server: TestCert,
    alice: TestCert,
    mallory: TestCert,
}

impl Pki {
    fn new() -> Self {
        let ca = TestCa::new("example.org");
        let server = ca.localhost();
        let alice = ca.svid("/ns/prod/sa/alice");
        let mallory = ca.svid("/ns/prod/sa/mallory");
        Self {
            ca,
            server,
            alice,
            mallory,
        }
    }

    fn roots(&self) -> Trust {
        Trust::roots().cert(self.ca.cert()).build().unwrap()
    }

    /// Client certificates are optional at the TLS level, so a client without one reaches the authn layer.
    fn server_tls(&self) -> ServerTls {
        ServerTls::builder()
            .client_auth(ClientAuth::optional(self.roots()))
            .certificate(source(&self.server))
            .build()
            .unwrap()
    }

    fn client(&self, cert: Option<&TestCert>) -> Client<msec_tls::TlsConnector, Empty<Bytes>> {
        let b = ClientTls::builder().server_auth(ServerAuth::dns(self.roots()));
        let tls = match cert {
            Some(c) => b.client_cert(source(c)).build().unwrap(),
            None => b.no_client_cert().build().unwrap(),
        };
        Client::builder(TokioExecutor::new()).build(tls.connector().server_name("localhost"))
    }
}

fn source(c: &TestCert) -> CertSource {
    CertSource::pem(c.cert_pem.as_bytes(), c.key_pem.as_bytes()).unwrap()
}

fn validator() -> JwtValidator {
    JwtValidator::builder()
        .issuer(Issuer::new(ISS).audience("payments").pem_key(
            Some(&TestKey::es256().kid),
            jsonwebtoken::Algorithm::ES256,
            TestKey::es256().public_pem.as_bytes(),
        ))
        .build()
        .unwrap()
}

fn token(bound_to: Option<&TestCert>) -> String {
    let key = TestKey::es256();
    let t = key.token().iss(ISS).aud("payments").sub("alice");
    match bound_to {
        Some(c) => t.claim("cnf", json!({"x5t#S256": thumbprint(&c.cert_der)})).sign(),
        None => t.sign(),
    }
}

async fn start(pki: &Pki, mode: CnfMode) -> (msec_tls::Running, SocketAddr) {
    let app = Router::new()
        .route(
            "/pay",
            get(|Extension(p): Extension<Arc<Principal>>| async move { p.subject.clone() }),
        )
        .layer(
            AuthnLayer::jwt(validator())
                .realm("payments")
                .hook(CertificateBound::new(mode)),
        );
    let (listener, addr) = msec_test_support::net::listener().await;
    let running = msec_tls::serve(listener, pki.server_tls(), app).spawn().unwrap();
    (running, addr)
}

struct Answer {
    status: u16,
    www_authenticate: String,
    body: serde_json::Value,
}

async fn get_pay(client: &Client<msec_tls::TlsConnector, Empty<Bytes>>, addr: SocketAddr, token: &str) -> Answer {
    let req = http::Request::get(format!("http://127.0.0.1:{}/pay", addr.port()))
        .header("authorization", format!("Bearer {token}"))
        .body(Empty::new())
        .unwrap();
    let resp = client.request(req).await.unwrap();
    let status = resp.status().as_u16();
    let www_authenticate = resp
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| json!(String::from_utf8_lossy(&bytes)));
    Answer {
        status,
        www_authenticate,
        body,
    }
}

fn assert_rejected(a: &Answer, code: &str) {
    assert_eq!(a.status, 401, "{:?}", a.body);
    assert_eq!(a.body["code"], code, "{:?}", a.body);
    assert!(
        a.www_authenticate
            .starts_with("Bearer realm=\"payments\", error=\"invalid_token\""),
        "{}",
        a.www_authenticate
    );
}

#[tokio::test]
async fn bound_token_needs_its_certificate() {
    let pki = Pki::new();
    let (_server, addr) = start(&pki, CnfMode::Optional).await;
    let bound = token(Some(&pki.alice));

    // Over a connection authenticated with the certificate the token is bound to: accepted.
    let a = get_pay(&pki.client(Some(&pki.alice)), addr, &bound).await;
    assert_eq!((a.status, a.body.as_str()), (200, Some("alice")));

    // Stolen and replayed over another client's mTLS connection: rejected.
    let a = get_pay(&pki.client(Some(&pki.mallory)), addr, &bound).await;
    assert_rejected(&a, "certificate_binding_mismatch");

    // Replayed without a client certificate: rejected.
    let a = get_pay(&pki.client(None), addr, &bound).await;
    assert_rejected(&a, "certificate_binding_mismatch");

    // The verified-token cache does not skip the check: the same token again over the wrong connection.
    let a = get_pay(&pki.client(Some(&pki.mallory)), addr, &bound).await;
    assert_rejected(&a, "certificate_binding_mismatch");
}

#[tokio::test]
async fn unbound_tokens_pass_in_optional_mode_only() {
    let pki = Pki::new();
    let unbound = token(None);

    let (_optional, addr) = start(&pki, CnfMode::Optional).await;
    let a = get_pay(&pki.client(Some(&pki.alice)), addr, &unbound).await;
    assert_eq!((a.status, a.body.as_str()), (200, Some("alice")));
    let a = get_pay(&pki.client(None), addr, &unbound).await;
    assert_eq!(a.status, 200);

    let (_strict, addr) = start(&pki, CnfMode::Strict).await;
    let a = get_pay(&pki.client(Some(&pki.alice)), addr, &unbound).await;
    assert_rejected(&a, "certificate_binding_missing");
    // Strict mode still accepts a correctly bound token.
    let a = get_pay(&pki.client(Some(&pki.alice)), addr, &token(Some(&pki.alice))).await;
    assert_eq!(a.status, 200);
    let a = get_pay(&pki.client(None), addr, &token(Some(&pki.alice))).await;
    assert_rejected(&a, "certificate_binding_mismatch");
}

#[tokio::test]
async fn off_mode_ignores_the_binding() {
    let pki = Pki::new();
    let (_server, addr) = start(&pki, CnfMode::Off).await;
    let a = get_pay(&pki.client(Some(&pki.mallory)), addr, &token(Some(&pki.alice))).await;
    assert_eq!(a.status, 200);
}

#[tokio::test]
async fn malformed_binding_is_an_invalid_claim() {
    let pki = Pki::new();
    let (_server, addr) = start(&pki, CnfMode::Optional).await;
    let t = TestKey::es256()
        .token()
        .iss(ISS)
        .aud("payments")
        .sub("alice")
        .claim("cnf", json!({"x5t#S256": "not-a-thumbprint"}))
        .sign();
    let a = get_pay(&pki.client(Some(&pki.alice)), addr, &t).await;
    assert_rejected(&a, "invalid_claim");
}
