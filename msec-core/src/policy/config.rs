//! Loading policies from TOML and YAML.
//!
//! ```toml
//! mode = "enforce"            # or "shadow"
//!
//! [[rule]]
//! name = "read orders"
//! effect = "allow"            # or "deny"
//! routes = ["GET /v1/orders/{id}", "grpc /shop.Orders/Get"]
//! require = { any_scope = ["orders:read", "orders:admin"] }   # ALLOW rules: `require`
//!
//! [[rule]]
//! name = "quarantined network"
//! effect = "deny"
//! routes = ["*"]
//! when = { client_ip_in = ["192.0.2.0/24"] }                   # DENY rules: `when`
//! shadow = true
//! ```
//!
//! Requirements: `"public"`, `"authenticated"`, `{ scope = "s" }`, `{ any_scope = [..] }`,
//! `{ all_scopes = [..] }`, `{ role = "r" }`, `{ any_role = [..] }`,
//! `{ claim = { path = "p", equals = v } }`, `{ claim = { path = "p", contains = v } }`,
//! `{ issuer = "i" | [..] }`, `{ audience = "a" | [..] }`, `{ kind = "user" | "service" | "api_key" }`,
//! `{ peer_spiffe_id = "spiffe://.." | [..] }`, `{ peer_spiffe_prefix = "spiffe://td/path" }`,
//! `{ peer_trust_domain = "td" | [..] }`, `{ client_ip_in = ["cidr", ..] }`, `{ all = [..] }`, `{ any = [..] }`,
//! `{ not = .. }`, `{ custom = "name" }` (registered with
//! [`PolicyBuilder::register_custom`](super::PolicyBuilder::register_custom)).

#![cfg_attr(not(any(feature = "toml", feature = "yaml")), allow(dead_code))]

use serde::Deserialize;
use serde_json::Value;

use super::{Effect, PolicyBuilder, PolicyError, PolicyMode, Requirement};
use crate::identity::PrincipalKind;
use crate::spiffe::{SpiffeId, TrustDomain};

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum EffectSpec {
    Allow,
    Deny,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    name: String,
    effect: EffectSpec,
    routes: Vec<String>,
    #[serde(default)]
    require: Option<ReqSpec>,
    #[serde(default)]
    when: Option<ReqSpec>,
    #[serde(default)]
    shadow: bool,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            Self::One(s) => vec![s],
            Self::Many(v) => v,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClaimSpec {
    path: String,
    #[serde(default)]
    equals: Option<Value>,
    #[serde(default)]
    contains: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum KindSpec {
    User,
    Service,
    ApiKey,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum ReqSpec {
    Public,
    Authenticated,
    Scope(String),
    AnyScope(Vec<String>),
    AllScopes(Vec<String>),
    Role(String),
    AnyRole(Vec<String>),
    Claim(ClaimSpec),
    Issuer(OneOrMany),
    Audience(OneOrMany),
    Kind(KindSpec),
    PeerSpiffeId(OneOrMany),
    PeerSpiffePrefix(String),
    PeerTrustDomain(OneOrMany),
    ClientIpIn(Vec<String>),
    All(Vec<ReqSpec>),
    Any(Vec<ReqSpec>),
    Not(Box<ReqSpec>),
    Custom(String),
}

fn compile(spec: ReqSpec, b: &PolicyBuilder) -> Result<Requirement, String> {
    Ok(match spec {
        ReqSpec::Public => Requirement::Public,
        ReqSpec::Authenticated => Requirement::Authenticated,
        ReqSpec::Scope(s) => Requirement::AnyScope(vec![s]),
        ReqSpec::AnyScope(v) => Requirement::AnyScope(v),
        ReqSpec::AllScopes(v) => Requirement::AllScopes(v),
        ReqSpec::Role(r) => Requirement::AnyRole(vec![r]),
        ReqSpec::AnyRole(v) => Requirement::AnyRole(v),
        ReqSpec::Claim(c) => match (c.equals, c.contains) {
            (Some(v), None) => Requirement::ClaimEquals { path: c.path, value: v },
            (None, Some(v)) => Requirement::ClaimContains { path: c.path, value: v },
            _ => return Err("a claim requirement needs exactly one of `equals` and `contains`".into()),
        },
        ReqSpec::Issuer(v) => Requirement::AnyIssuer(v.into_vec()),
        ReqSpec::Audience(v) => Requirement::AnyAudience(v.into_vec()),
        ReqSpec::Kind(k) => Requirement::Kind(match k {
            KindSpec::User => PrincipalKind::User,
            KindSpec::Service => PrincipalKind::Service,
            KindSpec::ApiKey => PrincipalKind::ApiKey,
        }),
        ReqSpec::PeerSpiffeId(v) => Requirement::PeerSpiffeId(
            v.into_vec()
                .iter()
                .map(|s| SpiffeId::parse(s).map_err(|e| format!("invalid SPIFFE ID {s:?}: {e}")))
                .collect::<Result<_, _>>()?,
        ),
        ReqSpec::PeerSpiffePrefix(s) => {
            let id = SpiffeId::parse(s.strip_suffix('/').unwrap_or(&s))
                .map_err(|e| format!("invalid SPIFFE ID prefix {s:?}: {e}"))?;
            Requirement::PeerSpiffePrefix {
                trust_domain: id.trust_domain(),
                path: id.path().to_owned(),
            }
        }
        ReqSpec::PeerTrustDomain(v) => Requirement::PeerTrustDomain(
            v.into_vec()
                .iter()
                .map(|s| TrustDomain::new(s).map_err(|e| format!("invalid trust domain {s:?}: {e}")))
                .collect::<Result<_, _>>()?,
        ),
        ReqSpec::ClientIpIn(v) => Requirement::ClientIpIn(
            v.iter()
                .map(|s| {
                    s.parse::<ipnet::IpNet>()
                        .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                        .map_err(|_| format!("invalid network {s:?} (expected a CIDR like 10.0.0.0/8 or an address)"))
                })
                .collect::<Result<_, _>>()?,
        ),
        ReqSpec::All(v) => Requirement::All(v.into_iter().map(|r| compile(r, b)).collect::<Result<_, _>>()?),
        ReqSpec::Any(v) => Requirement::Any(v.into_iter().map(|r| compile(r, b)).collect::<Result<_, _>>()?),
        ReqSpec::Not(r) => Requirement::Not(Box::new(compile(*r, b)?)),
        ReqSpec::Custom(name) => match b.customs.get(&name) {
            Some(c) => Requirement::Custom(c.clone()),
            None => {
                return Err(format!(
                    "unknown custom requirement {name:?}: register it with `register_custom` first"
                ));
            }
        },
    })
}

/// A rule as found in a file, before deserialising its fields: its name (if readable) and body.
struct RawRule<V> {
    name: Option<String>,
    line: Option<usize>,
    value: V,
}

fn add_rule<V, E: std::fmt::Display>(
    mut b: PolicyBuilder,
    index: usize,
    raw: RawRule<V>,
    de: impl FnOnce(V) -> Result<RuleSpec, E>,
) -> Result<PolicyBuilder, PolicyError> {
    let err = |message: String| PolicyError::Rule {
        index: index + 1,
        name: raw.name.clone(),
        line: raw.line,
        message,
    };
    let spec = de(raw.value).map_err(|e| err(e.to_string()))?;
    let (effect, req) = match (spec.effect, spec.require, spec.when) {
        (EffectSpec::Allow, Some(r), None) => (Effect::Allow, r),
        (EffectSpec::Deny, None, Some(w)) => (Effect::Deny, w),
        (EffectSpec::Allow, _, _) => return Err(err("an allow rule needs `require` (and no `when`)".into())),
        (EffectSpec::Deny, _, _) => return Err(err("a deny rule needs `when` (and no `require`)".into())),
    };
    let req = compile(req, &b).map_err(err)?;
    b.rules.push((spec.name, effect, spec.routes, req, spec.shadow));
    Ok(b)
}

fn set_mode(mut b: PolicyBuilder, mode: Option<&str>) -> Result<PolicyBuilder, PolicyError> {
    match mode {
        None | Some("enforce") => {}
        Some("shadow") => b.mode = PolicyMode::Shadow,
        Some(other) => {
            return Err(PolicyError::Syntax(format!(
                "unknown mode {other:?}: expected \"enforce\" or \"shadow\""
            )));
        }
    }
    Ok(b)
}

#[cfg(feature = "toml")]
/// Line numbers (1-based) of `[[rule]]` / `[[rules]]` headers, in order.
fn toml_rule_lines(text: &str) -> Vec<usize> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| {
            let t: String = l.chars().filter(|c| !c.is_whitespace()).collect();
            t.starts_with("[[rule]]") || t.starts_with("[[rules]]")
        })
        .map(|(i, _)| i + 1)
        .collect()
}

#[cfg(feature = "toml")]
pub(super) fn load_toml(mut b: PolicyBuilder, text: &str) -> Result<PolicyBuilder, PolicyError> {
    let doc: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| PolicyError::Syntax(e.to_string()))?;
    for key in doc.keys() {
        if !matches!(key.as_str(), "mode" | "rule" | "rules") {
            return Err(PolicyError::Syntax(format!(
                "unknown top-level key {key:?}: expected `mode` and `[[rule]]` tables"
            )));
        }
    }
    let mode = match doc.get("mode") {
        None => None,
        Some(toml::Value::String(s)) => Some(s.as_str()),
        Some(_) => return Err(PolicyError::Syntax("`mode` must be a string".into())),
    };
    b = set_mode(b, mode)?;
    let lines = toml_rule_lines(text);
    let rules = match doc.get("rule").or_else(|| doc.get("rules")) {
        None => return Ok(b),
        Some(toml::Value::Array(a)) => a.clone(),
        Some(_) => {
            return Err(PolicyError::Syntax(
                "`rule` must be an array of tables ([[rule]])".into(),
            ));
        }
    };
    let base = b.rules.len();
    for (i, v) in rules.into_iter().enumerate() {
        let raw = RawRule {
            name: v.get("name").and_then(toml::Value::as_str).map(str::to_owned),
            line: lines.get(i).copied(),
            value: v,
        };
        b = add_rule(b, base + i, raw, |v| v.try_into::<RuleSpec>())?;
    }
    Ok(b)
}

#[cfg(feature = "yaml")]
pub(super) fn load_yaml(mut b: PolicyBuilder, text: &str) -> Result<PolicyBuilder, PolicyError> {
    use serde_norway::Value as Y;
    let doc: Y = serde_norway::from_str(text).map_err(|e| PolicyError::Syntax(e.to_string()))?;
    let map = match doc {
        Y::Mapping(m) => m,
        Y::Null => return Ok(b),
        _ => {
            return Err(PolicyError::Syntax(
                "a policy is a mapping with `mode` and `rules`".into(),
            ));
        }
    };
    for (k, _) in &map {
        match k.as_str() {
            Some("mode" | "rule" | "rules") => {}
            _ => {
                return Err(PolicyError::Syntax(format!(
                    "unknown top-level key {k:?}: expected `mode` and `rules`"
                )));
            }
        }
    }
    let mode = match map.get("mode") {
        None => None,
        Some(Y::String(s)) => Some(s.as_str()),
        Some(_) => return Err(PolicyError::Syntax("`mode` must be a string".into())),
    };
    b = set_mode(b, mode)?;
    let rules = match map.get("rules").or_else(|| map.get("rule")) {
        None => return Ok(b),
        Some(Y::Sequence(s)) => s.clone(),
        Some(_) => return Err(PolicyError::Syntax("`rules` must be a list".into())),
    };
    let base = b.rules.len();
    for (i, v) in rules.into_iter().enumerate() {
        let raw = RawRule {
            name: v.get("name").and_then(Y::as_str).map(str::to_owned),
            line: None,
            value: v,
        };
        // YAML enums are tagged (`!scope x`) for serde_norway; convert to JSON so that the `{ scope: x }` map form
        // used by the TOML files works the same.
        b = add_rule(b, base + i, raw, |v| {
            serde_json::to_value(v).and_then(serde_json::from_value::<RuleSpec>)
        })?;
    }
    Ok(b)
}
