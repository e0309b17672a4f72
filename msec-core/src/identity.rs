//! Who a request acts for ([`Principal`]), which TLS peer sent it ([`PeerIdentity`]) and from where
//! ([`ClientAddr`]).
//!
//! Layers put these in the request extensions as `Arc<Principal>`, `Arc<PeerIdentity>` and `ClientAddr`; every
//! other layer and the handler read them from there. They are data only: parsing tokens lives in `msec-authn`,
//! parsing certificates in `msec-tls`, resolving forwarded headers in `msec-ratelimit`.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::spiffe::SpiffeId;

/// What kind of party a [`Principal`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum PrincipalKind {
    /// An end user (a token with a user subject).
    User,
    /// A service or machine client (client-credentials token, or a token whose subject is the client id).
    Service,
    /// The holder of an API key.
    ApiKey,
}

impl PrincipalKind {
    /// A stable lowercase name: `user`, `service`, `api_key`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Service => "service",
            Self::ApiKey => "api_key",
        }
    }
}

/// How a [`Principal`] was authenticated. Recorded for audit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "method", rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuthMethod {
    /// A signed JWT verified with the key `kid` (when the token named one) under algorithm `alg`.
    Jwt {
        /// The JWS algorithm, e.g. `RS256`.
        alg: String,
        /// The key id from the token header, if any.
        kid: Option<String>,
    },
    /// An API key, by its public key id (never the secret).
    ApiKey {
        /// The key id embedded in the API key.
        key_id: String,
    },
    /// An opaque token checked with RFC 7662 introspection.
    Introspection,
    /// A TLS client certificate alone.
    Mtls,
    /// Anything else; the string names it.
    Other(String),
}

/// Who the request acts for: the result of authentication, shared as `Arc<Principal>`.
///
/// Build one with [`Principal::builder`]. Fields are public to read; the struct is `#[non_exhaustive]` so new
/// fields can be added without breaking you.
///
/// ```
/// use msec_core::{Principal, PrincipalKind};
///
/// let p = Principal::builder("alice")
///     .issuer("https://id.example.com")
///     .scopes(["orders:read", "orders:write"])
///     .roles(["admin"])
///     .build();
/// assert!(p.has_scope("orders:read"));
/// assert!(p.has_role("admin"));
/// assert_eq!(p.kind, PrincipalKind::User);
/// ```
#[derive(Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Principal {
    /// The subject (`sub`), or the API key's owner.
    pub subject: String,
    /// The token issuer (`iss`), if any.
    pub issuer: Option<String>,
    /// User, service, or API key.
    pub kind: PrincipalKind,
    /// Granted scopes, sorted and without duplicates.
    pub scopes: Vec<String>,
    /// Roles or groups.
    pub roles: Vec<String>,
    /// Tenant, for multi-tenant services.
    pub tenant: Option<String>,
    /// The OAuth client id (`client_id` / `azp`), if any.
    pub client_id: Option<String>,
    /// The token id (`jti`), if any.
    pub token_id: Option<String>,
    /// How the principal was authenticated.
    pub auth: AuthMethod,
    /// When the credential expires, if it does.
    #[serde(serialize_with = "ser_opt_time")]
    pub expires_at: Option<SystemTime>,
    /// All claims of the token (empty for API keys), for custom policies.
    #[serde(skip)]
    pub claims: Arc<Map<String, Value>>,
}

fn ser_opt_time<S: serde::Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match t.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok()) {
        Some(d) => s.serialize_some(&d.as_secs()),
        None => s.serialize_none(),
    }
}

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Claims may hold personal data; show only their names.
        f.debug_struct("Principal")
            .field("subject", &self.subject)
            .field("issuer", &self.issuer)
            .field("kind", &self.kind)
            .field("scopes", &self.scopes)
            .field("roles", &self.roles)
            .field("tenant", &self.tenant)
            .field("client_id", &self.client_id)
            .field("token_id", &self.token_id)
            .field("auth", &self.auth)
            .field("expires_at", &self.expires_at)
            .field("claims", &self.claims.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Principal {
    /// Starts a principal for `subject` (a user, with no scopes, authenticated by [`AuthMethod::Other`]).
    pub fn builder(subject: impl Into<String>) -> PrincipalBuilder {
        PrincipalBuilder {
            p: Principal {
                subject: subject.into(),
                issuer: None,
                kind: PrincipalKind::User,
                scopes: Vec::new(),
                roles: Vec::new(),
                tenant: None,
                client_id: None,
                token_id: None,
                auth: AuthMethod::Other("unspecified".into()),
                expires_at: None,
                claims: Arc::new(Map::new()),
            },
        }
    }

    /// True when the principal holds `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.binary_search_by(|s| s.as_str().cmp(scope)).is_ok()
    }

    /// True when the principal has `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// Looks up a claim by a dotted path (`realm_access.roles`). A path segment that is all digits indexes
    /// into an array.
    pub fn claim(&self, path: &str) -> Option<&Value> {
        claim_path(&self.claims, path)
    }

    /// The audiences of the token (`aud` as a string or an array), empty when absent.
    pub fn audiences(&self) -> impl Iterator<Item = &str> {
        let v = self.claims.get("aud");
        let one = v.and_then(Value::as_str);
        let many = v
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str);
        one.into_iter().chain(many)
    }
}

/// Looks up `path` (dot-separated) in a JSON object.
pub(crate) fn claim_path<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    // An exact key wins, so claims whose names contain dots (URLs) still resolve.
    if let Some(v) = claims.get(path) {
        return Some(v);
    }
    let mut parts = path.split('.');
    let mut cur = claims.get(parts.next()?)?;
    for part in parts {
        cur = match cur {
            Value::Object(m) => m.get(part)?,
            Value::Array(a) => a.get(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// Builder for [`Principal`].
#[derive(Debug, Clone)]
#[must_use]
pub struct PrincipalBuilder {
    p: Principal,
}

impl PrincipalBuilder {
    /// Sets the issuer.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.p.issuer = Some(issuer.into());
        self
    }
    /// Sets the kind.
    pub fn kind(mut self, kind: PrincipalKind) -> Self {
        self.p.kind = kind;
        self
    }
    /// Sets the scopes (sorted and de-duplicated).
    pub fn scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut v: Vec<String> = scopes.into_iter().map(Into::into).collect();
        v.sort_unstable();
        v.dedup();
        self.p.scopes = v;
        self
    }
    /// Sets the roles.
    pub fn roles<I, S>(mut self, roles: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.p.roles = roles.into_iter().map(Into::into).collect();
        self
    }
    /// Sets the tenant.
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.p.tenant = Some(tenant.into());
        self
    }
    /// Sets the OAuth client id.
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.p.client_id = Some(client_id.into());
        self
    }
    /// Sets the token id (`jti`).
    pub fn token_id(mut self, jti: impl Into<String>) -> Self {
        self.p.token_id = Some(jti.into());
        self
    }
    /// Sets how the principal was authenticated.
    pub fn auth(mut self, auth: AuthMethod) -> Self {
        self.p.auth = auth;
        self
    }
    /// Sets the expiry.
    pub fn expires_at(mut self, t: SystemTime) -> Self {
        self.p.expires_at = Some(t);
        self
    }
    /// Sets the raw claims.
    pub fn claims(mut self, claims: Map<String, Value>) -> Self {
        self.p.claims = Arc::new(claims);
        self
    }
    /// Sets the raw claims from a shared map.
    pub fn shared_claims(mut self, claims: Arc<Map<String, Value>>) -> Self {
        self.p.claims = claims;
        self
    }
    /// Finishes the principal.
    pub fn build(self) -> Principal {
        self.p
    }
}

/// Where a [`PeerIdentity`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum PeerSource {
    /// This process completed the TLS handshake with the peer.
    Handshake,
    /// A trusted proxy terminated TLS and forwarded the certificate (e.g. Envoy's `x-forwarded-client-cert`).
    TrustedProxy,
}

/// The TLS peer: the verified client certificate of the connection, parsed once per connection and shared by
/// every request on it as `Arc<PeerIdentity>`. Built by `msec-tls`.
///
/// ```
/// use msec_core::PeerIdentity;
/// let peer = PeerIdentity::builder()
///     .spiffe_id("spiffe://example.org/ns/prod/sa/billing".parse()?)
///     .build();
/// assert_eq!(peer.trust_domain(), Some("example.org"));
/// # Ok::<(), msec_core::spiffe::SpiffeIdError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct PeerIdentity {
    /// The SPIFFE ID (the one `spiffe://` URI SAN), if the certificate is an SVID.
    pub spiffe_id: Option<SpiffeId>,
    /// DNS subject alternative names.
    pub dns_names: Vec<String>,
    /// URI subject alternative names (including the SPIFFE ID).
    pub uris: Vec<String>,
    /// The subject distinguished name (RFC 4514 form).
    pub subject: String,
    /// The issuer distinguished name (RFC 4514 form).
    pub issuer: String,
    /// The serial number, lowercase hex.
    pub serial: String,
    /// SHA-256 of the DER certificate (the RFC 8705 `x5t#S256` thumbprint, before base64url).
    #[serde(serialize_with = "ser_hex")]
    pub fingerprint_sha256: [u8; 32],
    /// Start of validity.
    #[serde(serialize_with = "ser_opt_time")]
    pub not_before: Option<SystemTime>,
    /// End of validity.
    #[serde(serialize_with = "ser_opt_time")]
    pub not_after: Option<SystemTime>,
    /// Who verified the certificate.
    pub source: PeerSource,
}

fn ser_hex<S: serde::Serializer>(b: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex(b))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 0xf) as usize] as char);
    }
    out
}

impl PeerIdentity {
    /// Starts an empty identity (no SANs, zero fingerprint, source [`PeerSource::Handshake`]).
    pub fn builder() -> PeerIdentityBuilder {
        PeerIdentityBuilder {
            p: PeerIdentity {
                spiffe_id: None,
                dns_names: Vec::new(),
                uris: Vec::new(),
                subject: String::new(),
                issuer: String::new(),
                serial: String::new(),
                fingerprint_sha256: [0; 32],
                not_before: None,
                not_after: None,
                source: PeerSource::Handshake,
            },
        }
    }

    /// The SPIFFE trust domain, if the peer has a SPIFFE ID.
    pub fn trust_domain(&self) -> Option<&str> {
        self.spiffe_id.as_ref().map(SpiffeId::trust_domain_name)
    }

    /// The certificate fingerprint as lowercase hex.
    pub fn fingerprint_hex(&self) -> String {
        hex(&self.fingerprint_sha256)
    }
}

/// Builder for [`PeerIdentity`].
#[derive(Debug, Clone)]
#[must_use]
pub struct PeerIdentityBuilder {
    p: PeerIdentity,
}

impl PeerIdentityBuilder {
    /// Sets the SPIFFE ID (also added to the URI SANs).
    pub fn spiffe_id(mut self, id: SpiffeId) -> Self {
        self.p.uris.push(id.as_str().to_owned());
        self.p.spiffe_id = Some(id);
        self
    }
    /// Sets the DNS SANs.
    pub fn dns_names(mut self, names: Vec<String>) -> Self {
        self.p.dns_names = names;
        self
    }
    /// Sets the URI SANs (replacing any).
    pub fn uris(mut self, uris: Vec<String>) -> Self {
        self.p.uris = uris;
        self
    }
    /// Sets the subject DN.
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.p.subject = subject.into();
        self
    }
    /// Sets the issuer DN.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.p.issuer = issuer.into();
        self
    }
    /// Sets the serial (hex).
    pub fn serial(mut self, serial: impl Into<String>) -> Self {
        self.p.serial = serial.into();
        self
    }
    /// Sets the SHA-256 fingerprint of the DER certificate.
    pub fn fingerprint_sha256(mut self, fp: [u8; 32]) -> Self {
        self.p.fingerprint_sha256 = fp;
        self
    }
    /// Sets the validity period.
    pub fn validity(mut self, not_before: SystemTime, not_after: SystemTime) -> Self {
        self.p.not_before = Some(not_before);
        self.p.not_after = Some(not_after);
        self
    }
    /// Sets where the identity came from.
    pub fn source(mut self, source: PeerSource) -> Self {
        self.p.source = source;
        self
    }
    /// Finishes the identity.
    pub fn build(self) -> PeerIdentity {
        self.p
    }
}

/// How a [`ClientAddr`] was determined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ClientAddrSource {
    /// The TCP peer of the connection.
    Socket,
    /// A forwarding header (`X-Forwarded-For` / `Forwarded`) written by a trusted proxy.
    Forwarded,
}

/// The client's address: the socket peer, or — behind trusted proxies — the address they vouch for.
///
/// Put in the request extensions by the serve loop (socket) and replaced by the trusted-proxy resolver, so
/// every layer uses the same answer.
///
/// ```
/// use msec_core::ClientAddr;
/// let a = ClientAddr::from_socket("203.0.113.7:5555".parse().unwrap());
/// assert_eq!(a.ip().to_string(), "203.0.113.7");
/// assert_eq!(a.port(), Some(5555));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct ClientAddr {
    ip: IpAddr,
    port: Option<u16>,
    source: ClientAddrSource,
}

impl ClientAddr {
    /// The socket peer of a connection.
    pub fn from_socket(addr: SocketAddr) -> Self {
        Self {
            ip: canonical_ip(addr.ip()),
            port: Some(addr.port()),
            source: ClientAddrSource::Socket,
        }
    }

    /// An address vouched for by a trusted proxy.
    pub fn forwarded(ip: IpAddr, port: Option<u16>) -> Self {
        Self {
            ip: canonical_ip(ip),
            port,
            source: ClientAddrSource::Forwarded,
        }
    }

    /// The client IP (IPv4-mapped IPv6 addresses are reported as IPv4).
    pub fn ip(&self) -> IpAddr {
        self.ip
    }

    /// The client port, when known.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// How the address was determined.
    pub fn source(&self) -> ClientAddrSource {
        self.source
    }

    /// Reads the client address of a request: a [`ClientAddr`] extension, else (with the `axum` feature)
    /// axum's `ConnectInfo<SocketAddr>`.
    pub fn from_extensions(ext: &http::Extensions) -> Option<Self> {
        if let Some(a) = ext.get::<ClientAddr>() {
            return Some(*a);
        }
        #[cfg(feature = "axum")]
        if let Some(ci) = ext.get::<axum::extract::ConnectInfo<SocketAddr>>() {
            return Some(Self::from_socket(ci.0));
        }
        None
    }
}

impl fmt::Display for ClientAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.ip, self.port) {
            (IpAddr::V4(ip), Some(p)) => write!(f, "{ip}:{p}"),
            (IpAddr::V6(ip), Some(p)) => write!(f, "[{ip}]:{p}"),
            (ip, None) => write!(f, "{ip}"),
        }
    }
}

fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_paths() {
        let claims: Map<String, Value> = serde_json::from_str(
            r#"{"realm_access":{"roles":["a","b"]},"https://x.io/tenant":"t1","aud":["api","other"]}"#,
        )
        .unwrap();
        let p = Principal::builder("s").claims(claims).build();
        assert_eq!(p.claim("realm_access.roles.1"), Some(&Value::from("b")));
        assert_eq!(p.claim("https://x.io/tenant"), Some(&Value::from("t1")));
        assert_eq!(p.claim("realm_access.nope"), None);
        assert_eq!(p.audiences().collect::<Vec<_>>(), ["api", "other"]);
    }

    #[test]
    fn scopes_sorted_and_searchable() {
        let p = Principal::builder("s").scopes(["b", "a", "b"]).build();
        assert_eq!(p.scopes, ["a", "b"]);
        assert!(p.has_scope("a") && p.has_scope("b") && !p.has_scope("c"));
    }

    #[test]
    fn mapped_v4_is_v4() {
        let a = ClientAddr::from_socket("[::ffff:10.0.0.1]:80".parse().unwrap());
        assert_eq!(a.ip(), "10.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(a.to_string(), "10.0.0.1:80");
    }
}
