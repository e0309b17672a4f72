//! What a quota is counted per: [`KeySpec`] (how to derive a key from a request) and [`Key`] (the value).
//!
//! | spec                           | key                                                              |
//! |--------------------------------|------------------------------------------------------------------|
//! | [`KeySpec::client_ip`]         | the [`ClientAddr`]; IPv6 grouped by /64, IPv4 by /32             |
//! | [`KeySpec::subject`]           | the principal's subject (`Arc<Principal>` extension)            |
//! | [`KeySpec::api_key`]           | the API key id (`AuthMethod::ApiKey { key_id }`)                |
//! | [`KeySpec::tenant`]            | the principal's tenant                                           |
//! | [`KeySpec::header`]            | a request header's value                                         |
//! | [`KeySpec::route`]             | the matched route template (never the raw path)                  |
//! | [`KeySpec::global`]            | one key for every request                                        |
//! | [`KeySpec::tuple`]             | several of these together                                        |
//! | [`KeySpec::custom`]            | anything a [`KeyExtractor`] (or a closure) returns               |
//!
//! When a request has no value for a rule's key (no principal for a `subject` rule), the rule does not apply
//! to it; the `msec_ratelimit_key_missing_total{rule}` counter says how often.
//!
//! Keys are compact (an IPv6 key is 18 bytes, stored inline) and bounded: a text value longer than
//! [`MAX_TEXT`] bytes is replaced by its SHA-256, so a client cannot make a tracked key large.
//!
//! ```
//! use msec_ratelimit::{Key, KeySpec};
//! use msec_core::ClientAddr;
//!
//! let spec = KeySpec::tuple([KeySpec::client_ip(), KeySpec::route()]);
//! let mut req = http::Request::get("/v1/orders/7").body(()).unwrap();
//! req.extensions_mut().insert(ClientAddr::from_socket("[2001:db8::1]:443".parse().unwrap()));
//! let key = spec.extract_from(&req, Some("/v1/orders/{id}")).unwrap();
//! assert_eq!(key.to_string(), "ip:2001:db8::/64,route:/v1/orders/{id}");
//! ```

use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, Method, Uri};
use msec_core::{AuthMethod, ClientAddr, Principal, SecurityContext};

use crate::error::ConfigError;

/// Text values longer than this many bytes are keyed by their SHA-256 instead.
pub const MAX_TEXT: usize = 128;

const INLINE: usize = 38;

const TAG_GLOBAL: u8 = 0;
const TAG_V4: u8 = 4;
const TAG_V6: u8 = 6;
const TAG_TEXT: u8 = 0x10;
const TAG_HASHED: u8 = 0x11;

/// A rate-limit key: compact bytes, cheap to hash and compare. Built by a [`KeySpec`] or the constructors here.
#[derive(Clone)]
pub struct Key(Repr);

#[derive(Clone)]
enum Repr {
    Inline { len: u8, buf: [u8; INLINE] },
    Heap(Box<[u8]>),
}

impl Key {
    fn from_slice(b: &[u8]) -> Self {
        if b.len() <= INLINE {
            let mut buf = [0u8; INLINE];
            buf[..b.len()].copy_from_slice(b);
            Self(Repr::Inline {
                len: b.len() as u8,
                buf,
            })
        } else {
            Self(Repr::Heap(b.into()))
        }
    }

    /// The encoded bytes (stable within a version; used for Redis key names through [`Display`](fmt::Display)).
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline { len, buf } => &buf[..usize::from(*len)],
            Repr::Heap(b) => b,
        }
    }

    /// The one key shared by every request.
    pub fn global() -> Self {
        Self::from_slice(&[TAG_GLOBAL])
    }

    /// The key of an address, masked to `/v4_prefix` or `/v6_prefix` (clamped to 32 / 128).
    pub fn ip(ip: IpAddr, v4_prefix: u8, v6_prefix: u8) -> Self {
        let mut buf = [0u8; INLINE];
        let len = write_ip(&mut buf, ip, v4_prefix, v6_prefix);
        Self(Repr::Inline { len: len as u8, buf })
    }

    /// A subject key, as [`KeySpec::subject`] makes it.
    pub fn subject(subject: &str) -> Self {
        Self::text("sub", subject.as_bytes())
    }

    /// An API key id key, as [`KeySpec::api_key`] makes it.
    pub fn api_key(key_id: &str) -> Self {
        Self::text("api_key", key_id.as_bytes())
    }

    /// A tenant key, as [`KeySpec::tenant`] makes it.
    pub fn tenant(tenant: &str) -> Self {
        Self::text("tenant", tenant.as_bytes())
    }

    /// A key of arbitrary bytes under a label (for custom extractors). The label should be short ASCII.
    pub fn text(label: &str, value: &[u8]) -> Self {
        let mut b = KeyBuf::new();
        b.text(label, value);
        b.finish()
    }

    /// Several keys as one.
    pub fn tuple<I: IntoIterator<Item = Key>>(parts: I) -> Self {
        let mut b = KeyBuf::new();
        for p in parts {
            b.extend(p.as_bytes());
        }
        b.finish()
    }

    /// Approximate heap bytes owned by this key (0 when stored inline).
    pub fn heap_bytes(&self) -> usize {
        match &self.0 {
            Repr::Inline { .. } => 0,
            Repr::Heap(b) => b.len(),
        }
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            // Bytes past `len` are always zero, so whole fixed-size buffers compare without a memcmp call.
            (Repr::Inline { len: a, buf: x }, Repr::Inline { len: b, buf: y }) => a == b && x == y,
            _ => self.as_bytes() == other.as_bytes(),
        }
    }
}
impl Eq for Key {}
impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(self.as_bytes());
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({self})")
    }
}

/// A readable, unambiguous form: `ip:203.0.113.7`, `ip:2001:db8::/64`, `sub:alice`, `global`; tuples joined by
/// `,`; text outside `[A-Za-z0-9-._~:/{}*@+=]` percent-encoded.
impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut b = self.as_bytes();
        let mut first = true;
        while let Some((&tag, rest)) = b.split_first() {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            b = match tag {
                TAG_GLOBAL => {
                    f.write_str("global")?;
                    rest
                }
                TAG_V4 if rest.len() >= 5 => {
                    let ip = Ipv4Addr::new(rest[0], rest[1], rest[2], rest[3]);
                    write!(f, "ip:{ip}")?;
                    if rest[4] != 32 {
                        write!(f, "/{}", rest[4])?;
                    }
                    &rest[5..]
                }
                TAG_V6 if rest.len() >= 17 => {
                    let mut o = [0u8; 16];
                    o.copy_from_slice(&rest[..16]);
                    write!(f, "ip:{}", Ipv6Addr::from(o))?;
                    if rest[16] != 128 {
                        write!(f, "/{}", rest[16])?;
                    }
                    &rest[17..]
                }
                TAG_TEXT | TAG_HASHED if !rest.is_empty() => {
                    let ll = usize::from(rest[0]);
                    let Some(label) = rest.get(1..1 + ll) else {
                        return Ok(());
                    };
                    let Some(lenb) = rest.get(1 + ll..3 + ll) else {
                        return Ok(());
                    };
                    let vl = usize::from(u16::from_be_bytes([lenb[0], lenb[1]]));
                    let Some(value) = rest.get(3 + ll..3 + ll + vl) else {
                        return Ok(());
                    };
                    write_escaped(f, label)?;
                    f.write_str(":")?;
                    if tag == TAG_HASHED {
                        f.write_str("#")?;
                        for byte in value {
                            write!(f, "{byte:02x}")?;
                        }
                    } else {
                        write_escaped(f, value)?;
                    }
                    &rest[3 + ll + vl..]
                }
                _ => return f.write_str("?"),
            };
        }
        Ok(())
    }
}

fn write_escaped(f: &mut fmt::Formatter<'_>, v: &[u8]) -> fmt::Result {
    for &c in v {
        if c.is_ascii_alphanumeric() || b"-._~:/{}*@+=".contains(&c) {
            f.write_str(std::str::from_utf8(std::slice::from_ref(&c)).unwrap_or("?"))?;
        } else {
            write!(f, "%{c:02X}")?;
        }
    }
    Ok(())
}

/// Builds a [`Key`] without allocating for short keys.
pub(crate) struct KeyBuf {
    inline: [u8; INLINE],
    len: usize,
    heap: Option<Vec<u8>>,
}

impl KeyBuf {
    pub(crate) fn new() -> Self {
        Self {
            inline: [0; INLINE],
            len: 0,
            heap: None,
        }
    }

    fn extend(&mut self, b: &[u8]) {
        if let Some(h) = &mut self.heap {
            h.extend_from_slice(b);
        } else if self.len + b.len() <= INLINE {
            self.inline[self.len..self.len + b.len()].copy_from_slice(b);
            self.len += b.len();
        } else {
            let mut h = Vec::with_capacity(self.len + b.len() + 16);
            h.extend_from_slice(&self.inline[..self.len]);
            h.extend_from_slice(b);
            self.heap = Some(h);
        }
    }

    fn ip(&mut self, ip: IpAddr, v4_prefix: u8, v6_prefix: u8) {
        let mut out = [0u8; INLINE];
        let n = write_ip(&mut out, ip, v4_prefix, v6_prefix);
        self.extend(&out[..n]);
    }

    fn text(&mut self, label: &str, value: &[u8]) {
        let label = &label.as_bytes()[..label.len().min(64)];
        if value.len() > MAX_TEXT {
            let d = ring::digest::digest(&ring::digest::SHA256, value);
            self.extend(&[TAG_HASHED, label.len() as u8]);
            self.extend(label);
            self.extend(&(d.as_ref().len() as u16).to_be_bytes());
            self.extend(d.as_ref());
        } else {
            self.extend(&[TAG_TEXT, label.len() as u8]);
            self.extend(label);
            self.extend(&(value.len() as u16).to_be_bytes());
            self.extend(value);
        }
    }

    pub(crate) fn finish(self) -> Key {
        match self.heap {
            Some(h) => Key(Repr::Heap(h.into_boxed_slice())),
            None => {
                let mut buf = [0u8; INLINE];
                buf[..self.len].copy_from_slice(&self.inline[..self.len]);
                Key(Repr::Inline {
                    len: self.len as u8,
                    buf,
                })
            }
        }
    }
}

/// Writes the encoding of a masked address into `out`; returns its length (6 or 18).
fn write_ip(out: &mut [u8; INLINE], ip: IpAddr, v4_prefix: u8, v6_prefix: u8) -> usize {
    match canonical(ip) {
        IpAddr::V4(v4) => {
            let p = v4_prefix.min(32);
            let bits = u32::from(v4);
            let masked = if p == 0 {
                0
            } else {
                bits & (u32::MAX << (32 - u32::from(p)))
            };
            out[0] = TAG_V4;
            out[1..5].copy_from_slice(&masked.to_be_bytes());
            out[5] = p;
            6
        }
        IpAddr::V6(v6) => {
            let p = v6_prefix.min(128);
            let bits = u128::from(v6);
            let masked = if p == 0 {
                0
            } else {
                bits & (u128::MAX << (128 - u32::from(p)))
            };
            out[0] = TAG_V6;
            out[1..17].copy_from_slice(&masked.to_be_bytes());
            out[17] = p;
            18
        }
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// What a [`KeyExtractor`] sees of a request.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct RequestInfo<'a> {
    /// The method.
    pub method: &'a Method,
    /// The URI.
    pub uri: &'a Uri,
    /// The headers.
    pub headers: &'a HeaderMap,
    /// The extensions (`ClientAddr`, `Arc<Principal>`, `Arc<PeerIdentity>`, `Arc<SecurityContext>`, ...).
    pub extensions: &'a http::Extensions,
    /// The route template of the rule that matched, when the rule named one.
    pub route: Option<&'a str>,
}

impl<'a> RequestInfo<'a> {
    /// The view of `req`, with the matched `route` template if any.
    pub fn new<B>(req: &'a http::Request<B>, route: Option<&'a str>) -> Self {
        Self {
            method: req.method(),
            uri: req.uri(),
            headers: req.headers(),
            extensions: req.extensions(),
            route,
        }
    }

    /// The authenticated principal: the `Arc<Principal>` extension, else the security context's.
    pub fn principal(&self) -> Option<Arc<Principal>> {
        if let Some(p) = self.extensions.get::<Arc<Principal>>() {
            return Some(p.clone());
        }
        SecurityContext::get(self.extensions).and_then(|c| c.principal())
    }

    /// The client address: the [`ClientAddr`] extension (as the resolver left it), else the socket peer.
    pub fn client_addr(&self) -> Option<ClientAddr> {
        ClientAddr::from_extensions(self.extensions)
    }
}

/// Derives a [`Key`] from a request; `None` means the rule does not apply to this request.
///
/// Closures `Fn(&RequestInfo<'_>) -> Option<Key>` implement it.
pub trait KeyExtractor: Send + Sync + 'static {
    /// The key of this request, if it has one.
    fn extract(&self, req: &RequestInfo<'_>) -> Option<Key>;
}

impl<F> KeyExtractor for F
where
    F: Fn(&RequestInfo<'_>) -> Option<Key> + Send + Sync + 'static,
{
    fn extract(&self, req: &RequestInfo<'_>) -> Option<Key> {
        self(req)
    }
}

#[derive(Clone)]
enum Spec {
    ClientIp { v4: u8, v6: u8 },
    Subject,
    ApiKey,
    Tenant,
    Header(HeaderName),
    Route,
    Global,
    Tuple(Arc<[KeySpec]>),
    Custom(Arc<dyn KeyExtractor>),
}

/// How a rule derives its [`Key`] from a request. See the [module docs](self).
#[derive(Clone)]
pub struct KeySpec(Spec);

impl fmt::Debug for KeySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeySpec({self})")
    }
}

impl fmt::Display for KeySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Spec::ClientIp { v4: 32, v6: 64 } => f.write_str("ip"),
            Spec::ClientIp { v4, v6 } => write!(f, "ip/{v4}/{v6}"),
            Spec::Subject => f.write_str("subject"),
            Spec::ApiKey => f.write_str("api_key"),
            Spec::Tenant => f.write_str("tenant"),
            Spec::Header(h) => write!(f, "header:{h}"),
            Spec::Route => f.write_str("route"),
            Spec::Global => f.write_str("global"),
            Spec::Tuple(t) => {
                f.write_str("(")?;
                for (i, s) in t.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{s}")?;
                }
                f.write_str(")")
            }
            Spec::Custom(_) => f.write_str("custom"),
        }
    }
}

impl KeySpec {
    /// The client address ([`ClientAddr`], as resolved behind trusted proxies); IPv6 grouped by /64.
    pub fn client_ip() -> Self {
        Self(Spec::ClientIp { v4: 32, v6: 64 })
    }

    /// The client address grouped by `/v4_prefix` and `/v6_prefix`.
    pub fn client_ip_prefixes(v4_prefix: u8, v6_prefix: u8) -> Self {
        Self(Spec::ClientIp {
            v4: v4_prefix.min(32),
            v6: v6_prefix.min(128),
        })
    }

    /// The principal's subject.
    pub fn subject() -> Self {
        Self(Spec::Subject)
    }

    /// The API key id of a principal authenticated by an API key.
    pub fn api_key() -> Self {
        Self(Spec::ApiKey)
    }

    /// The principal's tenant.
    pub fn tenant() -> Self {
        Self(Spec::Tenant)
    }

    /// The value of request header `name` (the first one, if repeated).
    pub fn header(name: HeaderName) -> Self {
        Self(Spec::Header(name))
    }

    /// The matched route template: the rule's own when it names one, else axum's `MatchedPath` (feature
    /// `axum`), else the template an inner layer recorded in the `SecurityContext`.
    pub fn route() -> Self {
        Self(Spec::Route)
    }

    /// One key for all requests.
    pub fn global() -> Self {
        Self(Spec::Global)
    }

    /// All of `specs` together; the rule applies only when each of them has a value.
    pub fn tuple<I: IntoIterator<Item = KeySpec>>(specs: I) -> Self {
        Self(Spec::Tuple(specs.into_iter().collect()))
    }

    /// A custom extractor (a [`KeyExtractor`] or a closure).
    pub fn custom(extractor: impl KeyExtractor) -> Self {
        Self(Spec::Custom(Arc::new(extractor)))
    }

    /// The key `ip` has under this spec, when it is a client-IP spec (applying its prefix grouping).
    pub fn key_for_ip(&self, ip: IpAddr) -> Option<Key> {
        match self.0 {
            Spec::ClientIp { v4, v6 } => Some(Key::ip(ip, v4, v6)),
            _ => None,
        }
    }

    /// The key of `req`, given the rule's matched route template.
    pub fn extract_from<B>(&self, req: &http::Request<B>, route: Option<&str>) -> Option<Key> {
        self.extract(&RequestInfo::new(req, route))
    }

    /// The key of a request, or `None` when the request has no value for it.
    pub fn extract(&self, req: &RequestInfo<'_>) -> Option<Key> {
        match &self.0 {
            Spec::Custom(c) => return c.extract(req),
            // The common case, without the general key builder.
            Spec::ClientIp { v4, v6 } => return req.client_addr().map(|a| Key::ip(a.ip(), *v4, *v6)),
            _ => {}
        }
        let mut b = KeyBuf::new();
        self.write(req, &mut b).then(|| b.finish())
    }

    fn write(&self, req: &RequestInfo<'_>, b: &mut KeyBuf) -> bool {
        match &self.0 {
            Spec::ClientIp { v4, v6 } => match req.client_addr() {
                Some(a) => {
                    b.ip(a.ip(), *v4, *v6);
                    true
                }
                None => false,
            },
            Spec::Subject => req.principal().is_some_and(|p| {
                b.text("sub", p.subject.as_bytes());
                true
            }),
            Spec::ApiKey => req.principal().is_some_and(|p| match &p.auth {
                AuthMethod::ApiKey { key_id } => {
                    b.text("api_key", key_id.as_bytes());
                    true
                }
                _ => false,
            }),
            Spec::Tenant => req.principal().is_some_and(|p| match &p.tenant {
                Some(t) => {
                    b.text("tenant", t.as_bytes());
                    true
                }
                None => false,
            }),
            Spec::Header(h) => match req.headers.get(h) {
                Some(v) => {
                    b.text(h.as_str(), v.as_bytes());
                    true
                }
                None => false,
            },
            Spec::Route => match route_of(req) {
                Some(r) => {
                    b.text("route", r.as_bytes());
                    true
                }
                None => false,
            },
            Spec::Global => {
                b.extend(&[TAG_GLOBAL]);
                true
            }
            Spec::Tuple(specs) => specs.iter().all(|s| s.write(req, b)),
            Spec::Custom(c) => match c.extract(req) {
                Some(k) => {
                    b.extend(k.as_bytes());
                    true
                }
                None => false,
            },
        }
    }
}

fn route_of(req: &RequestInfo<'_>) -> Option<String> {
    if let Some(r) = req.route {
        return Some(r.to_owned());
    }
    #[cfg(feature = "axum")]
    if let Some(m) = req.extensions.get::<axum::extract::MatchedPath>() {
        return Some(m.as_str().to_owned());
    }
    SecurityContext::get(req.extensions)
        .and_then(|c| c.route())
        .map(|r| r.to_string())
}

/// Parses `ip`, `ip/24/56` (v4 and v6 prefixes), `subject`, `api_key`, `tenant`, `header:<name>`, `route`,
/// `global`, and tuples joined by `+` (`ip+route`).
impl FromStr for KeySpec {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ConfigError::InvalidKey(s.chars().take(100).collect());
        let s = s.trim();
        if s.contains('+') {
            let parts = s.split('+').map(str::parse).collect::<Result<Vec<KeySpec>, _>>()?;
            return Ok(Self::tuple(parts));
        }
        Ok(match s {
            "ip" | "client_ip" => Self::client_ip(),
            "subject" | "sub" | "principal" => Self::subject(),
            "api_key" => Self::api_key(),
            "tenant" => Self::tenant(),
            "route" => Self::route(),
            "global" => Self::global(),
            _ => {
                if let Some(h) = s.strip_prefix("header:") {
                    Self::header(HeaderName::from_bytes(h.trim().as_bytes()).map_err(|_| bad())?)
                } else if let Some(p) = s.strip_prefix("ip/") {
                    let (a, b) = p.split_once('/').ok_or_else(bad)?;
                    let v4: u8 = a.parse().map_err(|_| bad())?;
                    let v6: u8 = b.parse().map_err(|_| bad())?;
                    if v4 > 32 || v6 > 128 {
                        return Err(bad());
                    }
                    Self::client_ip_prefixes(v4, v6)
                } else {
                    return Err(bad());
                }
            }
        })
    }
}

impl<'de> serde::Deserialize<'de> for KeySpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use msec_core::PrincipalKind;

    fn req_with(f: impl FnOnce(&mut http::Request<()>)) -> http::Request<()> {
        let mut r = http::Request::get("/x").body(()).unwrap();
        f(&mut r);
        r
    }

    #[test]
    fn ip_grouping() {
        let a = Key::ip("2001:db8:1:2:3:4:5:6".parse().unwrap(), 32, 64);
        let b = Key::ip("2001:db8:1:2:ffff::1".parse().unwrap(), 32, 64);
        let c = Key::ip("2001:db8:1:3::1".parse().unwrap(), 32, 64);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.to_string(), "ip:2001:db8:1:2::/64");
        let v4 = Key::ip("::ffff:203.0.113.9".parse().unwrap(), 32, 64);
        assert_eq!(v4.to_string(), "ip:203.0.113.9");
        assert_eq!(
            Key::ip("203.0.113.9".parse().unwrap(), 24, 64).to_string(),
            "ip:203.0.113.0/24"
        );
        assert_eq!(
            Key::ip("203.0.113.9".parse().unwrap(), 0, 0).to_string(),
            "ip:0.0.0.0/0"
        );
        assert_eq!(a.heap_bytes(), 0);
    }

    #[test]
    fn principal_keys() {
        let p = Arc::new(
            Principal::builder("alice")
                .tenant("acme")
                .kind(PrincipalKind::ApiKey)
                .auth(AuthMethod::ApiKey { key_id: "k1".into() })
                .build(),
        );
        let r = req_with(|r| {
            r.extensions_mut().insert(p.clone());
        });
        let info = RequestInfo::new(&r, None);
        assert_eq!(KeySpec::subject().extract(&info), Some(Key::subject("alice")));
        assert_eq!(KeySpec::api_key().extract(&info), Some(Key::api_key("k1")));
        assert_eq!(KeySpec::tenant().extract(&info).unwrap().to_string(), "tenant:acme");
        // No principal: the rule does not apply.
        let bare = req_with(|_| {});
        assert_eq!(KeySpec::subject().extract_from(&bare, None), None);
        assert_eq!(KeySpec::client_ip().extract_from(&bare, None), None);
        assert_eq!(KeySpec::global().extract_from(&bare, None), Some(Key::global()));
        // Principal via the security context only.
        let ctx = SecurityContext::new();
        ctx.set_principal(p);
        let r = req_with(|r| {
            r.extensions_mut().insert(ctx);
        });
        assert_eq!(KeySpec::subject().extract_from(&r, None), Some(Key::subject("alice")));
    }

    #[test]
    fn header_and_long_values() {
        let long = "x".repeat(10_000);
        let r = req_with(|r| {
            r.headers_mut().insert("x-client", long.parse().unwrap());
        });
        let k = KeySpec::header(HeaderName::from_static("x-client"))
            .extract_from(&r, None)
            .unwrap();
        assert!(k.as_bytes().len() < 64, "long values are hashed");
        assert!(k.to_string().starts_with("x-client:#"));
        let r2 = req_with(|r| {
            r.headers_mut().insert("x-client", "a,b c".parse().unwrap());
        });
        let k2 = KeySpec::header(HeaderName::from_static("x-client"))
            .extract_from(&r2, None)
            .unwrap();
        assert_eq!(k2.to_string(), "x-client:a%2Cb%20c");
    }

    #[test]
    fn tuples_need_every_part() {
        let spec = KeySpec::tuple([KeySpec::global(), KeySpec::subject()]);
        assert_eq!(spec.extract_from(&req_with(|_| {}), None), None);
        let custom = KeySpec::custom(|r: &RequestInfo<'_>| Some(Key::text("m", r.method.as_str().as_bytes())));
        assert_eq!(
            custom.extract_from(&req_with(|_| {}), None).unwrap().to_string(),
            "m:GET"
        );
        let t = KeySpec::tuple([custom, KeySpec::route()]);
        assert_eq!(
            t.extract_from(&req_with(|_| {}), Some("/a/{id}")).unwrap().to_string(),
            "m:GET,route:/a/{id}"
        );
    }

    #[test]
    fn parse_specs() {
        for (s, d) in [
            ("ip", "ip"),
            ("ip/24/48", "ip/24/48"),
            ("subject", "subject"),
            ("header:X-Api-Client", "header:x-api-client"),
            ("ip+route", "(ip, route)"),
        ] {
            assert_eq!(s.parse::<KeySpec>().unwrap().to_string(), d);
        }
        for bad in ["", "ip/33/64", "ip/24", "header:bad header", "nope"] {
            assert!(bad.parse::<KeySpec>().is_err(), "{bad}");
        }
    }
}
