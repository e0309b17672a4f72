//! Mapping verified claims to a [`Principal`].

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use jsonwebtoken::Algorithm;
use msec_core::{AuthMethod, Principal, PrincipalKind};
use serde_json::{Map, Value};

use crate::error::{AuthnError, AuthnErrorKind};
use crate::keys::alg_name;

/// How the claims of a verified token become a [`Principal`].
///
/// - **subject**: `sub`, else `client_id`, else `azp` (a token with none of them is refused, `missing_claim`);
/// - **scopes**: `scope` (space-delimited string, RFC 8693 / RFC 9068) and `scp` (array, or space-delimited);
/// - **roles**: the string or array of strings at each configured claim path (default `roles`; e.g. `groups`,
///   Keycloak's `realm_access.roles`);
/// - **tenant**: the string at the tenant claim path (default `tenant`; e.g. Azure's `tid`);
/// - **client id**: `client_id`, else `azp`; **token id**: `jti`;
/// - **kind**: [`PrincipalKind::Service`] when the subject is the client id (a client-credentials token) or a
///   configured [`service_when`](Self::service_when) claim matches, else [`PrincipalKind::User`].
///
/// ```
/// use msec_authn::jwt::ClaimMapping;
/// let m = ClaimMapping::new()
///     .roles_claims(["realm_access.roles", "groups"])
///     .tenant_claim("tid")
///     .service_when("gty", "client-credentials");
/// # let _ = m;
/// ```
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub struct ClaimMapping {
    roles: Vec<String>,
    tenant: Option<String>,
    service_when: Vec<(String, Value)>,
}

impl Default for ClaimMapping {
    fn default() -> Self {
        Self::new()
    }
}

impl ClaimMapping {
    /// Roles from `roles`, tenant from `tenant`, no extra service rule.
    pub fn new() -> Self {
        Self {
            roles: vec!["roles".into()],
            tenant: Some("tenant".into()),
            service_when: Vec::new(),
        }
    }

    /// Reads roles from these claim paths (dotted; replaces the default `roles`). Values are merged.
    pub fn roles_claims<I, S>(mut self, paths: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.roles = paths.into_iter().map(Into::into).collect();
        self
    }

    /// Reads the tenant from this claim path.
    pub fn tenant_claim(mut self, path: impl Into<String>) -> Self {
        self.tenant = Some(path.into());
        self
    }

    /// Reads no tenant.
    pub fn no_tenant(mut self) -> Self {
        self.tenant = None;
        self
    }

    /// Marks the principal as a service when the claim at `path` equals `value` (e.g. Auth0's
    /// `gty = client-credentials`, Azure's `idtyp = app`).
    pub fn service_when(mut self, path: impl Into<String>, value: impl Into<Value>) -> Self {
        self.service_when.push((path.into(), value.into()));
        self
    }

    pub(crate) fn principal(
        &self,
        issuer: &str,
        alg: Algorithm,
        kid: Option<&str>,
        exp: Option<i64>,
        claims: Map<String, Value>,
    ) -> Result<Principal, AuthnError> {
        let s = |name: &str| claims.get(name).and_then(Value::as_str);
        let client_id = s("client_id").or_else(|| s("azp"));
        let subject = s("sub").or(client_id).ok_or_else(|| {
            AuthnError::new(
                AuthnErrorKind::MissingClaim,
                "`sub` is missing (and no `client_id` / `azp`)",
            )
        })?;
        let mut scopes: Vec<&str> = Vec::new();
        for name in ["scope", "scp"] {
            match claims.get(name) {
                None => {}
                Some(Value::String(v)) => scopes.extend(v.split(' ').filter(|x| !x.is_empty())),
                Some(Value::Array(a)) => {
                    for v in a {
                        let v = v.as_str().ok_or_else(|| {
                            AuthnError::new(AuthnErrorKind::InvalidClaim, format!("`{name}` holds a non-string"))
                        })?;
                        scopes.push(v);
                    }
                }
                Some(_) => {
                    return Err(AuthnError::new(
                        AuthnErrorKind::InvalidClaim,
                        format!("`{name}` has the wrong JSON type"),
                    ));
                }
            }
        }
        let mut roles: Vec<String> = Vec::new();
        for path in &self.roles {
            match claim_path(&claims, path) {
                Some(Value::String(r)) => push_unique(&mut roles, r),
                Some(Value::Array(a)) => a
                    .iter()
                    .filter_map(Value::as_str)
                    .for_each(|r| push_unique(&mut roles, r)),
                _ => {}
            }
        }
        let service = client_id.is_some_and(|c| c == subject)
            || self
                .service_when
                .iter()
                .any(|(path, value)| claim_path(&claims, path) == Some(value));
        let mut b = Principal::builder(subject)
            .issuer(issuer)
            .kind(if service {
                PrincipalKind::Service
            } else {
                PrincipalKind::User
            })
            .scopes(scopes)
            .roles(roles)
            .auth(AuthMethod::Jwt {
                alg: alg_name(alg).to_owned(),
                kid: kid.map(str::to_owned),
            });
        if let Some(t) = self
            .tenant
            .as_deref()
            .and_then(|p| claim_path(&claims, p))
            .and_then(Value::as_str)
        {
            b = b.tenant(t);
        }
        if let Some(c) = client_id {
            b = b.client_id(c);
        }
        if let Some(j) = s("jti") {
            b = b.token_id(j);
        }
        if let Some(exp) = exp {
            let t = u64::try_from(exp)
                .ok()
                .and_then(|e| SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(e)))
                .unwrap_or(SystemTime::UNIX_EPOCH);
            b = b.expires_at(t);
        }
        Ok(b.shared_claims(Arc::new(claims)).build())
    }
}

fn push_unique(v: &mut Vec<String>, s: &str) {
    if !v.iter().any(|x| x == s) {
        v.push(s.to_owned());
    }
}

/// Looks up a dotted claim path; an exact key wins (claim names may contain dots, e.g. URLs).
pub(crate) fn claim_path<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn maps_a_user_token() {
        let m = ClaimMapping::new()
            .roles_claims(["realm_access.roles", "groups"])
            .tenant_claim("tid");
        let p = m
            .principal(
                "https://id",
                Algorithm::RS256,
                Some("k1"),
                Some(4_102_444_800),
                map(json!({
                    "sub": "alice", "scope": "a b  c", "scp": ["d"], "tid": "t1", "azp": "web",
                    "realm_access": {"roles": ["admin", "user"]}, "groups": "user", "jti": "j1"
                })),
            )
            .unwrap();
        assert_eq!(p.subject, "alice");
        assert_eq!(p.scopes, ["a", "b", "c", "d"]);
        assert_eq!(p.roles, ["admin", "user"]);
        assert_eq!(p.tenant.as_deref(), Some("t1"));
        assert_eq!(p.client_id.as_deref(), Some("web"));
        assert_eq!(p.token_id.as_deref(), Some("j1"));
        assert_eq!(p.kind, PrincipalKind::User);
        assert_eq!(p.issuer.as_deref(), Some("https://id"));
        assert_eq!(
            p.auth,
            AuthMethod::Jwt {
                alg: "RS256".into(),
                kid: Some("k1".into())
            }
        );
        assert!(p.expires_at.is_some());
    }

    #[test]
    fn services_and_refusals() {
        let m = ClaimMapping::new().service_when("gty", "client-credentials");
        let p = m
            .principal("i", Algorithm::ES256, None, None, map(json!({"client_id": "svc"})))
            .unwrap();
        assert_eq!((p.subject.as_str(), p.kind), ("svc", PrincipalKind::Service));
        let p = m
            .principal(
                "i",
                Algorithm::ES256,
                None,
                None,
                map(json!({"sub": "x", "gty": "client-credentials"})),
            )
            .unwrap();
        assert_eq!(p.kind, PrincipalKind::Service);
        let e = m
            .principal("i", Algorithm::ES256, None, None, map(json!({"scope": "a"})))
            .unwrap_err();
        assert_eq!(e.kind(), AuthnErrorKind::MissingClaim);
        let e = m
            .principal("i", Algorithm::ES256, None, None, map(json!({"sub": "a", "scope": 5})))
            .unwrap_err();
        assert_eq!(e.kind(), AuthnErrorKind::InvalidClaim);
        let e = m
            .principal("i", Algorithm::ES256, None, None, map(json!({"sub": "a", "scp": [1]})))
            .unwrap_err();
        assert_eq!(e.kind(), AuthnErrorKind::InvalidClaim);
    }
}
