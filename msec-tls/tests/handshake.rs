//! Real mTLS handshakes over loopback: the peer identity reaches axum and hyper handlers (tonic: grpc.rs); every
//! kind of bad client certificate is refused at the handshake.
#![allow(clippy::unwrap_used)]

mod common;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::routing::get;
use axum::{Json, Router};
use common::{Outcome, Pki, TD_A, TD_B, attempt};
use http::{Request, Response};
use msec_core::{ClientAddr, PeerIdentity, PeerSource, SecureTransport};
use msec_test_support::{LeafSpec, TestCa};
use msec_tls::{ClientAuth, RequirePeerLayer, ServerTls, Trust};
use rustls::AlertDescription;
use serde_json::{Value, json};

fn describe(ext: &http::Extensions) -> Value {
    let peer = ext.get::<Arc<PeerIdentity>>();
    json!({
        "peer": peer.map(|p| serde_json::to_value(&**p).unwrap()),
        "client_ip": ext.get::<ClientAddr>().map(|a| a.ip().to_string()),
        "secure": ext.get::<SecureTransport>().is_some(),
    })
}

fn app() -> Router {
    Router::new()
        .route(
            "/whoami",
            get(|req: axum::extract::Request| async move { Json(describe(req.extensions())) }),
        )
        .route(
            "/extract",
            get(|peer: PeerIdentity| async move { peer.spiffe_id.map(|i| i.to_string()).unwrap_or_default() }),
        )
        .route(
            "/frontend-only",
            get(|| async { "ok" }).route_layer(RequirePeerLayer::spiffe_id(
                format!("spiffe://{TD_A}/ns/prod/sa/frontend").parse().unwrap(),
            )),
        )
}

async fn start(tls: ServerTls, app: Router) -> std::net::SocketAddr {
    let (listener, addr) = msec_test_support::net::listener().await;
    let running = msec_tls::serve(listener, tls, app).spawn().unwrap();
    drop(running); // detached: runs until the test's runtime ends
    addr
}

fn json_of(o: &Outcome) -> Value {
    match o {
        Outcome::Answered(200, body) => serde_json::from_str(body).unwrap(),
        other => panic!("expected 200, got {other:?}"),
    }
}

#[tokio::test]
async fn valid_svid_reaches_the_axum_handler_with_every_field() {
    let pki = Pki::new();
    let addr = start(pki.server_tls(ClientAuth::required(pki.spiffe_trust())), app()).await;
    let svid = pki.svid_a("/ns/prod/sa/frontend");
    let before = SystemTime::now();

    let v = json_of(&attempt(&pki.client(Some(&svid)), addr, "/whoami").await);
    let p = &v["peer"];
    let id = format!("spiffe://{TD_A}/ns/prod/sa/frontend");
    assert_eq!(p["spiffe_id"], json!(id));
    assert_eq!(p["uris"], json!([id]));
    assert_eq!(p["dns_names"], json!([]));
    assert_eq!(p["subject"], json!(format!("CN={id}")));
    assert_eq!(p["issuer"], json!(format!("O=msec tests,CN=msec test CA {TD_A}")));
    assert_eq!(p["source"], json!("handshake"));
    let fp = ring::digest::digest(&ring::digest::SHA256, &svid.cert_der);
    let hex: String = fp.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(p["fingerprint_sha256"], json!(hex));
    let parsed = x509_parser::parse_x509_certificate(&svid.cert_der).unwrap().1;
    let serial = format!("{:x}", parsed.serial);
    assert_eq!(
        p["serial"].as_str().unwrap().trim_start_matches('0'),
        serial.trim_start_matches('0')
    );
    let now = before.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
    let nb = p["not_before"].as_u64().unwrap();
    let na = p["not_after"].as_u64().unwrap();
    assert!(nb < now && now < na, "{nb} < {now} < {na}");
    assert_eq!(v["client_ip"], json!("127.0.0.1"));
    assert_eq!(v["secure"], json!(true));

    // msec-core's axum extractor reads the same Arc.
    assert_eq!(
        attempt(&pki.client(Some(&svid)), addr, "/extract")
            .await
            .to_string_body(),
        Some(id.clone())
    );
}

trait Body {
    fn to_string_body(&self) -> Option<String>;
}
impl Body for Outcome {
    fn to_string_body(&self) -> Option<String> {
        match self {
            Outcome::Answered(200, b) => Some(b.clone()),
            _ => None,
        }
    }
}

#[tokio::test]
async fn identity_reaches_a_hyper_service_fn() {
    let pki = Pki::new();
    let svc = msec_tls::from_hyper(hyper::service::service_fn(
        |req: Request<hyper::body::Incoming>| async move {
            let peer = req.extensions().get::<Arc<PeerIdentity>>().cloned();
            let body = peer
                .and_then(|p| p.spiffe_id.clone())
                .map(|i| i.to_string())
                .unwrap_or_else(|| "none".into());
            Ok::<_, Infallible>(Response::new(http_body_util::Full::new(bytes::Bytes::from(body))))
        },
    ));
    let (listener, addr) = msec_test_support::net::listener().await;
    let tls = pki.server_tls(ClientAuth::required(pki.spiffe_trust()));
    let _server = msec_tls::serve(listener, tls, svc).spawn().unwrap();
    let svid = pki.b.svid("/ns/batch/sa/reporter");
    let o = attempt(&pki.client(Some(&svid)), addr, "/").await;
    assert_eq!(
        o.to_string_body().as_deref(),
        Some("spiffe://other.org/ns/batch/sa/reporter")
    );
}

/// The alert a refused client receives, with the given client certificate and server trust.
async fn refused(pki: &Pki, trust: Trust, cert: &msec_test_support::TestCert) -> Option<AlertDescription> {
    let addr = start(pki.server_tls(ClientAuth::required(trust)), app()).await;
    let o = attempt(&pki.client(Some(cert)), addr, "/whoami").await;
    assert!(
        matches!(o, Outcome::TlsFailed(_)),
        "expected a refused handshake, got {o:?}"
    );
    o.alert()
}

#[tokio::test]
async fn untrusted_ca_is_refused() {
    let pki = Pki::new();
    // A CA nobody trusts issues an ID of a trusted domain.
    let rogue = TestCa::new("rogue.example");
    let forged = Pki::leaf_with_uris(&rogue, &["spiffe://example.org/ns/prod/sa/frontend"]);
    let alert = refused(&pki, pki.spiffe_trust(), &forged).await;
    assert_eq!(alert, Some(AlertDescription::UnknownCA));
    // And with plain roots.
    let alert = refused(&pki, pki.roots_a(), &forged).await;
    assert_eq!(alert, Some(AlertDescription::UnknownCA));
    // A look-alike CA (same name as the trusted one, another key): the signature does not verify.
    let lookalike = TestCa::new(TD_A);
    let alert = refused(&pki, pki.spiffe_trust(), &lookalike.svid("/ns/prod/sa/frontend")).await;
    assert_eq!(alert, Some(AlertDescription::DecryptError));
    // A trust domain with no bundle at all.
    let third = TestCa::new("third.example");
    let alert = refused(&pki, pki.spiffe_trust(), &third.svid("/x")).await;
    assert_eq!(alert, Some(AlertDescription::UnknownCA));
}

#[tokio::test]
async fn expired_and_not_yet_valid_leaves_are_refused() {
    let pki = Pki::new();
    let id = format!("spiffe://{TD_A}/ns/prod/sa/frontend");
    let expired = pki.a.issue(&LeafSpec::new("expired").uri(&id).expired());
    let alert = refused(&pki, pki.spiffe_trust(), &expired).await;
    assert_eq!(alert, Some(AlertDescription::CertificateExpired));
    let early = pki.a.issue(&LeafSpec::new("early").uri(&id).not_yet_valid());
    let alert = refused(&pki, pki.spiffe_trust(), &early).await;
    assert_eq!(alert, Some(AlertDescription::CertificateExpired));
}

#[tokio::test]
async fn one_domain_cannot_mint_another_domains_identity() {
    let pki = Pki::new();
    // Domain B's ID signed by A's CA, while both A and B are trusted.
    let forged = Pki::leaf_with_uris(&pki.a, &[&format!("spiffe://{TD_B}/ns/prod/sa/admin")]);
    let alert = refused(&pki, pki.spiffe_trust(), &forged).await;
    assert_eq!(alert, Some(AlertDescription::UnknownCA));
    // The same certificate passes plain-roots verification against A: the per-domain rule is what stops it.
    let addr = start(pki.server_tls(ClientAuth::required(pki.roots_a())), app()).await;
    assert!(matches!(
        attempt(&pki.client(Some(&forged)), addr, "/whoami").await,
        Outcome::Answered(200, _)
    ));
}

#[tokio::test]
async fn svid_shape_is_enforced() {
    let pki = Pki::new();
    let trust = pki.spiffe_trust();
    // Two SPIFFE URI SANs.
    let two = Pki::leaf_with_uris(&pki.a, &["spiffe://example.org/a", "spiffe://example.org/b"]);
    assert_eq!(
        refused(&pki, trust.clone(), &two).await,
        Some(AlertDescription::CertificateUnknown)
    );
    // A SPIFFE URI plus another URI: still more than one URI SAN.
    let mixed = Pki::leaf_with_uris(&pki.a, &["spiffe://example.org/a", "https://example.org/"]);
    assert_eq!(
        refused(&pki, trust.clone(), &mixed).await,
        Some(AlertDescription::CertificateUnknown)
    );
    // No URI SAN.
    let none = Pki::leaf_with_uris(&pki.a, &[]);
    assert_eq!(
        refused(&pki, trust.clone(), &none).await,
        Some(AlertDescription::CertificateUnknown)
    );
    // A trust-domain ID (no path) is not a workload.
    let root = Pki::leaf_with_uris(&pki.a, &["spiffe://example.org"]);
    assert_eq!(
        refused(&pki, trust, &root).await,
        Some(AlertDescription::CertificateUnknown)
    );
}

#[tokio::test]
async fn two_uri_sans_under_plain_roots_connect_without_a_spiffe_id() {
    let pki = Pki::new();
    let addr = start(pki.server_tls(ClientAuth::required(pki.roots_a())), app()).await;
    let two = Pki::leaf_with_uris(&pki.a, &["spiffe://example.org/a", "spiffe://example.org/b"]);
    let v = json_of(&attempt(&pki.client(Some(&two)), addr, "/whoami").await);
    assert_eq!(v["peer"]["spiffe_id"], Value::Null);
    assert_eq!(
        v["peer"]["uris"],
        json!(["spiffe://example.org/a", "spiffe://example.org/b"])
    );
    // So a SPIFFE allowlist refuses it.
    match attempt(&pki.client(Some(&two)), addr, "/frontend-only").await {
        Outcome::Answered(403, body) => assert!(body.contains("peer_not_allowed"), "{body}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn no_client_certificate_under_required_is_refused() {
    let pki = Pki::new();
    let addr = start(pki.server_tls(ClientAuth::required(pki.spiffe_trust())), app()).await;
    let o = attempt(&pki.client(None), addr, "/whoami").await;
    assert_eq!(o.alert(), Some(AlertDescription::CertificateRequired), "{o:?}");
}

#[tokio::test]
async fn no_client_certificate_under_optional_connects_without_identity() {
    let pki = Pki::new();
    let addr = start(pki.server_tls(ClientAuth::optional(pki.spiffe_trust())), app()).await;
    let v = json_of(&attempt(&pki.client(None), addr, "/whoami").await);
    assert_eq!(v["peer"], Value::Null);
    assert_eq!(v["secure"], json!(true));
    // Routes that need a peer say so.
    match attempt(&pki.client(None), addr, "/frontend-only").await {
        Outcome::Answered(403, body) => {
            let p: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(p["code"], "missing_peer_identity");
        }
        other => panic!("{other:?}"),
    }
    match attempt(&pki.client(None), addr, "/extract").await {
        Outcome::Answered(403, body) => assert!(body.contains("missing_peer_identity")),
        other => panic!("{other:?}"),
    }
    // A certificate, when sent, is still verified...
    let evil = Pki::leaf_with_uris(
        &TestCa::new("rogue.example"),
        &["spiffe://example.org/ns/prod/sa/frontend"],
    );
    assert_eq!(
        attempt(&pki.client(Some(&evil)), addr, "/whoami").await.alert(),
        Some(AlertDescription::UnknownCA)
    );
    // ...and when valid, used.
    let ok = pki.svid_a("/ns/prod/sa/frontend");
    assert_eq!(
        attempt(&pki.client(Some(&ok)), addr, "/frontend-only")
            .await
            .to_string_body()
            .as_deref(),
        Some("ok")
    );
}

#[tokio::test]
async fn no_client_auth_asks_for_no_certificate() {
    let pki = Pki::new();
    let addr = start(pki.server_tls(ClientAuth::none()), app()).await;
    // Even a client holding a certificate connects without presenting it.
    let svid = pki.svid_a("/ns/prod/sa/frontend");
    let v = json_of(&attempt(&pki.client(Some(&svid)), addr, "/whoami").await);
    assert_eq!(v["peer"], Value::Null);
}

#[tokio::test]
async fn intermediate_chains_verify() {
    let pki = Pki::new();
    let inter = pki.a.intermediate("issuing");
    let leaf = inter.svid("/ns/prod/sa/frontend");
    let chain = msec_test_support::TestCert {
        cert_pem: inter.chain_pem(&leaf),
        ..leaf.clone()
    };
    let addr = start(pki.server_tls(ClientAuth::required(pki.spiffe_trust())), app()).await;
    let v = json_of(&attempt(&pki.client(Some(&chain)), addr, "/whoami").await);
    assert_eq!(
        v["peer"]["spiffe_id"],
        json!("spiffe://example.org/ns/prod/sa/frontend")
    );
    assert_eq!(
        v["peer"]["issuer"],
        json!("O=msec tests,CN=msec test intermediate issuing")
    );
    // Without the intermediate the chain does not build.
    assert_eq!(
        refused(&pki, pki.spiffe_trust(), &leaf).await,
        Some(AlertDescription::UnknownCA)
    );
}

#[tokio::test]
async fn revoked_certificates_are_refused_with_crls() {
    let pki = Pki::new();
    let id = "spiffe://example.org/ns/prod/sa/frontend";
    let revoked = pki.a.issue(&LeafSpec::new("revoked").uri(id).serial(0x1001));
    let good = pki.a.issue(&LeafSpec::new("good").uri(id).serial(0x1002));
    let crl = pki.a.crl_pem(&[0x1001]);
    let trust = Trust::spiffe()
        .bundle(Pki::td(TD_A), [pki.a.cert()])
        .crl_pem(crl.as_bytes())
        .build()
        .unwrap();
    let addr = start(pki.server_tls(ClientAuth::required(trust)), app()).await;
    assert_eq!(
        attempt(&pki.client(Some(&revoked)), addr, "/whoami").await.alert(),
        Some(AlertDescription::CertificateRevoked)
    );
    assert!(matches!(
        attempt(&pki.client(Some(&good)), addr, "/whoami").await,
        Outcome::Answered(200, _)
    ));

    // With a CRL only for domain A, domain B's certificates have an unknown status: refused by default...
    let trust = Trust::spiffe()
        .bundle(Pki::td(TD_A), [pki.a.cert()])
        .bundle(Pki::td(TD_B), [pki.b.cert()])
        .crl_pem(crl.as_bytes())
        .build()
        .unwrap();
    let b_client = pki.b.svid("/ns/x");
    let alert = refused(&pki, trust, &b_client).await;
    assert!(alert.is_some(), "unknown revocation status must be refused");
    // ...unless explicitly allowed.
    let trust = Trust::spiffe()
        .bundle(Pki::td(TD_A), [pki.a.cert()])
        .bundle(Pki::td(TD_B), [pki.b.cert()])
        .crl_pem(crl.as_bytes())
        .allow_unknown_revocation_status()
        .build()
        .unwrap();
    let addr = start(pki.server_tls(ClientAuth::required(trust)), app()).await;
    assert!(matches!(
        attempt(&pki.client(Some(&b_client)), addr, "/whoami").await,
        Outcome::Answered(200, _)
    ));
    assert_eq!(
        attempt(&pki.client(Some(&revoked)), addr, "/whoami").await.alert(),
        Some(AlertDescription::CertificateRevoked)
    );
}

#[tokio::test]
async fn tls13_only_refuses_tls12_and_default_accepts_both() {
    let pki = Pki::new();
    let svid = pki.svid_a("/ns/prod/sa/frontend");
    let tls12_client = {
        let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS12])
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(pki.a.cert()).unwrap();
        let cfg = cfg
            .with_root_certificates(roots)
            .with_client_auth_cert(vec![svid.cert()], svid.key())
            .unwrap();
        Arc::new(cfg)
    };
    let connect = |addr: std::net::SocketAddr, cfg: Arc<rustls::ClientConfig>| async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tokio_rustls::TlsConnector::from(cfg)
            .connect("localhost".try_into().unwrap(), tcp)
            .await
    };

    let strict = ServerTls::builder()
        .client_auth(ClientAuth::required(pki.spiffe_trust()))
        .certificate(pki.server_cert())
        .tls13_only()
        .build()
        .unwrap();
    let addr = start(strict, app()).await;
    assert!(connect(addr, tls12_client.clone()).await.is_err());
    let s = pki.client(Some(&svid)).connect(addr, "localhost").await.unwrap();
    assert_eq!(s.get_ref().1.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_3));

    let default = pki.server_tls(ClientAuth::required(pki.spiffe_trust()));
    let addr = start(default, app()).await;
    let s = connect(addr, tls12_client).await.unwrap();
    assert_eq!(s.get_ref().1.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_2));
    // And the TLS 1.2 client gets its identity through too.
    let v = json_of(&attempt(&pki.client(Some(&svid)), addr, "/whoami").await);
    assert_eq!(
        v["peer"]["spiffe_id"],
        json!("spiffe://example.org/ns/prod/sa/frontend")
    );
}

#[tokio::test]
async fn alpn_offers_h2_then_http1() {
    let pki = Pki::new();
    let svid = pki.svid_a("/ns/prod/sa/frontend");
    let addr = start(pki.server_tls(ClientAuth::required(pki.spiffe_trust())), app()).await;
    let s = pki.client(Some(&svid)).connect(addr, "localhost").await.unwrap();
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let s = pki.client_h1(Some(&svid)).connect(addr, "localhost").await.unwrap();
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));

    // An HTTP/2 request through hyper-util's client and the TlsConnector gets the identity too.
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, http_body_util::Empty<bytes::Bytes>>(pki.client(Some(&svid)).connector());
    let resp = client
        .get(format!("https://localhost:{}/extract", addr.port()).parse().unwrap())
        .await
        .unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(&body[..], b"spiffe://example.org/ns/prod/sa/frontend");
}

#[tokio::test]
async fn every_request_on_a_connection_shares_one_identity() {
    let pki = Pki::new();
    let svid = pki.svid_a("/ns/prod/sa/frontend");
    let seen = Arc::new(std::sync::Mutex::new(Vec::<usize>::new()));
    let s2 = seen.clone();
    let app = Router::new().route(
        "/",
        get(move |req: axum::extract::Request| {
            let seen = s2.clone();
            async move {
                let p = req.extensions().get::<Arc<PeerIdentity>>().unwrap();
                seen.lock().unwrap().push(Arc::as_ptr(p) as usize);
                "ok"
            }
        }),
    );
    let addr = start(pki.server_tls(ClientAuth::required(pki.spiffe_trust())), app).await;
    let mut conn = common::Conn::open(&pki.client_h1(Some(&svid)), addr).await;
    for _ in 0..3 {
        assert_eq!(conn.get("/").await.0, 200);
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3);
    assert!(seen.iter().all(|p| *p == seen[0]), "one Arc per connection");
    let _ = Duration::ZERO;
    let _ = PeerSource::Handshake;
}

#[tokio::test]
async fn resumption_is_off_under_client_auth_unless_allowed() {
    let pki = Pki::new();
    let svid = pki.svid_a("/ns/prod/sa/frontend");
    let client = msec_tls::ClientTls::builder()
        .server_auth(msec_tls::ServerAuth::dns(pki.roots_a()))
        .client_cert(common::source(&svid))
        .alpn_protocols(["http/1.1"])
        .allow_resumption()
        .build()
        .unwrap();
    let kinds = |addr| {
        let client = client.clone();
        async move {
            // The first exchange reads the whole response, so the client receives any session ticket.
            assert!(matches!(
                attempt(&client, addr, "/whoami").await,
                Outcome::Answered(200, _)
            ));
            let s = client.connect(addr, "localhost").await.unwrap();
            let kind = s.get_ref().1.handshake_kind();
            let o = attempt(&client, addr, "/whoami").await;
            (kind, json_of(&o)["peer"]["spiffe_id"].clone())
        }
    };
    let addr = start(pki.server_tls(ClientAuth::required(pki.spiffe_trust())), app()).await;
    let (kind, id) = kinds(addr).await;
    assert_eq!(kind, Some(rustls::HandshakeKind::Full));
    assert_eq!(id, json!("spiffe://example.org/ns/prod/sa/frontend"));

    let lenient = ServerTls::builder()
        .client_auth(ClientAuth::required(pki.spiffe_trust()))
        .certificate(pki.server_cert())
        .danger_allow_resumption_with_client_auth()
        .build()
        .unwrap();
    let addr = start(lenient, app()).await;
    let (kind, id) = kinds(addr).await;
    assert_eq!(kind, Some(rustls::HandshakeKind::Resumed));
    // A resumed session keeps the identity of its first handshake.
    assert_eq!(id, json!("spiffe://example.org/ns/prod/sa/frontend"));
}

#[tokio::test]
async fn per_route_allowlists_through_the_policy() {
    use msec_core::policy::{AuthorizeLayer, Policy, Requirement};
    let pki = Pki::new();
    let policy = Policy::builder()
        .allow(
            "orders: the frontend only",
            ["GET /orders"],
            Requirement::peer_spiffe_id("spiffe://example.org/ns/prod/sa/frontend".parse().unwrap()),
        )
        .allow(
            "reports: anything in prod",
            ["GET /reports"],
            Requirement::peer_spiffe_prefix(Pki::td(TD_A), "/ns/prod"),
        )
        .allow(
            "partners: the other domain",
            ["GET /partners"],
            Requirement::peer_trust_domain(Pki::td(TD_B)),
        )
        .build()
        .unwrap();
    let ok = || async { "ok" };
    let app = Router::new()
        .route("/orders", get(ok))
        .route("/reports", get(ok))
        .route("/partners", get(ok))
        .layer(AuthorizeLayer::new(policy));
    let addr = start(pki.server_tls(ClientAuth::optional(pki.spiffe_trust())), app).await;
    let frontend = pki.client_h1(Some(&pki.svid_a("/ns/prod/sa/frontend")));
    let batch = pki.client_h1(Some(&pki.svid_a("/ns/prod/sa/batch")));
    let production = pki.client_h1(Some(&pki.svid_a("/ns/production/sa/x")));
    let partner = pki.client_h1(Some(&pki.b.svid("/ns/prod/sa/frontend")));
    let anonymous = pki.client_h1(None);
    let code = |o: Outcome| match o {
        Outcome::Answered(200, _) => "ok".to_owned(),
        Outcome::Answered(_, body) => serde_json::from_str::<Value>(&body).unwrap()["code"]
            .as_str()
            .unwrap()
            .to_owned(),
        other => panic!("{other:?}"),
    };
    for (client, path, want) in [
        (&frontend, "/orders", "ok"),
        (&batch, "/orders", "peer_not_allowed"),
        (&partner, "/orders", "peer_not_allowed"),
        (&anonymous, "/orders", "missing_peer_identity"),
        (&batch, "/reports", "ok"),
        (&production, "/reports", "peer_not_allowed"),
        (&partner, "/reports", "peer_not_allowed"),
        (&partner, "/partners", "ok"),
        (&frontend, "/partners", "peer_not_allowed"),
    ] {
        assert_eq!(code(attempt(client, addr, path).await), want, "{path}");
    }
}
