//! Envoy's x-forwarded-client-cert over real connections: honoured from a trusted proxy (by network or by its own
//! mTLS identity), stripped from anyone else.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::routing::get;
use common::{Pki, TD_A};
use msec_core::policy::Requirement;
use msec_core::{PeerIdentity, SecurityContext};
use msec_test_support::{TestCert, net};
use msec_tls::xfcc::{FORWARDED_CERT_ACCEPTED, FORWARDED_CERT_INVALID, FORWARDED_CERT_STRIPPED};
use msec_tls::{ClientAuth, ClientTls, ForwardedClientCertLayer};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Contexts = Arc<Mutex<Vec<Arc<SecurityContext>>>>;

/// An app that reports the peer identity and whether the XFCC header reached it, behind `layer`, with a
/// SecurityContext per request.
fn app(layer: ForwardedClientCertLayer, contexts: Contexts) -> Router {
    Router::new()
        .route(
            "/",
            get(|req: axum::extract::Request| async move {
                let peer = req
                    .extensions()
                    .get::<Arc<PeerIdentity>>()
                    .map(|p| serde_json::to_value(&**p).unwrap());
                axum::Json(json!({ "peer": peer, "xfcc": req.headers().contains_key("x-forwarded-client-cert") }))
            }),
        )
        .layer(layer)
        .layer(axum::middleware::map_request(move |mut req: axum::extract::Request| {
            let cx = contexts.clone();
            async move {
                let ctx = SecurityContext::new();
                cx.lock().unwrap().push(ctx.clone());
                req.extensions_mut().insert(ctx);
                req
            }
        }))
}

async fn start(pki: &Pki, layer: ForwardedClientCertLayer) -> (std::net::SocketAddr, Contexts) {
    let contexts = Contexts::default();
    let (listener, addr) = net::listener().await;
    let tls = pki.server_tls(ClientAuth::optional(pki.spiffe_trust()));
    let s = msec_tls::serve(listener, tls, app(layer, contexts.clone()))
        .spawn()
        .unwrap();
    drop(s); // detached
    (addr, contexts)
}

/// Sends GET / with the given XFCC header.
async fn get_with(client: &ClientTls, addr: std::net::SocketAddr, xfcc: &str) -> Value {
    let mut s = client.connect(addr, "localhost").await.unwrap();
    let req =
        format!("GET / HTTP/1.1\r\nhost: localhost\r\nx-forwarded-client-cert: {xfcc}\r\nconnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.unwrap();
    assert!(buf.starts_with("HTTP/1.1 200"), "{buf}");
    serde_json::from_str(buf.split_once("\r\n\r\n").unwrap().1).unwrap()
}

fn last_decision(contexts: &Contexts) -> msec_core::Decision {
    let c = contexts.lock().unwrap();
    let d = c.last().unwrap().decisions();
    assert_eq!(d.len(), 1, "{d:?}");
    d.into_iter().next().unwrap()
}

fn xfcc_for(cert: &TestCert, uri: &str) -> String {
    let hash: String = ring::digest::digest(&ring::digest::SHA256, &cert.cert_der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!(
        r#"By=spiffe://example.org/ns/mesh/sa/app;Hash={hash};Subject="CN=web,O=Example";URI={uri};DNS=web.internal"#
    )
}

#[tokio::test]
async fn xfcc_from_a_trusted_network_becomes_the_peer_identity() {
    let pki = Pki::new();
    let (addr, contexts) = start(
        &pki,
        ForwardedClientCertLayer::from_networks(["127.0.0.0/8".parse().unwrap()]),
    )
    .await;
    let client_cert = pki.svid_a("/ns/prod/sa/web");
    let v = get_with(
        &pki.client_h1(None),
        addr,
        &xfcc_for(&client_cert, "spiffe://example.org/ns/prod/sa/web"),
    )
    .await;
    let p = &v["peer"];
    assert_eq!(p["spiffe_id"], json!("spiffe://example.org/ns/prod/sa/web"));
    assert_eq!(p["dns_names"], json!(["web.internal"]));
    assert_eq!(p["subject"], json!("CN=web,O=Example"));
    assert_eq!(p["source"], json!("trusted_proxy"));
    let fp: String = ring::digest::digest(&ring::digest::SHA256, &client_cert.cert_der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(p["fingerprint_sha256"], json!(fp));
    let d = last_decision(&contexts);
    assert_eq!((d.layer, d.code), ("tls", FORWARDED_CERT_ACCEPTED));
    assert_eq!(d.get_detail("peer"), Some("spiffe://example.org/ns/prod/sa/web"));

    // The proxy's own mTLS identity is not the client's: it is replaced.
    let proxy = pki.svid_a("/ns/mesh/sa/ingress");
    let v = get_with(
        &pki.client_h1(Some(&proxy)),
        addr,
        &xfcc_for(&client_cert, "spiffe://example.org/ns/prod/sa/web"),
    )
    .await;
    assert_eq!(v["peer"]["spiffe_id"], json!("spiffe://example.org/ns/prod/sa/web"));

    // With the full certificate (URL-encoded PEM), the identity comes from the certificate itself.
    let cert =
        percent_encoding::utf8_percent_encode(&client_cert.cert_pem, percent_encoding::NON_ALPHANUMERIC).to_string();
    let v = get_with(&pki.client_h1(None), addr, &format!("Hash={fp};Cert=\"{cert}\"")).await;
    assert_eq!(
        v["peer"]["issuer"],
        json!(format!("O=msec tests,CN=msec test CA {TD_A}"))
    );
    assert_eq!(v["peer"]["spiffe_id"], json!("spiffe://example.org/ns/prod/sa/web"));

    // A Hash that does not match the Cert: no identity, recorded as invalid.
    let wrong = "0".repeat(64);
    let v = get_with(
        &pki.client_h1(Some(&proxy)),
        addr,
        &format!("Hash={wrong};Cert=\"{cert}\""),
    )
    .await;
    assert_eq!(v["peer"], Value::Null);
    let d = last_decision(&contexts);
    assert_eq!(d.code, FORWARDED_CERT_INVALID);
    assert_eq!(d.get_detail("error"), Some("Hash does not match Cert"));
    // Malformed.
    let v = get_with(&pki.client_h1(None), addr, "URI=\"unterminated").await;
    assert_eq!(v["peer"], Value::Null);
}

#[tokio::test]
async fn xfcc_from_an_untrusted_peer_is_stripped() {
    let pki = Pki::new();
    let (addr, contexts) = start(
        &pki,
        ForwardedClientCertLayer::from_networks(["10.0.0.0/8".parse().unwrap()]),
    )
    .await;
    let forged = xfcc_for(
        &pki.svid_a("/ns/prod/sa/admin"),
        "spiffe://example.org/ns/prod/sa/admin",
    );

    // Without a certificate: no identity at all, and the handler never sees the header.
    let v = get_with(&pki.client_h1(None), addr, &forged).await;
    assert_eq!(v, json!({"peer": null, "xfcc": false}));
    let d = last_decision(&contexts);
    assert_eq!((d.layer, d.code), ("tls", FORWARDED_CERT_STRIPPED));

    // With a certificate: its own handshake identity stays.
    let me = pki.svid_a("/ns/prod/sa/batch");
    let v = get_with(&pki.client_h1(Some(&me)), addr, &forged).await;
    assert_eq!(v["peer"]["spiffe_id"], json!("spiffe://example.org/ns/prod/sa/batch"));
    assert_eq!(v["peer"]["source"], json!("handshake"));
    assert_eq!(v["xfcc"], json!(false));
}

#[tokio::test]
async fn a_proxy_trusted_by_its_spiffe_id() {
    let pki = Pki::new();
    let ingress = "spiffe://example.org/ns/mesh/sa/ingress";
    let layer = ForwardedClientCertLayer::strip_all().trust_peer(Requirement::peer_spiffe_id(ingress.parse().unwrap()));
    let (addr, _contexts) = start(&pki, layer).await;
    let xfcc = xfcc_for(&pki.svid_a("/ns/prod/sa/web"), "spiffe://example.org/ns/prod/sa/web");

    let proxy = pki.client_h1(Some(&pki.svid_a("/ns/mesh/sa/ingress")));
    let v = get_with(&proxy, addr, &xfcc).await;
    assert_eq!(v["peer"]["spiffe_id"], json!("spiffe://example.org/ns/prod/sa/web"));
    assert_eq!(v["peer"]["source"], json!("trusted_proxy"));
    assert_eq!(v["xfcc"], json!(true));

    // The trusted proxy without XFCC: its own identity is removed, the request has none.
    let mut s = proxy.connect(addr, "localhost").await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.unwrap();
    let v: Value = serde_json::from_str(buf.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_eq!(v["peer"], Value::Null);

    // Any other workload: stripped; and anonymous clients too (127.0.0.1 is not trusted here).
    let other = pki.client_h1(Some(&pki.svid_a("/ns/prod/sa/batch")));
    let v = get_with(&other, addr, &xfcc).await;
    assert_eq!(v["peer"]["spiffe_id"], json!("spiffe://example.org/ns/prod/sa/batch"));
    assert_eq!(v["xfcc"], json!(false));
    let v = get_with(&pki.client_h1(None), addr, &xfcc).await;
    assert_eq!(v, json!({"peer": null, "xfcc": false}));
}

/// The usual Envoy deployment: the sidecar terminates mTLS and forwards plain HTTP over loopback; axum's
/// `ConnectInfo` gives the direct peer (feature `axum`).
#[cfg(feature = "axum")]
#[tokio::test]
async fn behind_a_sidecar_over_plain_http_with_axum_connect_info() {
    let pki = Pki::new();
    let app = Router::new()
        .route(
            "/",
            get(|peer: Option<PeerIdentity>| async move {
                peer.and_then(|p| p.spiffe_id)
                    .map(|i| i.to_string())
                    .unwrap_or_else(|| "none".into())
            }),
        )
        .layer(ForwardedClientCertLayer::from_networks(["127.0.0.1/32"
            .parse()
            .unwrap()]));
    let (listener, addr) = net::listener().await;
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    );
    tokio::spawn(std::future::IntoFuture::into_future(server));
    let xfcc = xfcc_for(&pki.svid_a("/ns/prod/sa/web"), "spiffe://example.org/ns/prod/sa/web");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET / HTTP/1.1\r\nhost: app\r\nx-forwarded-client-cert: {xfcc}\r\nconnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.unwrap();
    assert!(buf.ends_with("spiffe://example.org/ns/prod/sa/web"), "{buf}");
}
