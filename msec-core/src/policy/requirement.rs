use std::fmt;
use std::sync::Arc;

use http::{HeaderMap, Method};
use ipnet::IpNet;
use serde_json::Value;

use crate::context::ReasonCode;
use crate::identity::{ClientAddr, PeerIdentity, Principal, PrincipalKind};
use crate::spiffe::{SpiffeId, TrustDomain};

/// What a policy knows about a request when it decides.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct RequestFacts<'a> {
    /// The HTTP method.
    pub method: &'a Method,
    /// The raw request path.
    pub path: &'a str,
    /// The request headers.
    pub headers: &'a HeaderMap,
    /// The authenticated principal, if any.
    pub principal: Option<&'a Principal>,
    /// The TLS peer, if any.
    pub peer: Option<&'a PeerIdentity>,
    /// The client address, if known.
    pub client: Option<ClientAddr>,
}

impl<'a> RequestFacts<'a> {
    /// Facts from the parts of a request: principal (`Arc<Principal>`), peer (`Arc<PeerIdentity>`) and client
    /// address ([`ClientAddr::from_extensions`]) are read from the extensions.
    pub fn from_request<B>(req: &'a http::Request<B>) -> Self {
        let ext = req.extensions();
        Self {
            method: req.method(),
            path: req.uri().path(),
            headers: req.headers(),
            principal: ext.get::<Arc<Principal>>().map(|p| &**p),
            peer: ext.get::<Arc<PeerIdentity>>().map(|p| &**p),
            client: ClientAddr::from_extensions(ext),
        }
    }

    /// Facts with only a method and path, for tests and tools.
    pub fn new(method: &'a Method, path: &'a str, headers: &'a HeaderMap) -> Self {
        Self {
            method,
            path,
            headers,
            principal: None,
            peer: None,
            client: None,
        }
    }

    /// Sets the principal.
    #[must_use]
    pub fn with_principal(mut self, p: &'a Principal) -> Self {
        self.principal = Some(p);
        self
    }

    /// Sets the peer.
    #[must_use]
    pub fn with_peer(mut self, p: &'a PeerIdentity) -> Self {
        self.peer = Some(p);
        self
    }

    /// Sets the client address.
    #[must_use]
    pub fn with_client(mut self, c: ClientAddr) -> Self {
        self.client = Some(c);
        self
    }
}

/// A named predicate written in Rust, for what the built-in requirements cannot say.
///
/// Compared by name, so a policy loaded from a file (`{ custom = "name" }`) equals the same policy built in code.
#[derive(Clone)]
pub struct CustomRequirement {
    name: Arc<str>,
    f: Arc<dyn Fn(&RequestFacts<'_>) -> bool + Send + Sync>,
}

impl CustomRequirement {
    /// A predicate named `name`.
    pub fn new(name: impl Into<Arc<str>>, f: impl Fn(&RequestFacts<'_>) -> bool + Send + Sync + 'static) -> Self {
        Self {
            name: name.into(),
            f: Arc::new(f),
        }
    }
    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Debug for CustomRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Custom({:?})", &*self.name)
    }
}

impl PartialEq for CustomRequirement {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

/// A condition over a request's principal, TLS peer and client address.
///
/// In an ALLOW rule it is what the request must satisfy; in a DENY rule it is when the rule fires.
///
/// ```
/// use msec_core::policy::Requirement;
/// let r = Requirement::all([
///     Requirement::scope("orders:read"),
///     Requirement::any([Requirement::role("support"), Requirement::claim_equals("tenant", "acme")]),
/// ]);
/// # let _ = r;
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Requirement {
    /// Anyone, authenticated or not.
    Public,
    /// Any authenticated principal.
    Authenticated,
    /// At least one of these scopes.
    AnyScope(Vec<String>),
    /// Every one of these scopes.
    AllScopes(Vec<String>),
    /// At least one of these roles.
    AnyRole(Vec<String>),
    /// The claim at `path` (dotted) equals `value`.
    ClaimEquals {
        /// Dotted claim path.
        path: String,
        /// Expected value.
        value: Value,
    },
    /// The claim at `path` is an array containing `value`, or a space-delimited string containing it.
    ClaimContains {
        /// Dotted claim path.
        path: String,
        /// The value looked for.
        value: Value,
    },
    /// The principal's issuer is one of these.
    AnyIssuer(Vec<String>),
    /// The token's audience (`aud`) includes one of these.
    AnyAudience(Vec<String>),
    /// The principal is of this kind.
    Kind(PrincipalKind),
    /// The TLS peer's SPIFFE ID is one of these.
    PeerSpiffeId(Vec<SpiffeId>),
    /// The TLS peer's SPIFFE ID is in `trust_domain` with a path at or below `path` (segment-wise).
    PeerSpiffePrefix {
        /// Trust domain.
        trust_domain: TrustDomain,
        /// Path prefix, e.g. `/ns/prod`.
        path: String,
    },
    /// The TLS peer's SPIFFE ID is in one of these trust domains.
    PeerTrustDomain(Vec<TrustDomain>),
    /// The client address is in one of these networks.
    ClientIpIn(Vec<IpNet>),
    /// All of these.
    All(Vec<Requirement>),
    /// At least one of these.
    Any(Vec<Requirement>),
    /// Not this.
    Not(Box<Requirement>),
    /// A named predicate written in Rust.
    Custom(CustomRequirement),
}

/// Why a requirement does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// A principal is needed and there is none (→ 401).
    NeedsPrincipal,
    /// These scopes are missing (→ 403 `insufficient_scope`).
    MissingScopes(Vec<String>),
    /// Anything else (→ 403 with this code).
    Code(ReasonCode),
}

impl Requirement {
    /// [`Requirement::AnyScope`] with one scope.
    pub fn scope(scope: impl Into<String>) -> Self {
        Self::AnyScope(vec![scope.into()])
    }
    /// [`Requirement::AnyScope`].
    pub fn any_scope<I: IntoIterator<Item = S>, S: Into<String>>(scopes: I) -> Self {
        Self::AnyScope(scopes.into_iter().map(Into::into).collect())
    }
    /// [`Requirement::AllScopes`].
    pub fn all_scopes<I: IntoIterator<Item = S>, S: Into<String>>(scopes: I) -> Self {
        Self::AllScopes(scopes.into_iter().map(Into::into).collect())
    }
    /// [`Requirement::AnyRole`] with one role.
    pub fn role(role: impl Into<String>) -> Self {
        Self::AnyRole(vec![role.into()])
    }
    /// [`Requirement::AnyRole`].
    pub fn any_role<I: IntoIterator<Item = S>, S: Into<String>>(roles: I) -> Self {
        Self::AnyRole(roles.into_iter().map(Into::into).collect())
    }
    /// [`Requirement::ClaimEquals`].
    pub fn claim_equals(path: impl Into<String>, value: impl Into<Value>) -> Self {
        Self::ClaimEquals {
            path: path.into(),
            value: value.into(),
        }
    }
    /// [`Requirement::ClaimContains`].
    pub fn claim_contains(path: impl Into<String>, value: impl Into<Value>) -> Self {
        Self::ClaimContains {
            path: path.into(),
            value: value.into(),
        }
    }
    /// [`Requirement::AnyIssuer`] with one issuer.
    pub fn issuer(issuer: impl Into<String>) -> Self {
        Self::AnyIssuer(vec![issuer.into()])
    }
    /// [`Requirement::AnyAudience`] with one audience.
    pub fn audience(aud: impl Into<String>) -> Self {
        Self::AnyAudience(vec![aud.into()])
    }
    /// [`Requirement::PeerSpiffeId`] with one ID.
    pub fn peer_spiffe_id(id: SpiffeId) -> Self {
        Self::PeerSpiffeId(vec![id])
    }
    /// [`Requirement::PeerSpiffePrefix`].
    pub fn peer_spiffe_prefix(trust_domain: TrustDomain, path: impl Into<String>) -> Self {
        Self::PeerSpiffePrefix {
            trust_domain,
            path: path.into(),
        }
    }
    /// [`Requirement::PeerTrustDomain`] with one domain.
    pub fn peer_trust_domain(td: TrustDomain) -> Self {
        Self::PeerTrustDomain(vec![td])
    }
    /// [`Requirement::ClientIpIn`].
    pub fn client_ip_in<I: IntoIterator<Item = IpNet>>(nets: I) -> Self {
        Self::ClientIpIn(nets.into_iter().collect())
    }
    /// [`Requirement::All`].
    pub fn all<I: IntoIterator<Item = Requirement>>(rs: I) -> Self {
        Self::All(rs.into_iter().collect())
    }
    /// [`Requirement::Any`].
    pub fn any<I: IntoIterator<Item = Requirement>>(rs: I) -> Self {
        Self::Any(rs.into_iter().collect())
    }
    /// [`Requirement::Not`].
    #[allow(clippy::should_implement_trait)]
    pub fn not(r: Requirement) -> Self {
        Self::Not(Box::new(r))
    }
    /// [`Requirement::Custom`].
    pub fn custom(name: impl Into<Arc<str>>, f: impl Fn(&RequestFacts<'_>) -> bool + Send + Sync + 'static) -> Self {
        Self::Custom(CustomRequirement::new(name, f))
    }

    /// True when the requirement holds for `facts`.
    pub fn holds(&self, facts: &RequestFacts<'_>) -> bool {
        self.check(facts).is_ok()
    }

    pub(crate) fn check(&self, facts: &RequestFacts<'_>) -> Result<(), Failure> {
        let principal = || facts.principal.ok_or(Failure::NeedsPrincipal);
        let peer_id = || {
            facts
                .peer
                .ok_or(Failure::Code(ReasonCode::MISSING_PEER_IDENTITY))?
                .spiffe_id
                .as_ref()
                .ok_or(Failure::Code(ReasonCode::PEER_NOT_ALLOWED))
        };
        let ok_or = |cond: bool, code: ReasonCode| if cond { Ok(()) } else { Err(Failure::Code(code)) };
        match self {
            Self::Public => Ok(()),
            Self::Authenticated => principal().map(|_| ()),
            Self::AnyScope(scopes) => {
                let p = principal()?;
                if scopes.iter().any(|s| p.has_scope(s)) {
                    Ok(())
                } else {
                    Err(Failure::MissingScopes(scopes.clone()))
                }
            }
            Self::AllScopes(scopes) => {
                let p = principal()?;
                let missing: Vec<String> = scopes.iter().filter(|s| !p.has_scope(s)).cloned().collect();
                if missing.is_empty() {
                    Ok(())
                } else {
                    Err(Failure::MissingScopes(missing))
                }
            }
            Self::AnyRole(roles) => {
                let p = principal()?;
                ok_or(roles.iter().any(|r| p.has_role(r)), ReasonCode::MISSING_ROLE)
            }
            Self::ClaimEquals { path, value } => {
                let p = principal()?;
                ok_or(p.claim(path) == Some(value), ReasonCode::CLAIM_MISMATCH)
            }
            Self::ClaimContains { path, value } => {
                let p = principal()?;
                let hit = match p.claim(path) {
                    Some(Value::Array(a)) => a.contains(value),
                    Some(Value::String(s)) => value.as_str().is_some_and(|v| s.split(' ').any(|t| t == v)),
                    _ => false,
                };
                ok_or(hit, ReasonCode::CLAIM_MISMATCH)
            }
            Self::AnyIssuer(issuers) => {
                let p = principal()?;
                ok_or(
                    p.issuer.as_ref().is_some_and(|i| issuers.iter().any(|x| x == i)),
                    ReasonCode::ISSUER_NOT_ALLOWED,
                )
            }
            Self::AnyAudience(auds) => {
                let p = principal()?;
                ok_or(
                    p.audiences().any(|a| auds.iter().any(|x| x == a)),
                    ReasonCode::AUDIENCE_NOT_ALLOWED,
                )
            }
            Self::Kind(kind) => {
                let p = principal()?;
                ok_or(p.kind == *kind, ReasonCode::PRINCIPAL_KIND_NOT_ALLOWED)
            }
            Self::PeerSpiffeId(ids) => {
                let id = peer_id()?;
                ok_or(ids.iter().any(|x| x == id), ReasonCode::PEER_NOT_ALLOWED)
            }
            Self::PeerSpiffePrefix { trust_domain, path } => {
                let id = peer_id()?;
                ok_or(
                    id.has_path_prefix(trust_domain.as_str(), path),
                    ReasonCode::PEER_NOT_ALLOWED,
                )
            }
            Self::PeerTrustDomain(tds) => {
                let id = peer_id()?;
                ok_or(
                    tds.iter().any(|td| td.as_str() == id.trust_domain_name()),
                    ReasonCode::PEER_NOT_ALLOWED,
                )
            }
            Self::ClientIpIn(nets) => ok_or(
                facts.client.is_some_and(|c| nets.iter().any(|n| n.contains(&c.ip()))),
                ReasonCode::CLIENT_IP_NOT_ALLOWED,
            ),
            Self::All(rs) => rs.iter().try_for_each(|r| r.check(facts)),
            Self::Any(rs) => {
                let mut failures = Vec::with_capacity(rs.len());
                for r in rs {
                    match r.check(facts) {
                        Ok(()) => return Ok(()),
                        Err(f) => failures.push(f),
                    }
                }
                Err(combine_any(failures))
            }
            Self::Not(r) => match r.check(facts) {
                Ok(()) => Err(Failure::Code(ReasonCode::POLICY_DENIED)),
                Err(_) => Ok(()),
            },
            Self::Custom(c) => ok_or((c.f)(facts), ReasonCode::CUSTOM_DENIED),
        }
    }
}

/// The most useful failure of an `Any`: authenticate first; then every missing scope; then the first reason.
pub(crate) fn combine_any(failures: Vec<Failure>) -> Failure {
    if failures.contains(&Failure::NeedsPrincipal) {
        return Failure::NeedsPrincipal;
    }
    if !failures.is_empty() && failures.iter().all(|f| matches!(f, Failure::MissingScopes(_))) {
        let mut all: Vec<String> = Vec::new();
        for f in failures {
            if let Failure::MissingScopes(s) = f {
                for x in s {
                    if !all.contains(&x) {
                        all.push(x);
                    }
                }
            }
        }
        return Failure::MissingScopes(all);
    }
    failures
        .into_iter()
        .next()
        .unwrap_or(Failure::Code(ReasonCode::POLICY_DENIED))
}
