//! [`Issuer`]: what one token issuer is trusted for, and where its keys come from.

use std::fmt;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use msec_core::secret::SecretBytes;
use serde_json::Value;

use super::claims::TypPolicy;
use super::mapping::ClaimMapping;
use crate::keys::ASYMMETRIC;

#[derive(Clone)]
pub(crate) enum KeySpec {
    JwksUrl(String),
    OidcDiscovery,
    Rfc8414Discovery,
    JwkSet(Value),
    JwkSetJson(String),
    Pem {
        kid: Option<String>,
        alg: Algorithm,
        pem: Vec<u8>,
    },
    Hmac {
        kid: Option<String>,
        alg: Algorithm,
        secret: SecretBytes,
    },
}

impl fmt::Debug for KeySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::JwksUrl(u) => write!(f, "JwksUrl({u})"),
            Self::OidcDiscovery => f.write_str("OidcDiscovery"),
            Self::Rfc8414Discovery => f.write_str("Rfc8414Discovery"),
            Self::JwkSet(_) | Self::JwkSetJson(_) => f.write_str("JwkSet"),
            Self::Pem { kid, alg, .. } => write!(f, "Pem({kid:?}, {alg:?})"),
            Self::Hmac { kid, alg, .. } => write!(f, "Hmac({kid:?}, {alg:?}, [REDACTED])"),
        }
    }
}

impl KeySpec {
    pub(crate) fn is_remote(&self) -> bool {
        matches!(self, Self::JwksUrl(_) | Self::OidcDiscovery | Self::Rfc8414Discovery)
    }
}

/// One trusted token issuer: its `iss`, the audiences it may issue tokens for, its algorithms, its claim rules,
/// and its keys.
///
/// Tokens are routed to their issuer by their (unverified) `iss`, then verified only with that issuer's keys,
/// so several issuers (tenants) can be trusted at once without one's keys ever verifying another's tokens.
///
/// ```
/// use std::time::Duration;
/// use jsonwebtoken::Algorithm;
/// use msec_authn::jwt::{ClaimMapping, Issuer, TypPolicy};
///
/// let keycloak = Issuer::new("https://sso.example.com/realms/shop")
///     .audience("orders-api")
///     .oidc_discovery()
///     .algorithms([Algorithm::RS256, Algorithm::ES256])
///     .leeway(Duration::from_secs(30))
///     .max_lifetime(Duration::from_secs(3600))
///     .claims(ClaimMapping::new().roles_claims(["realm_access.roles"]));
/// let strict = Issuer::new("https://as.example.com")
///     .audience("https://api.example.com")
///     .jwks_url("https://as.example.com/jwks")
///     .rfc9068_profile();
/// # let _ = (keycloak, strict);
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct Issuer {
    pub(crate) issuer: String,
    pub(crate) audiences: Vec<String>,
    pub(crate) any_audience: bool,
    pub(crate) algorithms: Option<Vec<Algorithm>>,
    pub(crate) rsa_default_alg: Algorithm,
    pub(crate) leeway: Duration,
    pub(crate) max_lifetime: Option<Duration>,
    pub(crate) require_exp: bool,
    pub(crate) required: Vec<String>,
    pub(crate) typ: TypPolicy,
    pub(crate) mapping: ClaimMapping,
    pub(crate) keys: Vec<KeySpec>,
    pub(crate) max_keys: usize,
}

impl Issuer {
    /// An issuer whose tokens carry exactly this `iss` (compared byte for byte). Defaults: every asymmetric
    /// algorithm, 60 s leeway, `exp` required, [`TypPolicy::Default`], [`ClaimMapping::new`].
    pub fn new(issuer: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audiences: Vec::new(),
            any_audience: false,
            algorithms: None,
            rsa_default_alg: Algorithm::RS256,
            leeway: Duration::from_secs(60),
            max_lifetime: None,
            require_exp: true,
            required: Vec::new(),
            typ: TypPolicy::Default,
            mapping: ClaimMapping::new(),
            keys: Vec::new(),
            max_keys: 100,
        }
    }

    /// Accepts tokens whose `aud` contains `aud` (may be called several times: any one suffices).
    pub fn audience(mut self, aud: impl Into<String>) -> Self {
        self.audiences.push(aud.into());
        self
    }

    /// Accepts tokens whose `aud` contains any of these.
    pub fn audiences<I, S>(mut self, auds: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.audiences.extend(auds.into_iter().map(Into::into));
        self
    }

    /// **Dangerous**: skips the audience check, so a token this issuer minted for any other service is accepted
    /// here (RFC 8725 §3.9). Per-route audience rules can still be expressed with the policy's
    /// `Requirement::AnyAudience`.
    pub fn danger_accept_any_audience(mut self) -> Self {
        self.any_audience = true;
        self
    }

    /// The algorithms this issuer may use (default: RS256/384/512, PS256/384/512, ES256, ES384, EdDSA; HMAC
    /// algorithms are added for configured [`hmac_secret`](Self::hmac_secret)s).
    pub fn algorithms<I: IntoIterator<Item = Algorithm>>(mut self, algs: I) -> Self {
        self.algorithms = Some(algs.into_iter().collect());
        self
    }

    /// The algorithm an RSA JWK without `alg` is bound to (default RS256).
    pub fn rsa_default_alg(mut self, alg: Algorithm) -> Self {
        self.rsa_default_alg = alg;
        self
    }

    /// Clock skew tolerated on `exp`, `nbf` and `iat` (default 60 s).
    pub fn leeway(mut self, d: Duration) -> Self {
        self.leeway = d;
        self
    }

    /// Refuses tokens living longer than `d` (`exp - iat`, or `exp - now` without `iat`).
    pub fn max_lifetime(mut self, d: Duration) -> Self {
        self.max_lifetime = Some(d);
        self
    }

    /// **Dangerous**: accepts tokens without `exp` (they never expire).
    pub fn danger_allow_missing_exp(mut self) -> Self {
        self.require_exp = false;
        self
    }

    /// Requires these claims to be present (not `null`).
    pub fn require_claims<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        for n in names {
            let n = n.into();
            if !self.required.contains(&n) {
                self.required.push(n);
            }
        }
        self
    }

    /// Sets the `typ` policy.
    pub fn typ(mut self, policy: TypPolicy) -> Self {
        self.typ = policy;
        self
    }

    /// The strict RFC 9068 JWT access-token profile: `typ` must be `at+jwt`, and `iss`, `exp`, `aud`, `sub`,
    /// `client_id`, `iat` and `jti` are required.
    pub fn rfc9068_profile(self) -> Self {
        self.typ(TypPolicy::AccessToken)
            .require_claims(["iss", "exp", "aud", "sub", "client_id", "iat", "jti"])
    }

    /// Sets how claims become a principal.
    pub fn claims(mut self, mapping: ClaimMapping) -> Self {
        self.mapping = mapping;
        self
    }

    /// The most keys taken from one JWK set (default 100; the rest are ignored).
    pub fn max_keys(mut self, n: usize) -> Self {
        self.max_keys = n;
        self
    }

    /// Keys from a JWKS URL (HTTPS).
    pub fn jwks_url(mut self, url: impl Into<String>) -> Self {
        self.keys.push(KeySpec::JwksUrl(url.into()));
        self
    }

    /// Keys found through OIDC discovery: `{issuer}/.well-known/openid-configuration`, whose `issuer` must equal
    /// this issuer, names the `jwks_uri`.
    pub fn oidc_discovery(mut self) -> Self {
        self.keys.push(KeySpec::OidcDiscovery);
        self
    }

    /// Keys found through RFC 8414 authorization server metadata
    /// (`https://host/.well-known/oauth-authorization-server/{path}`).
    pub fn rfc8414_discovery(mut self) -> Self {
        self.keys.push(KeySpec::Rfc8414Discovery);
        self
    }

    /// Static keys from a JWK set document (`{"keys": [...]}`).
    pub fn jwk_set(mut self, jwks: Value) -> Self {
        self.keys.push(KeySpec::JwkSet(jwks));
        self
    }

    /// Static keys from a JWK set document as JSON text (parsed at build time).
    pub fn jwk_set_json(mut self, json: impl Into<String>) -> Self {
        self.keys.push(KeySpec::JwkSetJson(json.into()));
        self
    }

    /// A static public key in PEM (`PUBLIC KEY` SPKI, or `RSA PUBLIC KEY`), bound to `alg`, with an optional
    /// `kid` (a token without `kid` is tried against every key of its algorithm).
    pub fn pem_key(mut self, kid: Option<&str>, alg: Algorithm, pem: &[u8]) -> Self {
        self.keys.push(KeySpec::Pem {
            kid: kid.map(str::to_owned),
            alg,
            pem: pem.to_vec(),
        });
        self
    }

    /// A shared HMAC secret (at least 32 bytes) for HS256/384/512. The only way HMAC tokens are accepted: a JWK
    /// set never supplies HMAC keys.
    pub fn hmac_secret(mut self, kid: Option<&str>, alg: Algorithm, secret: SecretBytes) -> Self {
        self.keys.push(KeySpec::Hmac {
            kid: kid.map(str::to_owned),
            alg,
            secret,
        });
        self
    }

    /// The configured `iss`.
    pub fn name(&self) -> &str {
        &self.issuer
    }

    pub(crate) fn allowed_algorithms(&self) -> Vec<Algorithm> {
        let mut algs = self.algorithms.clone().unwrap_or_else(|| ASYMMETRIC.to_vec());
        if self.algorithms.is_none() {
            for k in &self.keys {
                if let KeySpec::Hmac { alg, .. } = k
                    && !algs.contains(alg)
                {
                    algs.push(*alg);
                }
            }
        }
        algs
    }
}
