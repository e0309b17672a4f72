//! Claim and `typ` validation (RFC 7519 §4.1, RFC 8725 §3.8–3.11, RFC 9068 §4), after the signature verified.

use serde_json::{Map, Value};

use crate::error::{AuthnError, AuthnErrorKind};

/// Which `typ` header values an issuer accepts (RFC 8725 §3.11 explicit typing). Compared case-insensitively,
/// with an optional `application/` prefix (RFC 7515 §4.1.9).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum TypPolicy {
    /// Absent, `JWT` or `at+jwt`: ordinary and RFC 9068 access tokens pass, other explicitly typed JWTs
    /// (`logout+jwt`, `dpop+jwt`, `secevent+jwt`, ...) are refused, so they cannot be replayed as access tokens.
    #[default]
    Default,
    /// Any `typ`, or none.
    Any,
    /// RFC 9068: `at+jwt` is required.
    AccessToken,
    /// One of `values`; absent only when `allow_absent`.
    OneOf {
        /// Accepted values (without `application/`).
        values: Vec<String>,
        /// Whether a token without `typ` passes.
        allow_absent: bool,
    },
}

impl TypPolicy {
    pub(crate) fn accepts(&self, typ: Option<&str>) -> bool {
        let norm = typ.map(|t| match (t.get(..12), t.get(12..)) {
            (Some(prefix), Some(rest)) if prefix.eq_ignore_ascii_case("application/") => rest,
            _ => t,
        });
        match (self, norm) {
            (Self::Any, _) => true,
            (Self::Default, None) => true,
            (Self::Default, Some(t)) => t.eq_ignore_ascii_case("jwt") || t.eq_ignore_ascii_case("at+jwt"),
            (Self::AccessToken, Some(t)) => t.eq_ignore_ascii_case("at+jwt"),
            (Self::AccessToken, None) => false,
            (Self::OneOf { allow_absent, .. }, None) => *allow_absent,
            (Self::OneOf { values, .. }, Some(t)) => values.iter().any(|v| v.eq_ignore_ascii_case(t)),
        }
    }
}

/// The checks of one issuer.
#[derive(Debug, Clone)]
pub(crate) struct ClaimRules {
    pub(crate) audiences: Vec<String>,
    pub(crate) any_audience: bool,
    pub(crate) leeway: i64,
    pub(crate) max_lifetime: Option<i64>,
    pub(crate) require_exp: bool,
    pub(crate) required: Vec<String>,
    pub(crate) typ: TypPolicy,
}

fn invalid(claim: &str) -> AuthnError {
    AuthnError::new(
        AuthnErrorKind::InvalidClaim,
        format!("`{claim}` has the wrong JSON type"),
    )
}

fn missing(claim: &str) -> AuthnError {
    AuthnError::new(AuthnErrorKind::MissingClaim, format!("`{claim}` is missing"))
}

/// A NumericDate (RFC 7519 §2): a JSON number. Strings, booleans, `null`, arrays are rejections, never skipped
/// checks. Fractions are truncated toward negative infinity.
pub(crate) fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, AuthnError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                Ok(Some(i))
            } else if n.as_u64().is_some() {
                Ok(Some(i64::MAX))
            } else {
                match n.as_f64() {
                    #[allow(clippy::cast_possible_truncation)]
                    Some(f) if f.is_finite() => Ok(Some(f.floor().clamp(i64::MIN as f64, i64::MAX as f64) as i64)),
                    _ => Err(invalid(name)),
                }
            }
        }
        Some(_) => Err(invalid(name)),
    }
}

/// An optional string claim; another JSON type is a rejection.
pub(crate) fn opt_str<'a>(claims: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, AuthnError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid(name)),
    }
}

impl ClaimRules {
    /// Validates `typ` and the claims at `now` (Unix seconds). Returns `exp`.
    pub(crate) fn check(
        &self,
        typ: Option<&str>,
        claims: &Map<String, Value>,
        now: i64,
    ) -> Result<Option<i64>, AuthnError> {
        if !self.typ.accepts(typ) {
            return Err(AuthnError::new(
                AuthnErrorKind::BadTyp,
                format!("typ {:?}", typ.map(crate::util::sanitize)),
            ));
        }
        let exp = numeric_date(claims, "exp")?;
        let nbf = numeric_date(claims, "nbf")?;
        let iat = numeric_date(claims, "iat")?;
        let leeway = self.leeway;
        match exp {
            None if self.require_exp => return Err(missing("exp")),
            Some(exp) if now >= exp.saturating_add(leeway) => {
                return Err(AuthnError::new(
                    AuthnErrorKind::TokenExpired,
                    format!("exp {exp} is not after now {now} (leeway {leeway}s)"),
                ));
            }
            _ => {}
        }
        if let Some(nbf) = nbf
            && now.saturating_add(leeway) < nbf
        {
            return Err(AuthnError::new(
                AuthnErrorKind::TokenNotYetValid,
                format!("nbf {nbf} is after now {now} (leeway {leeway}s)"),
            ));
        }
        if let Some(iat) = iat
            && iat > now.saturating_add(leeway)
        {
            return Err(AuthnError::new(
                AuthnErrorKind::TokenNotYetValid,
                format!("iat {iat} is in the future (now {now}, leeway {leeway}s)"),
            ));
        }
        if let Some(max) = self.max_lifetime {
            let start = iat.unwrap_or(now);
            let too_long = exp.is_none_or(|exp| exp.saturating_sub(start) > max.saturating_add(leeway));
            if too_long {
                return Err(AuthnError::new(
                    AuthnErrorKind::TokenLifetimeTooLong,
                    format!("lifetime above {max}s"),
                ));
            }
        }
        self.check_audience(claims)?;
        for name in ["sub", "jti", "client_id", "azp"] {
            opt_str(claims, name)?;
        }
        for name in &self.required {
            if claims.get(name).is_none_or(Value::is_null) {
                return Err(missing(name));
            }
        }
        Ok(exp)
    }

    fn check_audience(&self, claims: &Map<String, Value>) -> Result<(), AuthnError> {
        let matches = |a: &str| self.audiences.iter().any(|x| x == a);
        let hit = match claims.get("aud") {
            None if self.any_audience => true,
            None => return Err(missing("aud")),
            Some(Value::String(a)) => self.any_audience || matches(a),
            Some(Value::Array(list)) => {
                let mut hit = self.any_audience;
                for v in list {
                    let a = v.as_str().ok_or_else(|| invalid("aud"))?;
                    hit |= matches(a);
                }
                hit
            }
            Some(_) => return Err(invalid("aud")),
        };
        if hit {
            Ok(())
        } else {
            Err(AuthnError::new(
                AuthnErrorKind::AudienceMismatch,
                "no configured audience in `aud`",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules() -> ClaimRules {
        ClaimRules {
            audiences: vec!["api".into()],
            any_audience: false,
            leeway: 60,
            max_lifetime: None,
            require_exp: true,
            required: vec![],
            typ: TypPolicy::Default,
        }
    }

    fn check(r: &ClaimRules, c: Value) -> Result<Option<i64>, AuthnErrorKind> {
        r.check(Some("JWT"), c.as_object().unwrap(), 1000).map_err(|e| e.kind())
    }

    #[test]
    fn times() {
        use AuthnErrorKind::*;
        let r = rules();
        assert_eq!(check(&r, json!({"aud":"api","exp":2000})), Ok(Some(2000)));
        assert_eq!(check(&r, json!({"aud":"api","exp":1000})), Ok(Some(1000)), "leeway");
        assert_eq!(check(&r, json!({"aud":"api","exp":940})), Err(TokenExpired));
        assert_eq!(check(&r, json!({"aud":"api","exp":"2000"})), Err(InvalidClaim));
        assert_eq!(check(&r, json!({"aud":"api","exp":null})), Err(InvalidClaim));
        assert_eq!(check(&r, json!({"aud":"api","exp":2000.9})), Ok(Some(2000)));
        assert_eq!(check(&r, json!({"aud":"api","exp":f64::INFINITY})), Err(InvalidClaim));
        assert_eq!(check(&r, json!({"aud":"api"})), Err(MissingClaim));
        assert_eq!(
            check(&r, json!({"aud":"api","exp":2000,"nbf":1061})),
            Err(TokenNotYetValid)
        );
        assert_eq!(check(&r, json!({"aud":"api","exp":2000,"nbf":1060})), Ok(Some(2000)));
        assert_eq!(check(&r, json!({"aud":"api","exp":2000,"nbf":"0"})), Err(InvalidClaim));
        assert_eq!(
            check(&r, json!({"aud":"api","exp":2000,"iat":1061})),
            Err(TokenNotYetValid)
        );
        assert_eq!(check(&r, json!({"aud":"api","exp":2000,"iat":[1]})), Err(InvalidClaim));
        assert_eq!(check(&r, json!({"aud":"api","exp":u64::MAX})), Ok(Some(i64::MAX)));
        let mut r2 = rules();
        r2.max_lifetime = Some(300);
        assert_eq!(check(&r2, json!({"aud":"api","exp":1300,"iat":1000})), Ok(Some(1300)));
        assert_eq!(
            check(&r2, json!({"aud":"api","exp":1400,"iat":1000})),
            Err(TokenLifetimeTooLong)
        );
        assert_eq!(check(&r2, json!({"aud":"api","exp":9000})), Err(TokenLifetimeTooLong));
    }

    #[test]
    fn audiences_and_required() {
        use AuthnErrorKind::*;
        let r = rules();
        assert_eq!(check(&r, json!({"aud":["x","api"],"exp":2000})), Ok(Some(2000)));
        assert_eq!(check(&r, json!({"aud":["x"],"exp":2000})), Err(AudienceMismatch));
        assert_eq!(check(&r, json!({"aud":[],"exp":2000})), Err(AudienceMismatch));
        assert_eq!(check(&r, json!({"aud":"API","exp":2000})), Err(AudienceMismatch));
        assert_eq!(check(&r, json!({"aud":["api",1],"exp":2000})), Err(InvalidClaim));
        assert_eq!(check(&r, json!({"aud":{"a":1},"exp":2000})), Err(InvalidClaim));
        assert_eq!(check(&r, json!({"exp":2000})), Err(MissingClaim));
        assert_eq!(check(&r, json!({"aud":"api","exp":2000,"sub":7})), Err(InvalidClaim));
        let mut r2 = rules();
        r2.required = vec!["tenant".into()];
        assert_eq!(check(&r2, json!({"aud":"api","exp":2000})), Err(MissingClaim));
        assert_eq!(
            check(&r2, json!({"aud":"api","exp":2000,"tenant":null})),
            Err(MissingClaim)
        );
        assert_eq!(check(&r2, json!({"aud":"api","exp":2000,"tenant":"t"})), Ok(Some(2000)));
        assert_eq!(
            check(&r2, json!({"aud":"api","exp":2000,"tenant":"t","jti":null})),
            Err(InvalidClaim)
        );
        let mut any = rules();
        any.any_audience = true;
        assert_eq!(check(&any, json!({"exp":2000})), Ok(Some(2000)));
        assert_eq!(check(&any, json!({"aud":5,"exp":2000})), Err(InvalidClaim));
    }

    #[test]
    fn typ_policies() {
        let d = TypPolicy::Default;
        assert!(d.accepts(None) && d.accepts(Some("JWT")) && d.accepts(Some("application/at+JWT")));
        assert!(!d.accepts(Some("logout+jwt")) && !d.accepts(Some("dpop+jwt")));
        let at = TypPolicy::AccessToken;
        assert!(at.accepts(Some("at+jwt")) && at.accepts(Some("application/at+jwt")));
        assert!(!at.accepts(None) && !at.accepts(Some("JWT")));
        assert!(TypPolicy::Any.accepts(Some("whatever")));
        assert!(!d.accepts(Some("applicationé/jwt")) && !d.accepts(Some("ééééééé")));
        let one = TypPolicy::OneOf {
            values: vec!["secevent+jwt".into()],
            allow_absent: false,
        };
        assert!(one.accepts(Some("application/secevent+jwt")) && !one.accepts(None));
    }
}
