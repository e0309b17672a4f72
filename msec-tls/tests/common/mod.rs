//! Shared fixtures for msec-tls tests: a PKI of two trust domains, servers and clients over loopback.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use msec_test_support::{LeafSpec, TestCa, TestCert};
use msec_tls::{CertSource, ClientAuth, ClientTls, ServerAuth, ServerTls, Trust, TrustDomain};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

pub const TD_A: &str = "example.org";
pub const TD_B: &str = "other.org";

/// Two trust domains, each with its own CA, and a localhost server certificate from A.
pub struct Pki {
    pub a: TestCa,
    pub b: TestCa,
    pub server: TestCert,
}

impl Pki {
    pub fn new() -> Self {
        let a = TestCa::new(TD_A);
        let b = TestCa::new(TD_B);
        let server = a.localhost();
        Self { a, b, server }
    }

    pub fn td(name: &str) -> TrustDomain {
        name.parse().unwrap()
    }

    /// SPIFFE bundles for both domains.
    pub fn spiffe_trust(&self) -> Trust {
        Trust::spiffe()
            .bundle(Self::td(TD_A), [self.a.cert()])
            .bundle(Self::td(TD_B), [self.b.cert()])
            .build()
            .unwrap()
    }

    /// Plain roots: CA A.
    pub fn roots_a(&self) -> Trust {
        Trust::roots().cert(self.a.cert()).build().unwrap()
    }

    pub fn server_cert(&self) -> CertSource {
        source(&self.server)
    }

    /// A server requiring SPIFFE client certificates of A or B.
    pub fn server_tls(&self, auth: ClientAuth) -> ServerTls {
        ServerTls::builder()
            .client_auth(auth)
            .certificate(self.server_cert())
            .build()
            .unwrap()
    }

    /// A client that verifies the localhost server by DNS against CA A and presents `cert`.
    pub fn client(&self, cert: Option<&TestCert>) -> ClientTls {
        let b = ClientTls::builder().server_auth(ServerAuth::dns(self.roots_a()));
        match cert {
            Some(c) => b.client_cert(source(c)).build().unwrap(),
            None => b.no_client_cert().build().unwrap(),
        }
    }

    /// A client offering HTTP/1.1 only (so raw reads see HTTP/1.1).
    pub fn client_h1(&self, cert: Option<&TestCert>) -> ClientTls {
        let b = ClientTls::builder().server_auth(ServerAuth::dns(self.roots_a()));
        match cert {
            Some(c) => b.client_cert(source(c)).alpn_protocols(["http/1.1"]).build().unwrap(),
            None => b.no_client_cert().alpn_protocols(["http/1.1"]).build().unwrap(),
        }
    }

    /// An SVID of trust domain A.
    pub fn svid_a(&self, path: &str) -> TestCert {
        self.a.svid(path)
    }

    /// A leaf of `ca` with exactly the given URI SANs.
    pub fn leaf_with_uris(ca: &TestCa, uris: &[&str]) -> TestCert {
        let mut spec = LeafSpec::new("leaf");
        for u in uris {
            spec = spec.uri(u);
        }
        ca.issue(&spec)
    }
}

pub fn source(c: &TestCert) -> CertSource {
    CertSource::pem(c.cert_pem.as_bytes(), c.key_pem.as_bytes()).unwrap()
}

/// What happened to a connection attempt.
#[derive(Debug)]
pub enum Outcome {
    /// The server answered with this HTTP status and body.
    Answered(u16, String),
    /// TLS failed; the rustls error seen by the client, if there was one.
    TlsFailed(Option<rustls::Error>),
}

impl Outcome {
    pub fn alert(&self) -> Option<rustls::AlertDescription> {
        match self {
            Outcome::TlsFailed(Some(rustls::Error::AlertReceived(a))) => Some(*a),
            _ => None,
        }
    }
}

fn rustls_error(e: &std::io::Error) -> Option<rustls::Error> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .cloned()
}

/// Connects with `client`, sends `GET path` over HTTP/1.1 on the raw stream, and reports what happened. With
/// TLS 1.3 a refused client certificate surfaces only after the client's handshake completes, as an alert on the
/// first read; this helper reads it.
pub async fn attempt(client: &ClientTls, addr: SocketAddr, path: &str) -> Outcome {
    let mut stream = match client.connect(addr, "localhost").await {
        Ok(s) => s,
        Err(e) => return Outcome::TlsFailed(rustls_error(&e)),
    };
    let req = format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n");
    if let Err(e) = stream.write_all(req.as_bytes()).await {
        return Outcome::TlsFailed(rustls_error(&e));
    }
    let mut buf = Vec::new();
    match stream.read_to_end(&mut buf).await {
        Ok(_) if !buf.is_empty() => {}
        Ok(_) => return Outcome::TlsFailed(None),
        Err(e) if buf.is_empty() => return Outcome::TlsFailed(rustls_error(&e)),
        Err(_) => {}
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Outcome::Answered(status, dechunk(&body))
}

/// Undoes chunked transfer encoding if the body looks chunked.
fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    loop {
        let Some((size, after)) = rest.split_once("\r\n") else {
            return body.to_owned();
        };
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            return body.to_owned();
        };
        if n == 0 {
            return out;
        }
        if after.len() < n {
            return body.to_owned();
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
}

/// One HTTP/1.1 connection kept open (keep-alive) for several requests.
pub struct Conn {
    pub sender: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    pub tls: Arc<TlsInfo>,
}

/// What the client saw of the TLS session.
#[derive(Debug, Clone)]
pub struct TlsInfo {
    pub server_cert: Vec<u8>,
    pub alpn: Option<Vec<u8>>,
    pub version: Option<rustls::ProtocolVersion>,
}

pub fn tls_info(s: &TlsStream<TcpStream>) -> TlsInfo {
    let (_, c) = s.get_ref();
    TlsInfo {
        server_cert: c
            .peer_certificates()
            .and_then(|v| v.first())
            .map(|c| c.to_vec())
            .unwrap_or_default(),
        alpn: c.alpn_protocol().map(<[u8]>::to_vec),
        version: c.protocol_version(),
    }
}

impl Conn {
    pub async fn open(client: &ClientTls, addr: SocketAddr) -> Self {
        let stream = client.connect(addr, "localhost").await.unwrap();
        let tls = Arc::new(tls_info(&stream));
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        Self { sender, tls }
    }

    pub async fn get(&mut self, path: &str) -> (StatusCode, String) {
        self.sender.ready().await.unwrap();
        let req = Request::get(path)
            .header("host", "localhost")
            .body(Empty::new())
            .unwrap();
        let resp = self.sender.send_request(req).await.unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }
}

/// The CN of a DER certificate (for telling rotated certificates apart).
pub fn subject_of(der: &[u8]) -> String {
    msec_tls::peer_identity_from_der(der, msec_core::PeerSource::Handshake)
        .unwrap()
        .subject
}

/// A metrics recorder that counts counter increments by name and labels, for `metrics::with_local_recorder`.
#[derive(Default, Clone)]
pub struct Counters {
    inner: Arc<std::sync::Mutex<std::collections::HashMap<String, u64>>>,
}

impl Counters {
    pub fn get(&self, key: &str) -> u64 {
        self.inner.lock().unwrap().get(key).copied().unwrap_or(0)
    }
}

struct Handle {
    key: String,
    map: Arc<std::sync::Mutex<std::collections::HashMap<String, u64>>>,
}

impl metrics::CounterFn for Handle {
    fn increment(&self, value: u64) {
        *self.map.lock().unwrap().entry(self.key.clone()).or_default() += value;
    }
    fn absolute(&self, value: u64) {
        self.map.lock().unwrap().insert(self.key.clone(), value);
    }
}

impl metrics::Recorder for Counters {
    fn describe_counter(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn describe_gauge(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn describe_histogram(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        let mut name = key.name().to_owned();
        for l in key.labels() {
            name.push_str(&format!(",{}={}", l.key(), l.value()));
        }
        metrics::Counter::from_arc(Arc::new(Handle {
            key: name,
            map: self.inner.clone(),
        }))
    }
    fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::noop()
    }
    fn register_histogram(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Histogram {
        metrics::Histogram::noop()
    }
}
