//! Hot reload from files: certificates and trust bundles rotated on disk mid-test. New handshakes see the new
//! material, live connections continue, bad files keep the old material and are reported. No sleeps: reloads
//! are driven by `poll()`, and the background watcher by tokio's paused clock.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use common::{Conn, Counters, Outcome, Pki, TD_A, attempt, subject_of};
use msec_core::PeerIdentity;
use msec_test_support::{LeafSpec, TestCa, TestCert};
use msec_tls::{ClientAuth, ClientTls, ReloadingCert, ServerAuth, ServerTls, TlsConfigError, Trust, Watcher};

fn app() -> Router {
    Router::new().route(
        "/whoami",
        get(|peer: Option<PeerIdentity>| async move { peer.map(|p| p.subject).unwrap_or_else(|| "anonymous".into()) }),
    )
}

fn write(dir: &Path, name: &str, cert: &TestCert) {
    cert.write_to(dir, name);
}

fn server_cert(ca: &TestCa, cn: &str) -> TestCert {
    ca.issue(&LeafSpec::new(cn).dns("localhost"))
}

#[tokio::test]
async fn server_certificate_rotated_on_disk() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "server", &server_cert(&pki.a, "server v1"));
    let cert = ReloadingCert::from_pem_files(dir.path().join("server.crt"), dir.path().join("server.key")).unwrap();
    let tls = ServerTls::builder()
        .client_auth(ClientAuth::required(pki.spiffe_trust()))
        .certificate(cert.clone())
        .build()
        .unwrap();
    let (listener, addr) = msec_test_support::net::listener().await;
    let server = msec_tls::serve(listener, tls, app()).spawn().unwrap();
    let svid = pki.svid_a("/ns/prod/sa/frontend");
    let client = pki.client_h1(Some(&svid));

    let mut old = Conn::open(&client, addr).await;
    assert_eq!(subject_of(&old.tls.server_cert), "CN=server v1");
    assert_eq!(
        old.get("/whoami").await.1,
        "CN=spiffe://example.org/ns/prod/sa/frontend"
    );

    // Nothing changed on disk: nothing reloads.
    assert!(!cert.poll().unwrap());
    assert_eq!(cert.status().generation, 1);

    // Rotate (new key too).
    write(dir.path(), "server", &server_cert(&pki.a, "server v2"));
    assert!(cert.poll().unwrap());
    assert_eq!(cert.status().generation, 2);
    assert_eq!(subject_of(&cert.chain()[0]), "CN=server v2");

    // New connections see the new certificate...
    let mut new = Conn::open(&client, addr).await;
    assert_eq!(subject_of(&new.tls.server_cert), "CN=server v2");
    assert_eq!(new.get("/whoami").await.0, 200);
    // ...and the connection opened before the rotation continues, on its old session.
    assert_eq!(old.get("/whoami").await.0, 200);
    assert_eq!(old.get("/whoami").await.0, 200);
    assert_eq!(subject_of(&old.tls.server_cert), "CN=server v1");

    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn bad_files_keep_the_old_certificate_and_are_reported() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let v1 = server_cert(&pki.a, "server v1");
    write(dir.path(), "server", &v1);
    let (crt, key) = (dir.path().join("server.crt"), dir.path().join("server.key"));
    let cert = ReloadingCert::from_pem_files(&crt, &key).unwrap();
    let tls = ServerTls::builder()
        .client_auth(ClientAuth::none())
        .certificate(cert.clone())
        .build()
        .unwrap();
    let (listener, addr) = msec_test_support::net::listener().await;
    let _server = msec_tls::serve(listener, tls, app()).spawn().unwrap();
    let client = pki.client_h1(None);
    let counters = Counters::default();

    // 1. Garbage in the certificate file.
    std::fs::write(
        &crt,
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let err = metrics::with_local_recorder(&counters, || cert.poll()).unwrap_err();
    assert!(matches!(err, TlsConfigError::Pem { .. }), "{err}");
    // 2. A rotation caught half-way: the new certificate, the old key.
    let v2 = server_cert(&pki.a, "server v2");
    std::fs::write(&crt, &v2.cert_pem).unwrap();
    let err = metrics::with_local_recorder(&counters, || cert.poll()).unwrap_err();
    assert!(matches!(err, TlsConfigError::KeyMismatch { .. }), "{err}");
    // 3. The key file disappears.
    std::fs::remove_file(&key).unwrap();
    let err = metrics::with_local_recorder(&counters, || cert.poll()).unwrap_err();
    assert!(matches!(err, TlsConfigError::Read { .. }), "{err}");
    assert!(err.to_string().contains("server.key"));

    let status = cert.status();
    assert_eq!((status.generation, status.failures), (1, 3));
    assert!(status.last_error.unwrap().contains("server.key"));
    assert_eq!(counters.get("msec_tls_reloads_total,kind=certificate,result=error"), 3);
    // Handshakes still use v1.
    let s = client.connect(addr, "localhost").await.unwrap();
    assert_eq!(subject_of(&common::tls_info(&s).server_cert), "CN=server v1");

    // The rotation completes: the next poll picks it up and clears the error.
    std::fs::write(&key, &v2.key_pem).unwrap();
    assert!(metrics::with_local_recorder(&counters, || cert.poll()).unwrap());
    assert_eq!(
        counters.get("msec_tls_reloads_total,kind=certificate,result=changed"),
        1
    );
    let status = cert.status();
    assert_eq!((status.generation, status.failures, status.last_error), (2, 3, None));
    let s = client.connect(addr, "localhost").await.unwrap();
    assert_eq!(subject_of(&common::tls_info(&s).server_cert), "CN=server v2");
}

#[tokio::test]
async fn trust_bundle_rotated_on_disk() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle.pem");
    let new_ca = TestCa::new(TD_A); // the domain's next CA (same name, new key)
    std::fs::write(&bundle, pki.a.cert_pem()).unwrap();
    let trust = Trust::spiffe()
        .bundle_pem_file(Pki::td(TD_A), &bundle)
        .build_reloading()
        .unwrap();
    let tls = pki.server_tls(ClientAuth::required(trust.clone()));
    let (listener, addr) = msec_test_support::net::listener().await;
    let _server = msec_tls::serve(listener, tls, app()).spawn().unwrap();

    let old_client = pki.client_h1(Some(&pki.svid_a("/ns/prod/sa/old")));
    let new_client = pki.client_h1(Some(&new_ca.svid("/ns/prod/sa/new")));
    let mut live = Conn::open(&old_client, addr).await;
    assert_eq!(live.get("/whoami").await.1, "CN=spiffe://example.org/ns/prod/sa/old");
    assert!(matches!(
        attempt(&new_client, addr, "/whoami").await,
        Outcome::TlsFailed(_)
    ));

    // During a CA rotation the bundle holds both CAs.
    std::fs::write(&bundle, format!("{}{}", pki.a.cert_pem(), new_ca.cert_pem())).unwrap();
    assert!(trust.poll().unwrap());
    assert!(matches!(
        attempt(&new_client, addr, "/whoami").await,
        Outcome::Answered(200, _)
    ));
    assert!(matches!(
        attempt(&old_client, addr, "/whoami").await,
        Outcome::Answered(200, _)
    ));

    // Then the old CA is retired: new handshakes with old SVIDs fail, the live connection continues.
    std::fs::write(&bundle, new_ca.cert_pem()).unwrap();
    assert!(trust.poll().unwrap());
    assert!(matches!(
        attempt(&old_client, addr, "/whoami").await,
        Outcome::TlsFailed(_)
    ));
    assert!(matches!(
        attempt(&new_client, addr, "/whoami").await,
        Outcome::Answered(200, _)
    ));
    assert_eq!(live.get("/whoami").await.0, 200);

    // An empty bundle file is refused; the new CA stays in force.
    std::fs::write(&bundle, "").unwrap();
    assert!(matches!(trust.poll(), Err(TlsConfigError::NoCertificates { .. })));
    assert!(matches!(
        attempt(&new_client, addr, "/whoami").await,
        Outcome::Answered(200, _)
    ));
    assert_eq!(trust.status().failures, 1);
}

#[tokio::test]
async fn crl_published_by_rewriting_its_file() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let crl = dir.path().join("a.crl");
    std::fs::write(&crl, pki.a.crl_pem(&[])).unwrap();
    let id = "spiffe://example.org/ns/prod/sa/frontend";
    let victim = pki.a.issue(&LeafSpec::new("victim").uri(id).serial(77));
    let trust = Trust::spiffe()
        .bundle(Pki::td(TD_A), [pki.a.cert()])
        .crl_pem_file(&crl)
        .build_reloading()
        .unwrap();
    let (listener, addr) = msec_test_support::net::listener().await;
    let _server = msec_tls::serve(listener, pki.server_tls(ClientAuth::required(trust.clone())), app())
        .spawn()
        .unwrap();
    let client = pki.client_h1(Some(&victim));
    assert!(matches!(
        attempt(&client, addr, "/whoami").await,
        Outcome::Answered(200, _)
    ));
    std::fs::write(&crl, pki.a.crl_pem(&[77])).unwrap();
    assert!(trust.poll().unwrap());
    assert_eq!(
        attempt(&client, addr, "/whoami").await.alert(),
        Some(rustls::AlertDescription::CertificateRevoked)
    );
}

#[tokio::test]
async fn client_certificate_rotates_for_outbound_calls() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "svid", &pki.svid_a("/ns/prod/sa/frontend"));
    let svid = ReloadingCert::from_pem_files(dir.path().join("svid.crt"), dir.path().join("svid.key")).unwrap();
    let client = ClientTls::builder()
        .server_auth(ServerAuth::dns(pki.roots_a()))
        .client_cert(svid.clone())
        .alpn_protocols(["http/1.1"])
        .build()
        .unwrap();
    let (listener, addr) = msec_test_support::net::listener().await;
    let _server = msec_tls::serve(
        listener,
        pki.server_tls(ClientAuth::required(pki.spiffe_trust())),
        app(),
    )
    .spawn()
    .unwrap();
    let mut before = Conn::open(&client, addr).await;
    assert_eq!(
        before.get("/whoami").await.1,
        "CN=spiffe://example.org/ns/prod/sa/frontend"
    );
    write(dir.path(), "svid", &pki.svid_a("/ns/prod/sa/frontend-v2"));
    assert!(svid.poll().unwrap());
    let mut after = Conn::open(&client, addr).await;
    assert_eq!(
        after.get("/whoami").await.1,
        "CN=spiffe://example.org/ns/prod/sa/frontend-v2"
    );
    // The earlier connection keeps the identity it authenticated with.
    assert_eq!(
        before.get("/whoami").await.1,
        "CN=spiffe://example.org/ns/prod/sa/frontend"
    );
}

#[tokio::test(start_paused = true)]
async fn watcher_polls_on_its_interval() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "server", &server_cert(&pki.a, "server v1"));
    let cert = ReloadingCert::from_pem_files(dir.path().join("server.crt"), dir.path().join("server.key")).unwrap();
    let watcher = Watcher::new(Duration::from_secs(30)).watch(cert.clone());
    assert_eq!(watcher.poll_all(), 0);
    let handle = watcher.spawn();

    write(dir.path(), "server", &server_cert(&pki.a, "server v2"));
    // Less than an interval: no reload yet.
    tokio::time::advance(Duration::from_secs(10)).await;
    settle().await;
    assert_eq!(cert.status().generation, 1);
    // The next tick reloads.
    tokio::time::advance(Duration::from_secs(25)).await;
    wait_for(|| cert.status().generation == 2).await;
    assert_eq!(subject_of(&cert.chain()[0]), "CN=server v2");

    handle.stop();
    write(dir.path(), "server", &server_cert(&pki.a, "server v3"));
    tokio::time::advance(Duration::from_secs(120)).await;
    settle().await;
    assert_eq!(cert.status().generation, 2, "a stopped watcher polls no more");
}

/// Lets spawned tasks (and the blocking pool) run without advancing the paused clock.
async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

/// Yields until `cond` holds (the reload runs on the blocking pool, in real time).
async fn wait_for(cond: impl Fn() -> bool) {
    for _ in 0..1_000_000 {
        if cond() {
            return;
        }
        tokio::task::yield_now().await;
        std::thread::yield_now();
    }
    panic!("condition not reached");
}
