//! The outbound client: server verification by DNS name or by SPIFFE ID (exact, trust domain, prefix), per
//! trust domain bundles on the client side too.
#![allow(clippy::unwrap_used)]

mod common;

use axum::Router;
use axum::routing::get;
use common::{Pki, TD_A, TD_B, source};
use msec_core::policy::Requirement;
use msec_test_support::{LeafSpec, TestCa, TestCert, net};
use msec_tls::{ClientAuth, ClientTls, ServerAuth, ServerTls, TlsConfigError, Trust};

async fn server_with(pki: &Pki, cert: &TestCert) -> std::net::SocketAddr {
    let tls = ServerTls::builder()
        .client_auth(ClientAuth::optional(pki.spiffe_trust()))
        .certificate(source(cert))
        .build()
        .unwrap();
    let (listener, addr) = net::listener().await;
    let s = msec_tls::serve(listener, tls, Router::new().route("/", get(|| async { "ok" })))
        .spawn()
        .unwrap();
    drop(s); // detached
    addr
}

fn client(auth: ServerAuth) -> ClientTls {
    ClientTls::builder().server_auth(auth).no_client_cert().build().unwrap()
}

async fn connects(c: &ClientTls, addr: std::net::SocketAddr, name: &str) -> Result<(), String> {
    c.connect(addr, name).await.map(|_| ()).map_err(|e| e.to_string())
}

#[tokio::test]
async fn server_verified_by_spiffe_id() {
    let pki = Pki::new();
    let addr = server_with(&pki, &pki.a.svid("/ns/prod/sa/orders")).await;
    let orders = "spiffe://example.org/ns/prod/sa/orders".parse().unwrap();

    // Exact ID; the host name is irrelevant (the SVID has no DNS SAN).
    let c = client(ServerAuth::spiffe_id(pki.spiffe_trust(), orders));
    connects(&c, addr, "orders.internal").await.unwrap();
    connects(&c, addr, "127.0.0.1").await.unwrap();
    // Another ID.
    let c = client(ServerAuth::spiffe_id(
        pki.spiffe_trust(),
        "spiffe://example.org/ns/prod/sa/payments".parse().unwrap(),
    ));
    let e = connects(&c, addr, "localhost").await.unwrap_err();
    assert!(e.contains("NotAccepted"), "{e}");
    // Trust domain and prefix, through msec-core's requirements.
    let c = client(ServerAuth::trust_domain(pki.spiffe_trust(), Pki::td(TD_A)));
    connects(&c, addr, "localhost").await.unwrap();
    let c = client(ServerAuth::trust_domain(pki.spiffe_trust(), Pki::td(TD_B)));
    assert!(connects(&c, addr, "localhost").await.is_err());
    let c = client(ServerAuth::spiffe(
        pki.spiffe_trust(),
        Requirement::peer_spiffe_prefix(Pki::td(TD_A), "/ns/prod"),
    ));
    connects(&c, addr, "localhost").await.unwrap();
    let c = client(ServerAuth::spiffe(
        pki.spiffe_trust(),
        Requirement::peer_spiffe_prefix(Pki::td(TD_A), "/ns/dev"),
    ));
    assert!(connects(&c, addr, "localhost").await.is_err());
}

#[tokio::test]
async fn spiffe_server_verification_uses_the_bundle_of_the_servers_domain() {
    let pki = Pki::new();
    // A's CA issues a server SVID claiming domain B.
    let forged = pki
        .a
        .issue(&LeafSpec::new("forged").uri("spiffe://other.org/ns/prod/sa/orders"));
    let addr = server_with(&pki, &forged).await;
    let c = client(ServerAuth::spiffe_id(
        pki.spiffe_trust(),
        "spiffe://other.org/ns/prod/sa/orders".parse().unwrap(),
    ));
    let e = connects(&c, addr, "localhost").await.unwrap_err();
    assert!(e.contains("UnknownIssuer"), "{e}");
    // A server certificate that is not an SVID.
    let addr = server_with(&pki, &pki.server).await;
    let c = client(ServerAuth::trust_domain(pki.spiffe_trust(), Pki::td(TD_A)));
    let e = connects(&c, addr, "localhost").await.unwrap_err();
    assert!(e.contains("NoUriSan"), "{e}");
}

#[tokio::test]
async fn server_verified_by_dns_name() {
    let pki = Pki::new();
    let addr = server_with(&pki, &pki.server).await;
    let c = client(ServerAuth::dns(pki.roots_a()));
    connects(&c, addr, "localhost").await.unwrap();
    connects(&c, addr, "127.0.0.1").await.unwrap();
    let e = connects(&c, addr, "example.com").await.unwrap_err();
    assert!(e.contains("not valid for name"), "{e}");
    // A server certificate from a CA the client does not trust.
    let other = TestCa::new("elsewhere.example");
    let addr = server_with(&pki, &other.localhost()).await;
    let e = connects(&c, addr, "localhost").await.unwrap_err();
    assert!(e.contains("UnknownIssuer"), "{e}");
    // A certificate for client authentication only is not a server certificate.
    let client_only = pki.a.issue(&LeafSpec::new("c").dns("localhost").client_only());
    let addr = server_with(&pki, &client_only).await;
    let e = connects(&c, addr, "localhost").await.unwrap_err();
    assert!(e.contains("InvalidPurpose"), "{e}");
}

#[tokio::test]
async fn dns_verification_needs_plain_roots() {
    let pki = Pki::new();
    let e = ClientTls::builder()
        .server_auth(ServerAuth::dns(pki.spiffe_trust()))
        .no_client_cert()
        .build()
        .unwrap_err();
    assert!(matches!(e, TlsConfigError::Invalid(_)), "{e}");
}

#[test]
fn trust_configuration_errors() {
    let e = Trust::roots().build().unwrap_err();
    assert!(matches!(e, TlsConfigError::EmptyTrust));
    let e = Trust::roots().pem(b"no pem here").build().unwrap_err();
    assert!(matches!(e, TlsConfigError::NoCertificates { .. }), "{e}");
    let e = Trust::roots().pem_file("/nonexistent/ca.pem").build().unwrap_err();
    assert!(matches!(e, TlsConfigError::Read { .. }), "{e}");
    let e = Trust::spiffe().build().unwrap_err();
    assert!(matches!(e, TlsConfigError::EmptyTrust));
    let e = Trust::spiffe()
        .bundle_json(TD_A.parse().unwrap(), br#"{"keys":[{"use":"jwt-svid","kty":"EC"}]}"#)
        .build()
        .unwrap_err();
    assert!(matches!(e, TlsConfigError::InvalidBundle { .. }), "{e}");
    let e = Trust::roots().cert(vec![1u8, 2, 3].into()).build().unwrap_err();
    assert!(matches!(e, TlsConfigError::InvalidTrustAnchor { .. }), "{e}");
    let e = Trust::roots()
        .cert(TestCa::new("x").cert())
        .crl_pem(b"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n")
        .build()
        .unwrap_err();
    assert!(matches!(e, TlsConfigError::InvalidCrl { .. }), "{e}");
    // Keys: missing, mismatched, and never echoed.
    let ca = TestCa::new("x");
    let a = ca.svid("/a");
    let b = ca.svid("/b");
    let e = msec_tls::CertSource::pem(a.cert_pem.as_bytes(), b"").unwrap_err();
    assert!(matches!(e, TlsConfigError::NoPrivateKey { .. }));
    let e = msec_tls::CertSource::pem(a.cert_pem.as_bytes(), b.key_pem.as_bytes()).unwrap_err();
    assert!(matches!(e, TlsConfigError::KeyMismatch { .. }));
    let broken_key = a.key_pem.replace('A', "!");
    let e = msec_tls::CertSource::pem(a.cert_pem.as_bytes(), broken_key.as_bytes()).unwrap_err();
    assert!(
        !format!("{e} {e:?}").contains(&a.key_pem[40..60]),
        "key material must not leak into errors"
    );
}

#[test]
fn spiffe_bundle_documents_are_read() {
    use base64::Engine;
    let ca = TestCa::new(TD_A);
    let x5c = base64::engine::general_purpose::STANDARD.encode(ca.cert().as_ref());
    let doc = serde_json::json!({
        "spiffe_sequence": 1,
        "keys": [
            {"use": "jwt-svid", "kty": "EC", "kid": "k1", "crv": "P-256", "x": "..", "y": ".."},
            {"use": "x509-svid", "kty": "EC", "crv": "P-256", "x": "..", "y": "..", "x5c": [x5c]},
            {"use": "x509-svid", "kty": "EC"}
        ]
    });
    let trust = Trust::spiffe()
        .bundle_json(TD_A.parse().unwrap(), doc.to_string().as_bytes())
        .build()
        .unwrap();
    assert_eq!(trust.trust_domains(), ["example.org"]);
    assert!(format!("{trust:?}").contains("example.org"));
}
