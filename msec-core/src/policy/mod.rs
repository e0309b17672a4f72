//! Authorization: a [`Policy`] of ALLOW and DENY rules bound to routes, enforced by [`AuthorizeLayer`].
//!
//! # Semantics
//!
//! 1. **DENY rules first.** Every DENY rule whose routes match the request (at any specificity) is evaluated;
//!    if one's condition holds, the request is denied (`policy_denied`, 403). A DENY rule marked `shadow` only
//!    records a `shadow_deny` decision.
//! 2. **The most specific route decides.** Among the routes that have ALLOW rules for this method, the most
//!    specific one (static segment beats `{param}` beats `{*catch_all}` beats `*`) is chosen, and the request is
//!    allowed if any of *its* ALLOW rules holds. Broader ALLOW rules do not rescue a request that a more specific
//!    route refuses.
//! 3. **Deny by default.** No ALLOW rule for the route: denied (`no_matching_rule`, 403).
//!
//! A refused request gets 401 `missing_credentials` when the failing rule needs a principal and there is none,
//! 403 `insufficient_scope` (with the RFC 6750 `scope`) when scopes are missing, or 403 with the specific code
//! (`missing_role`, `peer_not_allowed`, `client_ip_not_allowed`, ...). In **shadow mode** the whole policy only
//! records what it would have done.
//!
//! ```
//! use msec_core::policy::{Policy, Requirement};
//!
//! let policy = Policy::builder()
//!     .allow("health", ["GET /healthz"], Requirement::Public)
//!     .allow("read orders", ["GET /v1/orders/{id}"], Requirement::scope("orders:read"))
//!     .allow("write orders", ["POST /v1/orders"], Requirement::scope("orders:write"))
//!     .deny("no orders for banned tenant", ["/v1/{*rest}"], Requirement::claim_equals("tenant", "banned"))
//!     .build()?;
//!
//! // The same policy as a file:
//! let from_file = Policy::from_toml(r#"
//!     [[rule]]
//!     name = "health"
//!     effect = "allow"
//!     routes = ["GET /healthz"]
//!     require = "public"
//!
//!     [[rule]]
//!     name = "read orders"
//!     effect = "allow"
//!     routes = ["GET /v1/orders/{id}"]
//!     require = { scope = "orders:read" }
//!
//!     [[rule]]
//!     name = "write orders"
//!     effect = "allow"
//!     routes = ["POST /v1/orders"]
//!     require = { scope = "orders:write" }
//!
//!     [[rule]]
//!     name = "no orders for banned tenant"
//!     effect = "deny"
//!     routes = ["/v1/{*rest}"]
//!     when = { claim = { path = "tenant", equals = "banned" } }
//! "#)?;
//! assert_eq!(policy, from_file);
//! # Ok::<(), msec_core::policy::PolicyError>(())
//! ```

mod config;
mod layer;
mod requirement;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

pub use layer::{Authorize, AuthorizeLayer};
pub use requirement::{CustomRequirement, RequestFacts, Requirement};

use crate::context::{Outcome, ReasonCode};
use crate::rejection::Rejection;
use crate::route::{RouteSpec, RouteTable};
use requirement::Failure;

/// What a rule does when it applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Effect {
    /// Allow requests that satisfy the requirement.
    Allow,
    /// Deny requests that satisfy the condition.
    Deny,
}

/// Whether a policy enforces its decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PolicyMode {
    /// Refuse denied requests.
    #[default]
    Enforce,
    /// Record what would have been refused, refuse nothing.
    Shadow,
}

/// One rule of a [`Policy`].
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    name: Arc<str>,
    effect: Effect,
    routes: Vec<RouteSpec>,
    requirement: Requirement,
    shadow: bool,
}

impl Rule {
    /// The rule's name (unique within its policy; recorded in decisions).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// ALLOW or DENY.
    pub fn effect(&self) -> Effect {
        self.effect
    }
    /// The routes it applies to.
    pub fn routes(&self) -> &[RouteSpec] {
        &self.routes
    }
    /// The requirement (ALLOW) or condition (DENY).
    pub fn requirement(&self) -> &Requirement {
        &self.requirement
    }
    /// True for a DENY rule that only records.
    pub fn is_shadow(&self) -> bool {
        self.shadow
    }
}

/// Why a policy could not be built or loaded. The message names the rule (and, for files, the line).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The file is not valid TOML/YAML, or has an unexpected shape outside any rule.
    #[error("invalid policy file: {0}")]
    Syntax(String),
    /// A rule is invalid.
    #[error("rule #{index}{name}{line}: {message}", name = .name.as_ref().map(|n| format!(" {n:?}")).unwrap_or_default(), line = .line.map(|l| format!(" (line {l})")).unwrap_or_default())]
    Rule {
        /// 1-based position of the rule.
        index: usize,
        /// The rule's name, if it has one.
        name: Option<String>,
        /// The line where the rule starts, when known.
        line: Option<usize>,
        /// What is wrong.
        message: String,
    },
}

impl PolicyError {
    fn rule(index: usize, name: &str, message: impl Into<String>) -> Self {
        Self::Rule {
            index: index + 1,
            name: Some(name.to_owned()).filter(|n| !n.is_empty()),
            line: None,
            message: message.into(),
        }
    }
}

/// An authorization policy. Cheap to clone (shared).
///
/// See the [module docs](self) for semantics and an example.
#[derive(Clone)]
pub struct Policy {
    inner: Arc<Inner>,
}

struct Inner {
    rules: Vec<Rule>,
    mode: PolicyMode,
    table: RouteTable<usize>,
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("mode", &self.inner.mode)
            .field("rules", &self.inner.rules)
            .finish()
    }
}

impl PartialEq for Policy {
    fn eq(&self, other: &Self) -> bool {
        self.inner.mode == other.inner.mode && self.inner.rules == other.inner.rules
    }
}

/// The result of evaluating a policy for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Evaluation {
    /// Allow, deny, or (shadow mode) shadow-deny.
    pub outcome: Outcome,
    /// The reason code.
    pub code: ReasonCode,
    /// The deciding rule, if one decided.
    pub rule: Option<Arc<str>>,
    /// The most specific matching route template, if any.
    pub route: Option<Arc<str>>,
    /// Shadow DENY rules that fired, by name.
    pub shadow_denials: Vec<Arc<str>>,
    /// Scopes that would have satisfied the route, for `insufficient_scope`.
    pub missing_scopes: Vec<String>,
}

impl Evaluation {
    /// The rejection to send when the outcome is [`Outcome::Deny`].
    pub fn rejection(&self) -> Option<Rejection> {
        if self.outcome != Outcome::Deny {
            return None;
        }
        Some(rejection_for(self.code, &self.missing_scopes))
    }
}

fn rejection_for(code: ReasonCode, missing_scopes: &[String]) -> Rejection {
    match code {
        ReasonCode::MISSING_CREDENTIALS => Rejection::missing_credentials(),
        ReasonCode::INSUFFICIENT_SCOPE => Rejection::insufficient_scope(missing_scopes.iter().cloned()),
        ReasonCode::NO_MATCHING_RULE | ReasonCode::POLICY_DENIED => {
            Rejection::forbidden(code, "access to this resource is denied")
        }
        ReasonCode::MISSING_PEER_IDENTITY => Rejection::forbidden(code, "this resource requires a client certificate"),
        ReasonCode::PEER_NOT_ALLOWED => {
            Rejection::forbidden(code, "the calling service is not allowed to access this resource")
        }
        ReasonCode::CLIENT_IP_NOT_ALLOWED => Rejection::forbidden(code, "access from this network is not allowed"),
        _ => Rejection::forbidden(code, "the principal is not allowed to access this resource"),
    }
}

impl Policy {
    /// Starts building a policy in code.
    pub fn builder() -> PolicyBuilder {
        PolicyBuilder::default()
    }

    /// Loads a policy from TOML (see the [module docs](self) for the format).
    #[cfg(feature = "toml")]
    pub fn from_toml(text: &str) -> Result<Self, PolicyError> {
        Self::builder().load_toml(text)?.build()
    }

    /// Loads a policy from YAML (the same structure as TOML: `mode`, and a `rules` list).
    #[cfg(feature = "yaml")]
    pub fn from_yaml(text: &str) -> Result<Self, PolicyError> {
        Self::builder().load_yaml(text)?.build()
    }

    /// The rules, in order.
    pub fn rules(&self) -> &[Rule] {
        &self.inner.rules
    }

    /// Enforce or shadow.
    pub fn mode(&self) -> PolicyMode {
        self.inner.mode
    }

    /// Decides about a request.
    pub fn evaluate(&self, facts: &RequestFacts<'_>) -> Evaluation {
        let inner = &*self.inner;
        let mut route: Option<Arc<str>> = None;
        let mut shadow_denials = Vec::new();
        let mut deny: Option<Arc<str>> = None;
        // The ALLOW group: rules of the most specific route (same template, or all `*` rules).
        let mut allow_group: Vec<usize> = Vec::new();
        let mut group_template: Option<Option<Arc<str>>> = None;

        for entry in inner.table.matches(facts.method, facts.path) {
            let rule = &inner.rules[entry.value];
            if route.is_none() {
                route = entry.spec.template().cloned();
            }
            match rule.effect {
                Effect::Deny => {
                    if deny.is_none() && rule.requirement.holds(facts) {
                        if rule.shadow {
                            shadow_denials.push(rule.name.clone());
                        } else {
                            deny = Some(rule.name.clone());
                        }
                    }
                }
                Effect::Allow => {
                    let t = entry.spec.template().cloned();
                    match &group_template {
                        None => {
                            group_template = Some(t);
                            allow_group.push(entry.value);
                        }
                        Some(g) if *g == t => allow_group.push(entry.value),
                        Some(_) => {}
                    }
                }
            }
        }

        let mut eval = Evaluation {
            outcome: Outcome::Deny,
            code: ReasonCode::POLICY_DENIED,
            rule: None,
            route,
            shadow_denials,
            missing_scopes: Vec::new(),
        };
        if let Some(rule) = deny {
            eval.rule = Some(rule);
        } else if allow_group.is_empty() {
            eval.code = ReasonCode::NO_MATCHING_RULE;
        } else {
            let mut failures = Vec::with_capacity(allow_group.len());
            let mut first_failed: Option<Arc<str>> = None;
            for i in allow_group {
                let rule = &inner.rules[i];
                match rule.requirement.check(facts) {
                    Ok(()) => {
                        eval.outcome = Outcome::Allow;
                        eval.code = ReasonCode::POLICY_ALLOWED;
                        eval.rule = Some(rule.name.clone());
                        return eval;
                    }
                    Err(f) => {
                        first_failed.get_or_insert_with(|| rule.name.clone());
                        failures.push(f);
                    }
                }
            }
            eval.rule = first_failed;
            match requirement::combine_any(failures) {
                Failure::NeedsPrincipal => eval.code = ReasonCode::MISSING_CREDENTIALS,
                Failure::MissingScopes(s) => {
                    eval.code = ReasonCode::INSUFFICIENT_SCOPE;
                    eval.missing_scopes = s;
                }
                Failure::Code(c) => eval.code = c,
            }
        }
        if inner.mode == PolicyMode::Shadow {
            eval.outcome = Outcome::ShadowDeny;
        }
        eval
    }
}

/// Builds a [`Policy`] in code, from files, or both.
#[derive(Default)]
#[must_use]
pub struct PolicyBuilder {
    rules: Vec<(String, Effect, Vec<String>, Requirement, bool)>,
    mode: PolicyMode,
    customs: HashMap<String, CustomRequirement>,
    error: Option<PolicyError>,
}

impl fmt::Debug for PolicyBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyBuilder")
            .field("rules", &self.rules.len())
            .field("mode", &self.mode)
            .finish()
    }
}

impl PolicyBuilder {
    /// Adds an ALLOW rule: on `routes`, requests satisfying `requirement` are allowed.
    pub fn allow<I, S>(self, name: &str, routes: I, requirement: Requirement) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.rule(name, Effect::Allow, routes, requirement, false)
    }

    /// Adds a DENY rule: on `routes`, requests satisfying `condition` are denied.
    pub fn deny<I, S>(self, name: &str, routes: I, condition: Requirement) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.rule(name, Effect::Deny, routes, condition, false)
    }

    /// Adds a DENY rule that only records `shadow_deny` decisions.
    pub fn shadow_deny<I, S>(self, name: &str, routes: I, condition: Requirement) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.rule(name, Effect::Deny, routes, condition, true)
    }

    fn rule<I, S>(mut self, name: &str, effect: Effect, routes: I, req: Requirement, shadow: bool) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let routes = routes.into_iter().map(|s| s.as_ref().to_owned()).collect();
        self.rules.push((name.to_owned(), effect, routes, req, shadow));
        self
    }

    /// Sets the mode (default [`PolicyMode::Enforce`]).
    pub fn mode(mut self, mode: PolicyMode) -> Self {
        self.mode = mode;
        self
    }

    /// Registers a named predicate that files can use as `{ custom = "name" }`.
    pub fn register_custom(
        mut self,
        name: &str,
        f: impl Fn(&RequestFacts<'_>) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.customs.insert(name.to_owned(), CustomRequirement::new(name, f));
        self
    }

    /// Adds the rules (and mode) of a TOML policy file.
    #[cfg(feature = "toml")]
    pub fn load_toml(self, text: &str) -> Result<Self, PolicyError> {
        config::load_toml(self, text)
    }

    /// Adds the rules (and mode) of a YAML policy file.
    #[cfg(feature = "yaml")]
    pub fn load_yaml(self, text: &str) -> Result<Self, PolicyError> {
        config::load_yaml(self, text)
    }

    /// Validates and builds the policy.
    pub fn build(self) -> Result<Policy, PolicyError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let mut rules = Vec::with_capacity(self.rules.len());
        let mut table = RouteTable::new();
        let mut names = HashMap::new();
        for (i, (name, effect, routes, requirement, shadow)) in self.rules.into_iter().enumerate() {
            if name.trim().is_empty() {
                return Err(PolicyError::rule(i, &name, "a rule needs a name"));
            }
            if let Some(prev) = names.insert(name.clone(), i) {
                return Err(PolicyError::rule(
                    i,
                    &name,
                    format!("duplicate rule name (also rule #{})", prev + 1),
                ));
            }
            if routes.is_empty() {
                return Err(PolicyError::rule(
                    i,
                    &name,
                    "a rule needs at least one route (`*` for all)",
                ));
            }
            if shadow && effect == Effect::Allow {
                return Err(PolicyError::rule(
                    i,
                    &name,
                    "only DENY rules can be shadow rules; use a shadow-mode policy to try ALLOW rules",
                ));
            }
            validate_requirement(&requirement).map_err(|m| PolicyError::rule(i, &name, m))?;
            let mut specs = Vec::with_capacity(routes.len());
            for r in &routes {
                let spec = RouteSpec::parse(r).map_err(|e| PolicyError::rule(i, &name, e.to_string()))?;
                table.insert(spec.clone(), i);
                specs.push(spec);
            }
            rules.push(Rule {
                name: Arc::from(name),
                effect,
                routes: specs,
                requirement,
                shadow,
            });
        }
        Ok(Policy {
            inner: Arc::new(Inner {
                rules,
                mode: self.mode,
                table,
            }),
        })
    }
}

fn validate_requirement(r: &Requirement) -> Result<(), String> {
    let nonempty = |v: &[String], what: &str| {
        if v.is_empty() || v.iter().any(|s| s.is_empty()) {
            Err(format!("{what} must be a non-empty list of non-empty strings"))
        } else {
            Ok(())
        }
    };
    match r {
        Requirement::AnyScope(v) | Requirement::AllScopes(v) => nonempty(v, "scopes"),
        Requirement::AnyRole(v) => nonempty(v, "roles"),
        Requirement::AnyIssuer(v) => nonempty(v, "issuers"),
        Requirement::AnyAudience(v) => nonempty(v, "audiences"),
        Requirement::PeerSpiffeId(v) if v.is_empty() => Err("peer SPIFFE IDs must not be empty".into()),
        Requirement::PeerTrustDomain(v) if v.is_empty() => Err("trust domains must not be empty".into()),
        Requirement::ClientIpIn(v) if v.is_empty() => Err("networks must not be empty".into()),
        Requirement::ClaimEquals { path, .. } | Requirement::ClaimContains { path, .. } if path.is_empty() => {
            Err("a claim path must not be empty".into())
        }
        Requirement::All(v) | Requirement::Any(v) => {
            if v.is_empty() {
                return Err("`all` / `any` need at least one requirement".into());
            }
            v.iter().try_for_each(validate_requirement)
        }
        Requirement::Not(r) => validate_requirement(r),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
