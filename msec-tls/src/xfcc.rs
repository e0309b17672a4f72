//! Envoy's `x-forwarded-client-cert` (XFCC): the client certificate of a connection that a proxy terminated,
//! turned into a [`PeerIdentity`] (source [`PeerSource::TrustedProxy`]) — only when the direct peer is a
//! configured trusted proxy.
//!
//! The header is a comma-separated list of elements, one per proxy hop; each element is `;`-separated
//! `Key=Value` pairs (`By`, `Hash`, `Cert`, `Chain`, `Subject`, `URI`, `DNS`), values optionally in double
//! quotes (with `\"` and `\\` escapes). The **last** element is the one the nearest proxy — the trusted one —
//! appended. See Envoy's `forward_client_cert_details` (`SANITIZE_SET` is the recommended mode).

use std::net::IpAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderName, Request};
use ipnet::IpNet;
use msec_core::context::{self, Outcome, ReasonCode};
use msec_core::policy::Requirement;
use msec_core::spiffe::SpiffeId;
use msec_core::{ClientAddr, ClientAddrSource, PeerIdentity, PeerSource};
use tower_layer::Layer;
use tower_service::Service;

use crate::identity::peer_identity_from_der;
use crate::pem;
use crate::verify::spiffe_requirement_holds;

/// `x-forwarded-client-cert`.
pub static XFCC: HeaderName = HeaderName::from_static("x-forwarded-client-cert");

/// The longest XFCC header (all values together) we parse, in bytes.
pub const MAX_XFCC_LEN: usize = 64 * 1024;
const MAX_ELEMENTS: usize = 32;
const MAX_PAIRS: usize = 256;

/// Recorded when a trusted proxy's XFCC became the request's peer identity.
pub const FORWARDED_CERT_ACCEPTED: ReasonCode = ReasonCode::new("forwarded_client_cert_accepted");
/// Recorded when an XFCC header from a peer that is not a trusted proxy was stripped.
pub const FORWARDED_CERT_STRIPPED: ReasonCode = ReasonCode::new("forwarded_client_cert_stripped");
/// Recorded when a trusted proxy's XFCC could not be used (the request carries no peer identity).
pub const FORWARDED_CERT_INVALID: ReasonCode = ReasonCode::new("forwarded_client_cert_invalid");

/// Why an XFCC header cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum XfccError {
    /// Longer than [`MAX_XFCC_LEN`] or too many elements or pairs.
    #[error("the header is too large")]
    TooLarge,
    /// Not valid XFCC syntax.
    #[error("malformed header: {0}")]
    Syntax(&'static str),
    /// No element.
    #[error("no element")]
    Empty,
    /// The element has neither `Hash` nor `Cert`.
    #[error("the element has neither Hash nor Cert")]
    NoCertificate,
    /// `Hash` is not 64 hex digits.
    #[error("Hash is not a SHA-256 hex digest")]
    BadHash,
    /// `Cert` is not a URL-encoded PEM certificate.
    #[error("Cert is not a URL-encoded PEM certificate")]
    BadCert,
    /// `Hash` and `Cert` disagree.
    #[error("Hash does not match Cert")]
    HashMismatch,
}

/// One XFCC element: what one proxy says about the client certificate of the connection it terminated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct XfccElement {
    /// `By`: the proxy's own certificate URI SANs.
    pub by: Vec<String>,
    /// `Hash`: SHA-256 of the client certificate DER, hex.
    pub hash: Option<String>,
    /// `Cert`: the client certificate, PEM (URL-decoded).
    pub cert: Option<String>,
    /// `Chain`: the client chain, PEM (URL-decoded).
    pub chain: Option<String>,
    /// `Subject`: the client certificate subject, as the proxy wrote it.
    pub subject: Option<String>,
    /// `URI`: the client certificate URI SANs.
    pub uris: Vec<String>,
    /// `DNS`: the client certificate DNS SANs.
    pub dns: Vec<String>,
}

/// Parses an XFCC header value into its elements (first to last).
///
/// ```
/// let v = r#"By=spiffe://example.org/ns/prod/sa/api;Hash=3a5f0c7e2b3b8d1f9e6a4c2d0b8f7e6d5c4b3a291807f6e5d4c3b2a190807060;Subject="CN=web,O=Example";URI=spiffe://example.org/ns/prod/sa/web"#;
/// let els = msec_tls::xfcc::parse(v)?;
/// assert_eq!(els.len(), 1);
/// assert_eq!(els[0].uris, ["spiffe://example.org/ns/prod/sa/web"]);
/// assert_eq!(els[0].subject.as_deref(), Some("CN=web,O=Example"));
/// # Ok::<(), msec_tls::xfcc::XfccError>(())
/// ```
pub fn parse(value: &str) -> Result<Vec<XfccElement>, XfccError> {
    if value.len() > MAX_XFCC_LEN {
        return Err(XfccError::TooLarge);
    }
    let b = value.as_bytes();
    let mut i = 0usize;
    let mut out = Vec::new();
    let mut el = XfccElement::default();
    let mut pairs = 0usize;
    let mut in_element = false;
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && (b[*i] == b' ' || b[*i] == b'\t') {
            *i += 1;
        }
    };
    loop {
        skip_ws(&mut i);
        if i >= b.len() {
            break;
        }
        // key
        let start = i;
        while i < b.len() && b[i] != b'=' && b[i] != b';' && b[i] != b',' {
            i += 1;
        }
        if i >= b.len() || b[i] != b'=' {
            return Err(XfccError::Syntax("expected `Key=Value`"));
        }
        let key = value[start..i].trim();
        if key.is_empty() {
            return Err(XfccError::Syntax("empty key"));
        }
        i += 1; // '='
        // value
        let val = if i < b.len() && b[i] == b'"' {
            i += 1;
            let mut s = String::new();
            loop {
                match b.get(i) {
                    None => return Err(XfccError::Syntax("unterminated quoted value")),
                    Some(b'"') => {
                        i += 1;
                        break;
                    }
                    Some(b'\\') => match b.get(i + 1) {
                        Some(c @ (b'"' | b'\\')) => {
                            s.push(char::from(*c));
                            i += 2;
                        }
                        _ => {
                            s.push('\\');
                            i += 1;
                        }
                    },
                    Some(_) => {
                        // Copy one UTF-8 character.
                        let ch_len = value[i..].chars().next().map_or(1, char::len_utf8);
                        s.push_str(&value[i..i + ch_len]);
                        i += ch_len;
                    }
                }
            }
            s
        } else {
            let start = i;
            while i < b.len() && b[i] != b';' && b[i] != b',' {
                if b[i] == b'"' {
                    return Err(XfccError::Syntax("quote inside an unquoted value"));
                }
                i += 1;
            }
            value[start..i].trim().to_owned()
        };
        pairs += 1;
        if pairs > MAX_PAIRS {
            return Err(XfccError::TooLarge);
        }
        in_element = true;
        set(&mut el, key, val)?;
        skip_ws(&mut i);
        match b.get(i) {
            None => break,
            Some(b';') => i += 1,
            Some(b',') => {
                i += 1;
                out.push(std::mem::take(&mut el));
                in_element = false;
                if out.len() >= MAX_ELEMENTS {
                    return Err(XfccError::TooLarge);
                }
            }
            Some(_) => return Err(XfccError::Syntax("expected `;` or `,` after a value")),
        }
    }
    if in_element {
        out.push(el);
    }
    if out.is_empty() {
        return Err(XfccError::Empty);
    }
    Ok(out)
}

fn url_decode(v: &str) -> Result<String, XfccError> {
    percent_encoding::percent_decode_str(v)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| XfccError::BadCert)
}

fn set(el: &mut XfccElement, key: &str, val: String) -> Result<(), XfccError> {
    match key.to_ascii_lowercase().as_str() {
        "by" => el.by.push(val),
        "hash" => el.hash = Some(val),
        "cert" => el.cert = Some(url_decode(&val)?),
        "chain" => el.chain = Some(url_decode(&val)?),
        "subject" => el.subject = Some(val),
        "uri" => el.uris.push(val),
        "dns" => el.dns.push(val),
        _ => {} // unknown keys are ignored, as Envoy adds fields over time
    }
    Ok(())
}

fn parse_hash(h: &str) -> Result<[u8; 32], XfccError> {
    let h = h.as_bytes();
    if h.len() != 64 {
        return Err(XfccError::BadHash);
    }
    let mut out = [0u8; 32];
    for (i, pair) in h.chunks_exact(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16).ok_or(XfccError::BadHash)?;
        let lo = (pair[1] as char).to_digit(16).ok_or(XfccError::BadHash)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Ok(out)
}

impl XfccElement {
    /// The peer identity this element describes (source [`PeerSource::TrustedProxy`]).
    ///
    /// With `Cert`, the certificate itself is parsed (and must match `Hash` when both are present). Without it,
    /// the identity is built from `Hash` (required), `URI`, `DNS` and `Subject`; the SPIFFE ID is set when
    /// there is exactly one URI SAN and it is a SPIFFE ID with a path. The proxy verified the certificate; this
    /// does not.
    pub fn peer_identity(&self) -> Result<PeerIdentity, XfccError> {
        let hash = self.hash.as_deref().map(parse_hash).transpose()?;
        if let Some(cert) = &self.cert {
            let ders = pem::certs(cert.as_bytes(), "XFCC Cert").map_err(|_| XfccError::BadCert)?;
            let der = ders.first().ok_or(XfccError::BadCert)?;
            let peer =
                peer_identity_from_der(der.as_ref(), PeerSource::TrustedProxy).map_err(|_| XfccError::BadCert)?;
            if let Some(h) = hash
                && !subtle_eq(&h, &peer.fingerprint_sha256)
            {
                return Err(XfccError::HashMismatch);
            }
            return Ok(peer);
        }
        let hash = hash.ok_or(XfccError::NoCertificate)?;
        let mut b = PeerIdentity::builder();
        if let [one] = self.uris.as_slice()
            && let Ok(id) = SpiffeId::parse(one)
            && !id.path().is_empty()
        {
            b = b.spiffe_id(id);
        }
        Ok(b.uris(self.uris.clone())
            .dns_names(self.dns.clone())
            .subject(self.subject.clone().unwrap_or_default())
            .fingerprint_sha256(hash)
            .source(PeerSource::TrustedProxy)
            .build())
    }
}

fn subtle_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    // Not a secret, but compare without early exit anyway.
    a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Which direct peers may speak for clients through XFCC.
#[derive(Debug, Clone, Default)]
struct TrustedProxies {
    nets: Vec<IpNet>,
    peers: Option<Requirement>,
}

impl TrustedProxies {
    fn trusts(&self, socket: Option<IpAddr>, peer: Option<&PeerIdentity>) -> bool {
        if let Some(ip) = socket
            && self.nets.iter().any(|n| n.contains(&ip))
        {
            return true;
        }
        match (&self.peers, peer) {
            (Some(req), Some(p)) if p.source == PeerSource::Handshake => spiffe_requirement_holds(req, p),
            _ => false,
        }
    }
}

/// Turns the XFCC header of a trusted proxy into the request's `Arc<PeerIdentity>`, and strips it from anyone
/// else.
///
/// The direct peer is trusted when its **socket** address (a [`ClientAddr`] of source `Socket`, axum's
/// `ConnectInfo<SocketAddr>` with the `axum` feature, or tonic's `TcpConnectInfo` with the `tonic` feature) is
/// in one of the configured networks, or when its own mTLS identity (an `Arc<PeerIdentity>` of source
/// `Handshake`) satisfies [`trust_peer`](Self::trust_peer)'s requirement. Then:
///
/// - the proxy's own identity is removed from the request (the proxy is not the client);
/// - the last XFCC element becomes the peer identity (source `TrustedProxy`), recorded as
///   `forwarded_client_cert_accepted`; a malformed or certificate-less element leaves the request without an
///   identity (`forwarded_client_cert_invalid`), so peer requirements refuse it.
///
/// From any other peer the header is removed (`forwarded_client_cert_stripped`) and the request keeps its
/// handshake identity, if any. Decisions are recorded under the `tls` layer; the counter
/// `msec_tls_xfcc_total{result}` counts them.
///
/// Put it before (outside) the layers that read the peer identity.
///
/// ```
/// use msec_tls::xfcc::ForwardedClientCertLayer;
/// // Envoy as a sidecar on the loopback interface:
/// let layer = ForwardedClientCertLayer::from_networks(["127.0.0.1/32".parse().unwrap(), "::1/128".parse().unwrap()]);
/// # let _ = layer;
/// ```
#[derive(Debug, Clone)]
pub struct ForwardedClientCertLayer {
    trusted: Arc<TrustedProxies>,
}

impl ForwardedClientCertLayer {
    /// Trusts direct peers whose socket address is in `networks`.
    pub fn from_networks(networks: impl IntoIterator<Item = IpNet>) -> Self {
        Self {
            trusted: Arc::new(TrustedProxies {
                nets: networks.into_iter().collect(),
                peers: None,
            }),
        }
    }

    /// Trusts nobody: every XFCC header is stripped. Add trust with [`trust_peer`](Self::trust_peer).
    pub fn strip_all() -> Self {
        Self::from_networks([])
    }

    /// Also trusts direct peers whose mTLS identity (from this process's handshake) satisfies `requirement`,
    /// e.g. `Requirement::peer_spiffe_id("spiffe://example.org/ns/mesh/sa/ingress".parse()?)`.
    #[must_use]
    pub fn trust_peer(mut self, requirement: Requirement) -> Self {
        Arc::make_mut(&mut self.trusted).peers = Some(requirement);
        self
    }
}

impl<S> Layer<S> for ForwardedClientCertLayer {
    type Service = ForwardedClientCert<S>;
    fn layer(&self, inner: S) -> Self::Service {
        ForwardedClientCert {
            inner,
            trusted: self.trusted.clone(),
        }
    }
}

/// The service of [`ForwardedClientCertLayer`].
#[derive(Debug, Clone)]
pub struct ForwardedClientCert<S> {
    inner: S,
    trusted: Arc<TrustedProxies>,
}

impl<S> ForwardedClientCert<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }
    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// The socket peer of a request, if known.
fn socket_ip(ext: &http::Extensions) -> Option<IpAddr> {
    if let Some(a) = ext.get::<ClientAddr>()
        && a.source() == ClientAddrSource::Socket
    {
        return Some(a.ip());
    }
    #[cfg(feature = "axum")]
    if let Some(ci) = ext.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>() {
        return Some(ClientAddr::from_socket(ci.0).ip());
    }
    #[cfg(feature = "tonic")]
    if let Some(ci) = ext.get::<tonic::transport::server::TcpConnectInfo>()
        && let Some(a) = ci.remote_addr()
    {
        return Some(ClientAddr::from_socket(a).ip());
    }
    #[cfg(feature = "tonic")]
    if let Some(ci) = ext.get::<tonic::transport::server::TlsConnectInfo<tonic::transport::server::TcpConnectInfo>>()
        && let Some(a) = ci.get_ref().remote_addr()
    {
        return Some(ClientAddr::from_socket(a).ip());
    }
    None
}

fn xfcc_value(headers: &http::HeaderMap) -> Result<String, XfccError> {
    let mut joined = String::new();
    for v in headers.get_all(&XFCC) {
        let s = v.to_str().map_err(|_| XfccError::Syntax("non-ASCII header"))?;
        if !joined.is_empty() {
            joined.push(',');
        }
        joined.push_str(s);
        if joined.len() > MAX_XFCC_LEN {
            return Err(XfccError::TooLarge);
        }
    }
    Ok(joined)
}

fn count(result: &'static str) {
    metrics::counter!("msec_tls_xfcc_total", "result" => result).increment(1);
}

impl<S, B> Service<Request<B>> for ForwardedClientCert<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let present = req.headers().contains_key(&XFCC);
        let trusted = {
            let ext = req.extensions();
            self.trusted
                .trusts(socket_ip(ext), ext.get::<Arc<PeerIdentity>>().map(|p| &**p))
        };
        if !trusted {
            if present {
                req.headers_mut().remove(&XFCC);
                count("stripped");
                tracing::debug!("stripped x-forwarded-client-cert from an untrusted peer");
                context::record_with(req.extensions(), "tls", Outcome::Allow, FORWARDED_CERT_STRIPPED, |d| {
                    d.detail("reason", "direct peer is not a trusted proxy");
                });
            }
            return self.inner.call(req);
        }
        // The direct peer is a trusted proxy: its own identity is not the client's.
        req.extensions_mut().remove::<Arc<PeerIdentity>>();
        if !present {
            return self.inner.call(req);
        }
        let result = xfcc_value(req.headers())
            .and_then(|v| parse(&v))
            .and_then(|els| els.last().ok_or(XfccError::Empty).and_then(XfccElement::peer_identity));
        match result {
            Ok(peer) => {
                count("accepted");
                let id = peer.spiffe_id.as_ref().map(SpiffeId::to_string);
                context::record_with(req.extensions(), "tls", Outcome::Allow, FORWARDED_CERT_ACCEPTED, |d| {
                    d.detail("peer", id.unwrap_or_else(|| "certificate without SPIFFE ID".into()));
                });
                req.extensions_mut().insert(Arc::new(peer));
            }
            Err(e) => {
                count("invalid");
                tracing::warn!(error = %e, "unusable x-forwarded-client-cert from a trusted proxy");
                context::record_with(req.extensions(), "tls", Outcome::Allow, FORWARDED_CERT_INVALID, |d| {
                    d.detail("error", e.to_string());
                });
            }
        }
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_envoy_examples() {
        // From Envoy's documentation.
        let v = r#"By=http://frontend.lyft.com;Hash=468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688;Subject="/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client";URI=http://testclient.lyft.com"#;
        let els = parse(v).unwrap();
        assert_eq!(els.len(), 1);
        assert_eq!(els[0].by, ["http://frontend.lyft.com"]);
        assert_eq!(
            els[0].subject.as_deref(),
            Some("/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client")
        );
        let two = r#"By=http://frontend.lyft.com;Hash=468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688;URI=http://testclient.lyft.com,By=http://backend.lyft.com;Hash=9ba61d6425303443c0748a02dd8de688468ed33be74eee6556d90c0149c1309e;URI=http://frontend.lyft.com"#;
        let els = parse(two).unwrap();
        assert_eq!(els.len(), 2);
        assert_eq!(els[1].uris, ["http://frontend.lyft.com"]);
        let dns = r#"By=http://frontend.lyft.com;Hash=468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688;URI=http://testclient.lyft.com;DNS=lyft.com;DNS=www.lyft.com"#;
        assert_eq!(parse(dns).unwrap()[0].dns, ["lyft.com", "www.lyft.com"]);
    }

    #[test]
    fn quoted_values_keep_separators_and_escapes() {
        let els = parse(r#"Hash=00;Subject="CN=a\"b, O=c;d""#).unwrap();
        assert_eq!(els[0].subject.as_deref(), Some("CN=a\"b, O=c;d"));
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(parse(""), Err(XfccError::Empty));
        assert!(parse("novalue").is_err());
        assert!(parse("a=\"unterminated").is_err());
        assert!(parse("a=b\"c").is_err());
        assert!(parse("=x").is_err());
        assert_eq!(parse(&"a=b;".repeat(300)), Err(XfccError::TooLarge));
    }

    #[test]
    fn identity_needs_hash_or_cert() {
        let els = parse("URI=spiffe://example.org/a").unwrap();
        assert_eq!(els[0].peer_identity(), Err(XfccError::NoCertificate));
        let els = parse("Hash=zz;URI=spiffe://example.org/a").unwrap();
        assert_eq!(els[0].peer_identity(), Err(XfccError::BadHash));
    }
}
