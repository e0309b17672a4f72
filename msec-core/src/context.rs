//! The per-request [`SecurityContext`] where layers record their [`Decision`]s.
//!
//! The audit layer (outermost) puts an `Arc<SecurityContext>` in the request extensions; every inner layer that
//! decides something calls [`record`] / [`record_with`]. When no context is present — no audit layer — recording
//! is a pointer lookup in the extensions plus one `metrics` counter increment, and the details closure is never
//! run.
//!
//! Inner layers also tell the context what the outer layers cannot see (the request is moved inward): the
//! authenticated principal, the resolved client address, the matched route template.
//!
//! ```
//! use msec_core::context::{self, Decision, Outcome, SecurityContext};
//! use msec_core::ReasonCode;
//!
//! let mut req = http::Request::new(());
//! let ctx = SecurityContext::new();
//! req.extensions_mut().insert(ctx.clone());
//!
//! context::record_with(req.extensions(), "authz", Outcome::Deny, ReasonCode::INSUFFICIENT_SCOPE, |d| {
//!     d.detail("rule", "orders read");
//! });
//! let decisions = ctx.decisions();
//! assert_eq!(decisions[0].code, ReasonCode::INSUFFICIENT_SCOPE);
//! assert_eq!(decisions[0].get_detail("rule"), Some("orders read"));
//! ```

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use crate::identity::{ClientAddr, Principal};

/// A stable, machine-readable reason code such as `token_expired` or `insufficient_scope`.
///
/// Codes are part of msec's public contract: clients, dashboards and audit queries match on them. They are
/// lowercase `snake_case` ASCII. Each crate defines its own as associated constants or `const` items.
///
/// ```
/// use msec_core::ReasonCode;
/// const TOKEN_EXPIRED: ReasonCode = ReasonCode::new("token_expired");
/// assert_eq!(TOKEN_EXPIRED.as_str(), "token_expired");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReasonCode(&'static str);

impl ReasonCode {
    /// Defines a code. Use lowercase `snake_case`.
    pub const fn new(code: &'static str) -> Self {
        Self(code)
    }
    /// The code as a string.
    pub const fn as_str(self) -> &'static str {
        self.0
    }

    /// The request carried no credentials.
    pub const MISSING_CREDENTIALS: Self = Self("missing_credentials");
    /// The principal lacks a required scope.
    pub const INSUFFICIENT_SCOPE: Self = Self("insufficient_scope");
    /// The principal lacks a required role.
    pub const MISSING_ROLE: Self = Self("missing_role");
    /// A required claim is missing or has another value.
    pub const CLAIM_MISMATCH: Self = Self("claim_mismatch");
    /// The token's issuer is not one this route accepts.
    pub const ISSUER_NOT_ALLOWED: Self = Self("issuer_not_allowed");
    /// The token's audience is not one this route accepts.
    pub const AUDIENCE_NOT_ALLOWED: Self = Self("audience_not_allowed");
    /// The principal is of another kind than the route requires.
    pub const PRINCIPAL_KIND_NOT_ALLOWED: Self = Self("principal_kind_not_allowed");
    /// The TLS peer's identity is not allowed on this route.
    pub const PEER_NOT_ALLOWED: Self = Self("peer_not_allowed");
    /// The route needs a TLS client certificate and the connection has none.
    pub const MISSING_PEER_IDENTITY: Self = Self("missing_peer_identity");
    /// The client address is not allowed on this route.
    pub const CLIENT_IP_NOT_ALLOWED: Self = Self("client_ip_not_allowed");
    /// A custom policy predicate refused the request.
    pub const CUSTOM_DENIED: Self = Self("custom_denied");
    /// A DENY rule matched.
    pub const POLICY_DENIED: Self = Self("policy_denied");
    /// No rule covers this route: denied by default.
    pub const NO_MATCHING_RULE: Self = Self("no_matching_rule");
    /// An ALLOW rule matched and its requirement held.
    pub const POLICY_ALLOWED: Self = Self("policy_allowed");
    /// The client sent too many requests.
    pub const RATE_LIMITED: Self = Self("rate_limited");
    /// The client is banned for a while.
    pub const BANNED: Self = Self("banned");
    /// The request body is too large.
    pub const PAYLOAD_TOO_LARGE: Self = Self("payload_too_large");
    /// The request's content type is not accepted.
    pub const UNSUPPORTED_MEDIA_TYPE: Self = Self("unsupported_media_type");
    /// The request content failed validation.
    pub const VALIDATION_FAILED: Self = Self("validation_failed");
    /// A dependency the security layer needs is unavailable.
    pub const SERVICE_UNAVAILABLE: Self = Self("service_unavailable");
}

impl fmt::Debug for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl Serialize for ReasonCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0)
    }
}

/// What a layer decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The request may proceed.
    Allow,
    /// The request was rejected.
    Deny,
    /// The request would have been rejected, but the rule is in shadow mode: it proceeds.
    ShadowDeny,
}

impl Outcome {
    /// `allow`, `deny` or `shadow_deny`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::ShadowDeny => "shadow_deny",
        }
    }
}

/// One decision of one layer about one request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Decision {
    /// The deciding layer: `authn`, `authz`, `ratelimit`, `tls`, `validate`, ...
    pub layer: &'static str,
    /// Allow, deny or shadow-deny.
    pub outcome: Outcome,
    /// The stable reason code.
    pub code: ReasonCode,
    /// Extra facts (rule name, missing scope, key id, ...), in the order recorded. Never secrets.
    pub details: Vec<(&'static str, DetailValue)>,
}

impl Decision {
    /// A decision with no details.
    pub fn new(layer: &'static str, outcome: Outcome, code: ReasonCode) -> Self {
        Self {
            layer,
            outcome,
            code,
            details: Vec::new(),
        }
    }

    /// Adds a detail: a `&'static str`, a `String`, an `Arc<str>` (shared, not copied) or a number.
    pub fn detail(&mut self, key: &'static str, value: impl Into<DetailValue>) -> &mut Self {
        self.details.push((key, value.into()));
        self
    }

    /// Adds a detail, builder style.
    #[must_use]
    pub fn with_detail(mut self, key: &'static str, value: impl Into<DetailValue>) -> Self {
        self.details.push((key, value.into()));
        self
    }

    /// Looks up the first detail named `key`.
    pub fn get_detail(&self, key: &str) -> Option<&str> {
        self.details.iter().find(|(k, _)| *k == key).map(|(_, v)| v.as_str())
    }
}

impl Serialize for Decision {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // `details` is left out when there are none: audit records carry several decisions each.
        let mut m = s.serialize_map(Some(if self.details.is_empty() { 3 } else { 4 }))?;
        m.serialize_entry("layer", self.layer)?;
        m.serialize_entry("outcome", &self.outcome)?;
        m.serialize_entry("code", &self.code)?;
        if !self.details.is_empty() {
            m.serialize_entry("details", &DetailMap(&self.details))?;
        }
        m.end()
    }
}

struct DetailMap<'a>(&'a [(&'static str, DetailValue)]);

impl Serialize for DetailMap<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            m.serialize_entry(k, v.as_str())?;
        }
        m.end()
    }
}

/// The value of a decision detail. Constants (`&'static str`), shared names (`Arc<str>`) and numbers are
/// kept without copying or allocating; other text is an owned `String`.
///
/// ```
/// use std::sync::Arc;
/// use msec_core::context::DetailValue;
///
/// let rule: Arc<str> = Arc::from("orders read");
/// assert_eq!(DetailValue::from(&rule), "orders read");
/// assert_eq!(DetailValue::from(42u64).as_str(), "42");
/// assert_eq!(DetailValue::from("jwt"), "jwt");
/// ```
#[derive(Clone)]
pub struct DetailValue(DetailRepr);

#[derive(Clone)]
enum DetailRepr {
    Static(&'static str),
    Shared(Arc<str>),
    Owned(String),
    /// Up to 20 ASCII digits.
    Digits {
        len: u8,
        buf: [u8; 20],
    },
}

impl DetailValue {
    /// The text.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            DetailRepr::Static(s) => s,
            DetailRepr::Shared(s) => s,
            DetailRepr::Owned(s) => s,
            // Only ASCII digits are ever stored.
            DetailRepr::Digits { len, buf } => std::str::from_utf8(&buf[..usize::from(*len)]).unwrap_or_default(),
        }
    }
}

impl std::ops::Deref for DetailValue {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for DetailValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for DetailValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq for DetailValue {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for DetailValue {}

impl PartialEq<str> for DetailValue {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for DetailValue {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for DetailValue {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

impl Serialize for DetailValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl From<&'static str> for DetailValue {
    fn from(s: &'static str) -> Self {
        Self(DetailRepr::Static(s))
    }
}

impl From<String> for DetailValue {
    fn from(s: String) -> Self {
        Self(DetailRepr::Owned(s))
    }
}

impl From<Arc<str>> for DetailValue {
    fn from(s: Arc<str>) -> Self {
        Self(DetailRepr::Shared(s))
    }
}

impl From<&Arc<str>> for DetailValue {
    fn from(s: &Arc<str>) -> Self {
        Self(DetailRepr::Shared(s.clone()))
    }
}

impl From<std::borrow::Cow<'static, str>> for DetailValue {
    fn from(s: std::borrow::Cow<'static, str>) -> Self {
        match s {
            std::borrow::Cow::Borrowed(s) => Self(DetailRepr::Static(s)),
            std::borrow::Cow::Owned(s) => Self(DetailRepr::Owned(s)),
        }
    }
}

impl From<u64> for DetailValue {
    fn from(n: u64) -> Self {
        let mut digits = [0u8; 20];
        let d = crate::text::decimal(&mut digits, n);
        let mut buf = [0u8; 20];
        buf[..d.len()].copy_from_slice(d);
        Self(DetailRepr::Digits {
            len: d.len() as u8,
            buf,
        })
    }
}

impl From<u32> for DetailValue {
    fn from(n: u32) -> Self {
        Self::from(u64::from(n))
    }
}

impl From<usize> for DetailValue {
    fn from(n: usize) -> Self {
        Self::from(n as u64)
    }
}

/// What the layers of one request have learned and decided. Shared as `Arc<SecurityContext>`.
#[derive(Default)]
pub struct SecurityContext {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    decisions: Vec<Decision>,
    principal: Option<Arc<Principal>>,
    client_addr: Option<ClientAddr>,
    route: Option<Arc<str>>,
}

impl fmt::Debug for SecurityContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = self.lock();
        f.debug_struct("SecurityContext")
            .field("decisions", &g.decisions)
            .field("principal", &g.principal.as_ref().map(|p| &p.subject))
            .field("client_addr", &g.client_addr)
            .field("route", &g.route)
            .finish()
    }
}

impl SecurityContext {
    /// A new, empty context, ready to insert into a request's extensions.
    pub fn new() -> Arc<Self> {
        // Room for a full stack's decisions (firewall, two rate limits, authn, authz, validation, ...), so
        // recording them does not regrow the vector.
        Arc::new(Self {
            inner: Mutex::new(Inner {
                decisions: Vec::with_capacity(8),
                ..Inner::default()
            }),
        })
    }

    /// The context of a request, if an audit layer (or anyone) put one there.
    pub fn get(ext: &http::Extensions) -> Option<&Arc<Self>> {
        ext.get::<Arc<Self>>()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the data inconsistent (each method does one push or
        // one assignment), so a poisoned lock is safe to use.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a decision.
    pub fn push(&self, decision: Decision) {
        self.lock().decisions.push(decision);
    }

    /// A copy of the decisions recorded so far, in order.
    pub fn decisions(&self) -> Vec<Decision> {
        self.lock().decisions.clone()
    }

    /// Takes the decisions recorded so far, leaving none.
    pub fn take_decisions(&self) -> Vec<Decision> {
        std::mem::take(&mut self.lock().decisions)
    }

    /// Sets the authenticated principal.
    pub fn set_principal(&self, principal: Arc<Principal>) {
        self.lock().principal = Some(principal);
    }

    /// The authenticated principal, if an authentication layer set one.
    pub fn principal(&self) -> Option<Arc<Principal>> {
        self.lock().principal.clone()
    }

    /// Sets the resolved client address.
    pub fn set_client_addr(&self, addr: ClientAddr) {
        self.lock().client_addr = Some(addr);
    }

    /// The resolved client address, if a layer set one.
    pub fn client_addr(&self) -> Option<ClientAddr> {
        self.lock().client_addr
    }

    /// Sets the matched route template (e.g. `/v1/orders/{id}`), unless one is already set.
    pub fn set_route(&self, template: Arc<str>) {
        let mut g = self.lock();
        if g.route.is_none() {
            g.route = Some(template);
        }
    }

    /// The matched route template, if a layer set one.
    pub fn route(&self) -> Option<Arc<str>> {
        self.lock().route.clone()
    }
}

/// Records `decision` in the request's context, if there is one, and counts it in the
/// `msec_decisions_total{layer, outcome, code}` metric.
pub fn record(ext: &http::Extensions, decision: Decision) {
    count(decision.layer, decision.outcome, decision.code);
    if let Some(ctx) = SecurityContext::get(ext) {
        ctx.push(decision);
    }
}

/// Records a decision whose details are computed only when a context is present.
pub fn record_with(
    ext: &http::Extensions,
    layer: &'static str,
    outcome: Outcome,
    code: ReasonCode,
    details: impl FnOnce(&mut Decision),
) {
    count(layer, outcome, code);
    if let Some(ctx) = SecurityContext::get(ext) {
        let mut d = Decision::new(layer, outcome, code);
        details(&mut d);
        ctx.push(d);
    }
}

fn count(layer: &'static str, outcome: Outcome, code: ReasonCode) {
    crate::metrics::increment(
        "msec_decisions_total",
        [("layer", layer), ("outcome", outcome.as_str()), ("code", code.as_str())],
    );
    trace(layer, outcome, code);
}

/// The decision as a `DEBUG` event (target `msec::decision`), and as the `outcome` / `code` fields of the
/// current span (the deciding layer's span, see [`crate::trace`]). Nothing is done unless `DEBUG` is enabled.
fn trace(layer: &'static str, outcome: Outcome, code: ReasonCode) {
    if !tracing::enabled!(target: "msec::decision", tracing::Level::DEBUG) {
        return;
    }
    tracing::debug!(
        target: "msec::decision",
        layer,
        outcome = outcome.as_str(),
        code = code.as_str(),
        "msec decision"
    );
    let span = tracing::Span::current();
    span.record("outcome", outcome.as_str());
    span.record("code", code.as_str());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_context_means_no_detail_work() {
        let req = http::Request::new(());
        let mut ran = false;
        record_with(
            req.extensions(),
            "t",
            Outcome::Allow,
            ReasonCode::POLICY_ALLOWED,
            |_| ran = true,
        );
        assert!(!ran);
    }

    #[test]
    fn decisions_serialize_with_detail_map() {
        let d = Decision::new("authz", Outcome::ShadowDeny, ReasonCode::POLICY_DENIED).with_detail("rule", "r1");
        let v = serde_json::to_value(&d).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"layer":"authz","outcome":"shadow_deny","code":"policy_denied","details":{"rule":"r1"}})
        );
    }

    #[test]
    fn detail_values_keep_their_text() {
        assert_eq!(DetailValue::from(0u64).as_str(), "0");
        assert_eq!(DetailValue::from(u64::MAX).as_str(), "18446744073709551615");
        assert_eq!(DetailValue::from(1_000u32), "1000");
        assert_eq!(DetailValue::from(String::from("owned")), "owned");
        assert_eq!(DetailValue::from(std::borrow::Cow::Borrowed("static")), "static");
        let d = Decision::new("ratelimit", Outcome::Allow, ReasonCode::new("within_limit"))
            .with_detail("rule", Arc::<str>::from("per-ip"))
            .with_detail("remaining", 999_999_999u64);
        assert_eq!(
            serde_json::to_string(&d).unwrap(),
            r#"{"layer":"ratelimit","outcome":"allow","code":"within_limit","details":{"rule":"per-ip","remaining":"999999999"}}"#
        );
        assert_eq!(format!("{:?}", d.details[1].1), "\"999999999\"");
    }

    #[test]
    fn decisions_without_details_leave_the_member_out() {
        let d = Decision::new("validate", Outcome::Allow, ReasonCode::new("request_clean"));
        assert_eq!(
            serde_json::to_string(&d).unwrap(),
            r#"{"layer":"validate","outcome":"allow","code":"request_clean"}"#
        );
    }

    #[test]
    fn route_is_set_once() {
        let ctx = SecurityContext::new();
        ctx.set_route("/a/{id}".into());
        ctx.set_route("/other".into());
        assert_eq!(ctx.route().as_deref(), Some("/a/{id}"));
    }
}
