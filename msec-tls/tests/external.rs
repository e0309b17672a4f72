//! External clients complete mTLS with the serve loop: `curl --cert` and `openssl s_client`. Skipped with a
//! notice when the programs are missing (a failure under MSEC_REQUIRE_SERVICES=1).
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use axum::Router;
use axum::routing::get;
use common::Pki;
use msec_core::PeerIdentity;
use msec_test_support::{net, services};
use msec_tls::ClientAuth;

struct Files {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

async fn server(pki: &Pki) -> (std::net::SocketAddr, Files) {
    let app = Router::new().route(
        "/whoami",
        get(|peer: PeerIdentity| async move { peer.spiffe_id.map(|i| i.to_string()).unwrap_or_default() }),
    );
    let (listener, addr) = net::listener().await;
    let s = msec_tls::serve(listener, pki.server_tls(ClientAuth::required(pki.spiffe_trust())), app)
        .spawn()
        .unwrap();
    drop(s); // detached
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, pki.a.cert_pem()).unwrap();
    let (cert, key) = pki.svid_a("/ns/tools/sa/curl").write_to(dir.path(), "client");
    (
        addr,
        Files {
            _dir: dir,
            ca,
            cert,
            key,
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_completes_mtls_over_http1_and_http2() {
    if !services::program("curl") {
        return;
    }
    let pki = Pki::new();
    let (addr, f) = server(&pki).await;
    let url = format!("https://localhost:{}/whoami", addr.port());
    for version in ["--http1.1", "--http2"] {
        let out = tokio::task::spawn_blocking({
            let (ca, cert, key, url) = (f.ca.clone(), f.cert.clone(), f.key.clone(), url.clone());
            move || {
                Command::new("curl")
                    .args(["-sS", "--fail", version, "-w", "\n%{http_version}"])
                    .arg("--cacert")
                    .arg(ca)
                    .arg("--cert")
                    .arg(cert)
                    .arg("--key")
                    .arg(key)
                    .arg(url)
                    .output()
                    .unwrap()
            }
        })
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{version}: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (body, http) = stdout.rsplit_once('\n').unwrap();
        assert_eq!(body, "spiffe://example.org/ns/tools/sa/curl");
        assert_eq!(http, if version == "--http2" { "2" } else { "1.1" });
    }

    // Without a client certificate the handshake is refused.
    let out = tokio::task::spawn_blocking({
        let (ca, url) = (f.ca.clone(), url.clone());
        move || {
            Command::new("curl")
                .args(["-sS", "--fail", "--cacert"])
                .arg(ca)
                .arg(url)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(!out.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_s_client_completes_mtls() {
    if !services::program_with_args("openssl", &["version"]) {
        return;
    }
    let pki = Pki::new();
    let (addr, f) = server(&pki).await;
    for version in ["-tls1_3", "-tls1_2"] {
        let out = tokio::task::spawn_blocking({
            let (ca, cert, key) = (f.ca.clone(), f.cert.clone(), f.key.clone());
            move || {
                let mut child = Command::new("openssl")
                    .args([
                        "s_client",
                        "-quiet",
                        "-verify_return_error",
                        version,
                        "-servername",
                        "localhost",
                    ])
                    .args(["-alpn", "http/1.1", "-connect", &format!("127.0.0.1:{}", addr.port())])
                    .arg("-CAfile")
                    .arg(ca)
                    .arg("-cert")
                    .arg(cert)
                    .arg("-key")
                    .arg(key)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap();
                child
                    .stdin
                    .take()
                    .unwrap()
                    .write_all(b"GET /whoami HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                    .unwrap();
                child.wait_with_output().unwrap()
            }
        })
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.starts_with("HTTP/1.1 200 OK"),
            "{version}: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.ends_with("spiffe://example.org/ns/tools/sa/curl"), "{stdout}");
    }
}
