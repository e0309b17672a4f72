//! The client's address behind proxies: [`TrustedProxies`] and [`ClientIpLayer`].
//!
//! A forwarding header is only as trustworthy as whoever wrote its last entry. The resolver therefore starts
//! from the socket peer and walks the header **from the right**:
//!
//! 1. If the socket peer is not a trusted proxy, it is the client — whatever the headers say (a client can
//!    write any `X-Forwarded-For` it likes; tower_governor's "first entry" is exactly that spoofable value).
//! 2. Otherwise each entry, right to left, was appended by the hop before it: skip entries that are trusted
//!    proxies; the first untrusted one is the client.
//! 3. If every entry is a trusted proxy, the leftmost one is the client (a request from inside the network).
//! 4. A malformed entry, an RFC 7239 `unknown` or obfuscated node, or a missing header where one was expected
//!    falls back to the socket peer — never to a guess.
//!
//! The answer replaces the request's [`ClientAddr`] extension ([`ClientAddr::forwarded`] when it came from a
//! header) and is given to [`SecurityContext::set_client_addr`], so rate limits, authorization rules and the
//! audit log all use the same address.
//!
//! ```
//! use msec_ratelimit::{ClientIpLayer, ForwardedHeader, TrustedProxies};
//! use msec_core::ClientAddr;
//!
//! let proxies = TrustedProxies::new(["10.0.0.0/8", "fd00::/8"])?;
//! let peer = ClientAddr::from_socket("10.0.0.2:5000".parse()?);
//! let mut headers = http::HeaderMap::new();
//! headers.insert("x-forwarded-for", "198.51.100.1, 203.0.113.7, 10.0.0.9".parse()?);
//! let client = proxies.resolve(peer, &headers, ForwardedHeader::XForwardedFor);
//! assert_eq!(client.ip().to_string(), "203.0.113.7"); // 198.51.100.1 was written by the client itself
//!
//! let layer = ClientIpLayer::new(proxies); // X-Forwarded-For by default
//! # let _ = layer;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderMap, HeaderName, Request};
use ipnet::IpNet;
use msec_core::{ClientAddr, SecurityContext};
use tower_layer::Layer;
use tower_service::Service;

use crate::error::ConfigError;

/// The most entries examined from the right of a forwarding header (a longer chain of trusted hops falls back
/// to the socket peer).
pub const MAX_HOPS: usize = 32;

/// Which forwarding header the trusted proxies write. Pick the one your proxy sets (it must also strip or
/// overwrite the other, or not forward it): a header the proxy does not write passes through from the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (de-facto standard).
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client;proto=https, for="[2001:db8::1]:4711"`.
    Forwarded,
}

/// A set of trusted proxy networks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    nets: Arc<[IpNet]>,
}

impl TrustedProxies {
    /// Trusts the given CIDRs (`10.0.0.0/8`, `2001:db8::/32`) or single addresses (`192.0.2.1`).
    pub fn new<I, S>(cidrs: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut nets = Vec::new();
        for c in cidrs {
            let s = c.as_ref().trim();
            let net = match s.parse::<IpNet>() {
                Ok(n) => n,
                Err(_) => s
                    .parse::<IpAddr>()
                    .map(IpNet::from)
                    .map_err(|_| ConfigError::InvalidCidr(s.chars().take(100).collect()))?,
            };
            nets.push(net.trunc());
        }
        Ok(Self { nets: nets.into() })
    }

    /// Trusts nobody: the socket peer is always the client.
    pub fn none() -> Self {
        Self::default()
    }

    /// True when `ip` is in a trusted network (IPv4-mapped IPv6 addresses are checked as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// The client address of a request from socket peer `peer` carrying `headers`.
    pub fn resolve(&self, peer: ClientAddr, headers: &HeaderMap, which: ForwardedHeader) -> ClientAddr {
        if !self.contains(peer.ip()) {
            return peer;
        }
        let found = match which {
            ForwardedHeader::XForwardedFor => self.walk(xff_nodes_rev(headers)),
            ForwardedHeader::Forwarded => self.walk(forwarded_nodes_rev(headers)),
        };
        match found {
            Some(Node::Addr(ip, port)) => ClientAddr::forwarded(ip, port),
            _ => peer,
        }
    }

    /// Walks nodes from the right; `None` or a non-address node means "fall back to the socket peer".
    fn walk(&self, nodes: impl Iterator<Item = Node>) -> Option<Node> {
        let mut last_trusted = None;
        for (n, node) in nodes.enumerate() {
            if n >= MAX_HOPS {
                return None;
            }
            match node {
                Node::Addr(ip, port) if self.contains(ip) => last_trusted = Some(Node::Addr(ip, port)),
                Node::Addr(ip, port) => return Some(Node::Addr(ip, port)),
                Node::Unknown | Node::Malformed => return None,
            }
        }
        last_trusted
    }
}

/// One hop of a forwarding header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Node {
    /// An address, with a port when the header gave one.
    Addr(IpAddr, Option<u16>),
    /// RFC 7239 `unknown` or an obfuscated identifier (`_hidden`).
    Unknown,
    /// Not an address at all.
    Malformed,
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// Parses one node: `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]`, `[2001:db8::1]:443`.
pub fn parse_node(s: &str) -> Node {
    let s = s.trim();
    if s.is_empty() || s.len() > 64 {
        return Node::Malformed;
    }
    if s.eq_ignore_ascii_case("unknown") || s.starts_with('_') {
        return Node::Unknown;
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Node::Addr(canonical(ip), None);
    }
    if let Some(rest) = s.strip_prefix('[') {
        let Some((inner, after)) = rest.split_once(']') else {
            return Node::Malformed;
        };
        let Ok(ip) = inner.parse::<Ipv6Addr>() else {
            return Node::Malformed;
        };
        let ip = canonical(IpAddr::V6(ip));
        if after.is_empty() {
            return Node::Addr(ip, None);
        }
        return match after.strip_prefix(':').map(parse_port) {
            Some(Port::Num(p)) => Node::Addr(ip, Some(p)),
            Some(Port::Obfuscated) => Node::Addr(ip, None),
            _ => Node::Malformed,
        };
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Node::Addr(canonical(sa.ip()), Some(sa.port()));
    }
    // RFC 7239 allows an obfuscated port: `192.0.2.43:_abc`.
    if let Some((ip, port)) = s.rsplit_once(':')
        && let (Ok(ip), Port::Obfuscated) = (ip.parse::<std::net::Ipv4Addr>(), parse_port(port))
    {
        return Node::Addr(IpAddr::V4(ip), None);
    }
    Node::Malformed
}

enum Port {
    Num(u16),
    Obfuscated,
    Bad,
}

fn parse_port(s: &str) -> Port {
    if s.starts_with('_')
        && s.len() > 1
        && s[1..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return Port::Obfuscated;
    }
    if !s.is_empty()
        && s.len() <= 5
        && s.bytes().all(|b| b.is_ascii_digit())
        && let Ok(p) = s.parse()
    {
        return Port::Num(p);
    }
    Port::Bad
}

/// The nodes of every `X-Forwarded-For` field, right to left (the last field line's last entry first).
pub fn xff_nodes_rev(headers: &HeaderMap) -> impl Iterator<Item = Node> + '_ {
    let values: Vec<&http::HeaderValue> = headers.get_all(X_FORWARDED_FOR).iter().collect();
    values.into_iter().rev().flat_map(|v| {
        let nodes: Box<dyn Iterator<Item = Node>> = match v.to_str() {
            Ok(s) => Box::new(s.rsplit(',').map(parse_node)),
            Err(_) => Box::new(std::iter::once(Node::Malformed)),
        };
        nodes
    })
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The `for=` nodes of every RFC 7239 `Forwarded` field, right to left. An element without `for` is
/// [`Node::Unknown`]; one that does not parse is [`Node::Malformed`].
pub fn forwarded_nodes_rev(headers: &HeaderMap) -> impl Iterator<Item = Node> + '_ {
    let mut nodes = Vec::new();
    for v in headers.get_all(http::header::FORWARDED) {
        parse_forwarded(v.as_bytes(), &mut nodes);
    }
    nodes.into_iter().rev()
}

/// Parses one `Forwarded` field value (RFC 7239 §4) into its elements' `for` nodes, left to right, keeping at
/// most the last [`MAX_HOPS`] + 1 (only the right end can matter).
pub fn parse_forwarded(value: &[u8], out: &mut Vec<Node>) {
    let mut p = Parser { s: value, i: 0 };
    loop {
        let node = p.element();
        out.push(node);
        if out.len() > MAX_HOPS + 1 {
            out.remove(0);
        }
        p.ows();
        match p.peek() {
            Some(b',') => {
                p.i += 1;
            }
            None => return,
            Some(_) => {
                // Garbage after an element: the whole rest is unusable.
                out.push(Node::Malformed);
                return;
            }
        }
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }
    fn token(&mut self) -> &[u8] {
        let start = self.i;
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~:[]".contains(&c) {
                self.i += 1;
            } else {
                break;
            }
        }
        &self.s[start..self.i]
    }
    fn quoted(&mut self) -> Option<Vec<u8>> {
        // At the opening quote.
        self.i += 1;
        let mut v = Vec::new();
        loop {
            match self.peek()? {
                b'"' => {
                    self.i += 1;
                    return Some(v);
                }
                b'\\' => {
                    self.i += 1;
                    v.push(self.peek()?);
                    self.i += 1;
                }
                c if c == b'\t' || (0x20..0x7f).contains(&c) || c >= 0x80 => {
                    v.push(c);
                    self.i += 1;
                }
                _ => return None,
            }
            if v.len() > 256 {
                return None;
            }
        }
    }
    /// One element: `pair *( ";" pair )`; returns its `for` node.
    fn element(&mut self) -> Node {
        let mut node = Node::Unknown;
        let mut seen_for = false;
        loop {
            self.ows();
            let name = self.token().to_ascii_lowercase();
            if name.is_empty() {
                return Node::Malformed;
            }
            if self.peek() != Some(b'=') {
                return Node::Malformed;
            }
            self.i += 1;
            let value = if self.peek() == Some(b'"') {
                match self.quoted() {
                    Some(v) => v,
                    None => return Node::Malformed,
                }
            } else {
                let t = self.token().to_vec();
                if t.is_empty() {
                    return Node::Malformed;
                }
                t
            };
            if name == b"for" {
                if seen_for {
                    return Node::Malformed;
                }
                seen_for = true;
                node = match std::str::from_utf8(&value) {
                    Ok(v) => {
                        // An IPv6 `for` must be quoted and bracketed; a bare one is malformed.
                        let n = parse_node(v);
                        if let Node::Addr(IpAddr::V6(_), _) = n
                            && !v.starts_with('[')
                        {
                            return Node::Malformed;
                        }
                        n
                    }
                    Err(_) => Node::Malformed,
                };
            }
            self.ows();
            if self.peek() == Some(b';') {
                self.i += 1;
                continue;
            }
            return node;
        }
    }
}

/// Resolves the client address of every request behind [`TrustedProxies`].
///
/// Reads the socket peer from the `ClientAddr` extension (the msec-tls serve loop puts it there) or, with the
/// `axum` feature, axum's `ConnectInfo<SocketAddr>`; a request with neither passes unchanged. Clones share the
/// proxy list.
#[derive(Debug, Clone)]
pub struct ClientIpLayer {
    proxies: TrustedProxies,
    header: ForwardedHeader,
}

impl ClientIpLayer {
    /// Resolves with `proxies`, reading `X-Forwarded-For`.
    pub fn new(proxies: TrustedProxies) -> Self {
        Self {
            proxies,
            header: ForwardedHeader::XForwardedFor,
        }
    }

    /// Reads `header` instead.
    #[must_use]
    pub fn header(mut self, header: ForwardedHeader) -> Self {
        self.header = header;
        self
    }
}

impl<S> Layer<S> for ClientIpLayer {
    type Service = ClientIp<S>;
    fn layer(&self, inner: S) -> Self::Service {
        ClientIp {
            inner,
            proxies: self.proxies.clone(),
            header: self.header,
        }
    }
}

/// The service of [`ClientIpLayer`].
#[derive(Debug, Clone)]
pub struct ClientIp<S> {
    inner: S,
    proxies: TrustedProxies,
    header: ForwardedHeader,
}

impl<S> ClientIp<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, proxies: TrustedProxies) -> Self {
        Self {
            inner,
            proxies,
            header: ForwardedHeader::XForwardedFor,
        }
    }
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

impl<S, B> Service<Request<B>> for ClientIp<S>
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
        if let Some(peer) = ClientAddr::from_extensions(req.extensions()) {
            let client = self.proxies.resolve(peer, req.headers(), self.header);
            if client != peer {
                tracing::trace!(peer = %peer, client = %client, "msec-ratelimit: client address from forwarding header");
            }
            if let Some(ctx) = SecurityContext::get(req.extensions()) {
                ctx.set_client_addr(client);
            }
            req.extensions_mut().insert(client);
        }
        self.inner.call(req)
    }
}

/// The body of the `forwarded_header` fuzz target (also run over proptest inputs by the test suite): parsing
/// never panics, never keeps more than [`MAX_HOPS`] + 2 nodes, and resolution only ever answers the socket peer
/// or an address some header entry named.
#[doc(hidden)]
pub fn fuzz_forwarded(data: &[u8]) {
    let mut nodes = Vec::new();
    parse_forwarded(data, &mut nodes);
    assert!(nodes.len() <= MAX_HOPS + 2);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = parse_node(s);
    }
    let Ok(v) = http::HeaderValue::from_bytes(data) else {
        return;
    };
    let mut h = HeaderMap::new();
    h.insert(X_FORWARDED_FOR, v.clone());
    h.insert(http::header::FORWARDED, v);
    let proxies = TrustedProxies {
        nets: Arc::from([
            "10.0.0.0/8".parse::<IpNet>().unwrap_or_default(),
            "fd00::/8".parse().unwrap_or_default(),
        ]),
    };
    let trusted = ClientAddr::from_socket(SocketAddr::from(([10, 0, 0, 1], 1)));
    let untrusted = ClientAddr::from_socket(SocketAddr::from(([203, 0, 113, 1], 1)));
    for which in [ForwardedHeader::XForwardedFor, ForwardedHeader::Forwarded] {
        let got = proxies.resolve(trusted, &h, which);
        assert!(got == trusted || got.source() == msec_core::ClientAddrSource::Forwarded);
        assert_eq!(proxies.resolve(untrusted, &h, which), untrusted);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes() {
        assert_eq!(parse_node("1.2.3.4"), Node::Addr("1.2.3.4".parse().unwrap(), None));
        assert_eq!(
            parse_node(" 1.2.3.4:80 "),
            Node::Addr("1.2.3.4".parse().unwrap(), Some(80))
        );
        assert_eq!(
            parse_node("[2001:db8::1]:443"),
            Node::Addr("2001:db8::1".parse().unwrap(), Some(443))
        );
        assert_eq!(
            parse_node("2001:db8::1"),
            Node::Addr("2001:db8::1".parse().unwrap(), None)
        );
        assert_eq!(
            parse_node("::ffff:1.2.3.4"),
            Node::Addr("1.2.3.4".parse().unwrap(), None)
        );
        assert_eq!(
            parse_node("192.0.2.43:_abc"),
            Node::Addr("192.0.2.43".parse().unwrap(), None)
        );
        assert_eq!(parse_node("unknown"), Node::Unknown);
        assert_eq!(parse_node("_hidden"), Node::Unknown);
        for bad in [
            "",
            "1.2.3",
            "1.2.3.4:99999",
            "[::1",
            "[::1]x",
            "example.com",
            "1.2.3.4:80:80",
            "[1.2.3.4]",
        ] {
            assert_eq!(parse_node(bad), Node::Malformed, "{bad}");
        }
    }

    #[test]
    fn forwarded_grammar() {
        let mut v = Vec::new();
        parse_forwarded(
            br#"for=192.0.2.60;proto=http;by=203.0.113.43, For="[2001:db8:cafe::17]:4711""#,
            &mut v,
        );
        assert_eq!(
            v,
            [
                Node::Addr("192.0.2.60".parse().unwrap(), None),
                Node::Addr("2001:db8:cafe::17".parse().unwrap(), Some(4711))
            ]
        );
        let mut v = Vec::new();
        parse_forwarded(b"proto=https, for=unknown, for=\"_gazonk\"", &mut v);
        assert_eq!(v, [Node::Unknown, Node::Unknown, Node::Unknown]);
        for bad in [
            &b"for=2001:db8::1"[..],
            b"for",
            b"for=\"1.2.3.4",
            b"for=1.2.3.4 junk",
            b"for=1.1.1.1;for=2.2.2.2",
            b"",
        ] {
            let mut v = Vec::new();
            parse_forwarded(bad, &mut v);
            assert!(v.contains(&Node::Malformed), "{}", String::from_utf8_lossy(bad));
        }
    }
}
