//! Errors: [`AuthnError`], [`AuthnErrorKind`], [`ConfigError`] and the stable reason [`codes`].

use std::borrow::Cow;
use std::fmt;

use msec_core::{ReasonCode, Rejection};

/// The stable reason codes of msec-authn. They are part of the public contract: never renamed.
pub mod codes {
    use msec_core::ReasonCode;

    /// A principal was authenticated (the `authn` decision of an accepted request).
    pub const AUTHENTICATED: ReasonCode = ReasonCode::new("authenticated");
    /// No credentials, and the route allows anonymous requests (optional mode).
    pub const ANONYMOUS: ReasonCode = ReasonCode::new("anonymous");
    /// The request carried no credentials.
    pub const MISSING_CREDENTIALS: ReasonCode = ReasonCode::MISSING_CREDENTIALS;
    /// The credential is not a well-formed token (segments, base64url, JSON, duplicate headers).
    pub const MALFORMED_TOKEN: ReasonCode = ReasonCode::new("malformed_token");
    /// The token is larger than the configured cap (checked before any parsing).
    pub const TOKEN_TOO_LARGE: ReasonCode = ReasonCode::new("token_too_large");
    /// The token's `alg` is `none`, unknown, not allowed for its issuer, or not the algorithm its key is bound to.
    pub const ALG_NOT_ALLOWED: ReasonCode = ReasonCode::new("alg_not_allowed");
    /// The token lists a `crit` header parameter; msec understands no JWS extensions.
    pub const UNSUPPORTED_CRIT: ReasonCode = ReasonCode::new("unsupported_crit");
    /// No key of the issuer matches the token's `kid` (after at most one refetch).
    pub const UNKNOWN_KID: ReasonCode = ReasonCode::new("unknown_kid");
    /// The signature does not verify (or is missing).
    pub const BAD_SIGNATURE: ReasonCode = ReasonCode::new("bad_signature");
    /// `exp` is in the past (beyond the leeway).
    pub const TOKEN_EXPIRED: ReasonCode = ReasonCode::new("token_expired");
    /// `nbf` is in the future, or `iat` is (beyond the leeway).
    pub const TOKEN_NOT_YET_VALID: ReasonCode = ReasonCode::new("token_not_yet_valid");
    /// The token lives longer than the issuer's maximum lifetime.
    pub const TOKEN_LIFETIME_TOO_LONG: ReasonCode = ReasonCode::new("token_lifetime_too_long");
    /// The token's `iss` is not a configured issuer.
    pub const ISSUER_MISMATCH: ReasonCode = ReasonCode::new("issuer_mismatch");
    /// The token's `aud` contains none of the configured audiences.
    pub const AUDIENCE_MISMATCH: ReasonCode = ReasonCode::new("audience_mismatch");
    /// A required claim is absent.
    pub const MISSING_CLAIM: ReasonCode = ReasonCode::new("missing_claim");
    /// A registered claim has the wrong JSON type (a string `exp`, a numeric `iss`, ...).
    pub const INVALID_CLAIM: ReasonCode = ReasonCode::new("invalid_claim");
    /// The `typ` header is not one the issuer's policy accepts.
    pub const BAD_TYP: ReasonCode = ReasonCode::new("bad_typ");
    /// The issuer's keys are not available (never fetched, or stale beyond the maximum staleness).
    pub const KEYS_UNAVAILABLE: ReasonCode = ReasonCode::new("keys_unavailable");
    /// The token is bound to a client certificate (RFC 8705 `cnf.x5t#S256`) and the request came without it:
    /// no TLS client certificate, or another one.
    pub const CERTIFICATE_BINDING_MISMATCH: ReasonCode = ReasonCode::new("certificate_binding_mismatch");
    /// Certificate binding is strict and the token is not bound to a client certificate (no `cnf.x5t#S256`).
    pub const CERTIFICATE_BINDING_MISSING: ReasonCode = ReasonCode::new("certificate_binding_missing");
    /// The introspection endpoint (RFC 7662) answered `active: false`.
    pub const TOKEN_INACTIVE: ReasonCode = ReasonCode::new("token_inactive");
    /// The token (its `jti`) or its subject is on the revocation denylist.
    pub const TOKEN_REVOKED: ReasonCode = ReasonCode::new("token_revoked");
    /// The introspection endpoint is down, slow, refused our client credentials or answered nonsense, and
    /// nothing usable was cached.
    pub const INTROSPECTION_UNAVAILABLE: ReasonCode = ReasonCode::new("introspection_unavailable");
    /// The revocation denylist (Redis) could not be consulted and the policy is fail-closed.
    pub const REVOCATION_UNAVAILABLE: ReasonCode = ReasonCode::new("revocation_unavailable");
    /// The API key is not valid: not in the key format, a bad checksum, an unknown key id, a prefix this
    /// service does not accept, or a secret that does not match (the audit detail says which).
    pub const INVALID_API_KEY: ReasonCode = ReasonCode::new("invalid_api_key");
    /// The API key's record has expired.
    pub const API_KEY_EXPIRED: ReasonCode = ReasonCode::new("api_key_expired");
    /// The API key has been revoked.
    pub const API_KEY_REVOKED: ReasonCode = ReasonCode::new("api_key_revoked");
    /// The credential store (API keys) could not be reached or answered with an error.
    pub const CREDENTIAL_STORE_UNAVAILABLE: ReasonCode = ReasonCode::new("credential_store_unavailable");
}

/// What kind of authentication failure an [`AuthnError`] is.
///
/// The mapping from error to wire lives in one place, [`AuthnErrorKind::rejection`]:
///
/// | kind                                  | HTTP | challenge                                           |
/// |---------------------------------------|------|-----------------------------------------------------|
/// | `missing_credentials`                 | 401  | `Bearer` with no `error` attribute (RFC 6750 §3.1)  |
/// | `malformed_token`, `token_too_large`  | 400  | `error="invalid_request"`                           |
/// | `keys_unavailable`, `introspection_unavailable`, `revocation_unavailable` | 503 | none (`Retry-After` set) |
/// | `credential_store_unavailable`        | 503  | none (`Retry-After` set)                            |
/// | every other kind                      | 401  | `error="invalid_token"` + a fixed `error_description` |
///
/// Clients only ever see the code and the fixed description; the [`detail`](AuthnError::detail) (which claim,
/// which `kid`, what time) goes into the audit [`Decision`](msec_core::Decision).
///
/// New kinds are added as new credential types arrive (API keys, introspection, revocation), hence
/// `#[non_exhaustive]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuthnErrorKind {
    /// No credentials were presented.
    MissingCredentials,
    /// The credential is syntactically broken.
    MalformedToken,
    /// The credential exceeds the size cap.
    TokenTooLarge,
    /// The signing algorithm is refused.
    AlgNotAllowed,
    /// A `crit` header parameter is present.
    UnsupportedCrit,
    /// The signing key is unknown.
    UnknownKid,
    /// The signature is invalid.
    BadSignature,
    /// The token has expired.
    TokenExpired,
    /// The token is not valid yet.
    TokenNotYetValid,
    /// The token's lifetime exceeds the configured maximum.
    TokenLifetimeTooLong,
    /// The issuer is not accepted.
    IssuerMismatch,
    /// The audience is not accepted.
    AudienceMismatch,
    /// A required claim is missing.
    MissingClaim,
    /// A claim has an invalid type or value.
    InvalidClaim,
    /// The `typ` header is refused.
    BadTyp,
    /// Verification keys are unavailable.
    KeysUnavailable,
    /// The token's certificate binding does not match the TLS client certificate.
    CertificateBindingMismatch,
    /// The token is not certificate-bound and binding is required.
    CertificateBindingMissing,
    /// The introspection endpoint says the token is not active.
    TokenInactive,
    /// The token or its subject has been revoked.
    TokenRevoked,
    /// The introspection endpoint could not answer.
    IntrospectionUnavailable,
    /// The revocation denylist could not be consulted (fail-closed).
    RevocationUnavailable,
    /// The API key is invalid (format, checksum, unknown key id, prefix, secret).
    InvalidApiKey,
    /// The API key has expired.
    ApiKeyExpired,
    /// The API key has been revoked.
    ApiKeyRevoked,
    /// The credential store is unavailable.
    CredentialStoreUnavailable,
}

impl AuthnErrorKind {
    /// The stable reason code.
    pub fn code(self) -> ReasonCode {
        match self {
            Self::MissingCredentials => codes::MISSING_CREDENTIALS,
            Self::MalformedToken => codes::MALFORMED_TOKEN,
            Self::TokenTooLarge => codes::TOKEN_TOO_LARGE,
            Self::AlgNotAllowed => codes::ALG_NOT_ALLOWED,
            Self::UnsupportedCrit => codes::UNSUPPORTED_CRIT,
            Self::UnknownKid => codes::UNKNOWN_KID,
            Self::BadSignature => codes::BAD_SIGNATURE,
            Self::TokenExpired => codes::TOKEN_EXPIRED,
            Self::TokenNotYetValid => codes::TOKEN_NOT_YET_VALID,
            Self::TokenLifetimeTooLong => codes::TOKEN_LIFETIME_TOO_LONG,
            Self::IssuerMismatch => codes::ISSUER_MISMATCH,
            Self::AudienceMismatch => codes::AUDIENCE_MISMATCH,
            Self::MissingClaim => codes::MISSING_CLAIM,
            Self::InvalidClaim => codes::INVALID_CLAIM,
            Self::BadTyp => codes::BAD_TYP,
            Self::KeysUnavailable => codes::KEYS_UNAVAILABLE,
            Self::CertificateBindingMismatch => codes::CERTIFICATE_BINDING_MISMATCH,
            Self::CertificateBindingMissing => codes::CERTIFICATE_BINDING_MISSING,
            Self::TokenInactive => codes::TOKEN_INACTIVE,
            Self::TokenRevoked => codes::TOKEN_REVOKED,
            Self::IntrospectionUnavailable => codes::INTROSPECTION_UNAVAILABLE,
            Self::RevocationUnavailable => codes::REVOCATION_UNAVAILABLE,
            Self::InvalidApiKey => codes::INVALID_API_KEY,
            Self::ApiKeyExpired => codes::API_KEY_EXPIRED,
            Self::ApiKeyRevoked => codes::API_KEY_REVOKED,
            Self::CredentialStoreUnavailable => codes::CREDENTIAL_STORE_UNAVAILABLE,
        }
    }

    /// The fixed, client-safe sentence sent as `error_description` and problem `detail`.
    pub fn description(self) -> &'static str {
        match self {
            Self::MissingCredentials => "authentication is required",
            Self::MalformedToken => "the access token is malformed",
            Self::TokenTooLarge => "the access token is too large",
            Self::AlgNotAllowed => "the access token's signing algorithm is not accepted",
            Self::UnsupportedCrit => "the access token uses an unsupported critical header",
            Self::UnknownKid => "the access token's signing key is unknown",
            Self::BadSignature => "the access token's signature is invalid",
            Self::TokenExpired => "the access token has expired",
            Self::TokenNotYetValid => "the access token is not valid yet",
            Self::TokenLifetimeTooLong => "the access token's lifetime is too long",
            Self::IssuerMismatch => "the access token's issuer is not accepted",
            Self::AudienceMismatch => "the access token is not intended for this service",
            Self::MissingClaim => "the access token lacks a required claim",
            Self::InvalidClaim => "the access token has an invalid claim",
            Self::BadTyp => "the access token's type is not accepted",
            Self::KeysUnavailable => "token verification is temporarily unavailable",
            Self::CertificateBindingMismatch => "the access token is bound to a different client certificate",
            Self::CertificateBindingMissing => "the access token must be bound to the client certificate",
            Self::TokenInactive => "the access token is not active",
            Self::TokenRevoked => "the access token has been revoked",
            Self::IntrospectionUnavailable => "token introspection is temporarily unavailable",
            Self::RevocationUnavailable => "the token revocation check is temporarily unavailable",
            Self::InvalidApiKey => "the API key is invalid",
            Self::ApiKeyExpired => "the API key has expired",
            Self::ApiKeyRevoked => "the API key has been revoked",
            Self::CredentialStoreUnavailable => "credential verification is temporarily unavailable",
        }
    }

    /// The rejection for this kind. The single place where authentication failures become HTTP / gRPC answers.
    pub fn rejection(self) -> Rejection {
        match self {
            Self::MissingCredentials => Rejection::missing_credentials(),
            Self::MalformedToken | Self::TokenTooLarge => Rejection::invalid_request(self.code(), self.description()),
            Self::KeysUnavailable
            | Self::IntrospectionUnavailable
            | Self::RevocationUnavailable
            | Self::CredentialStoreUnavailable => {
                Rejection::unavailable(self.code(), self.description()).with_retry_after(5)
            }
            _ => Rejection::invalid_token(self.code(), self.description()),
        }
    }
}

/// Why a request was not authenticated: a [`kind`](Self::kind) (stable code, client-safe answer) and an
/// internal [`detail`](Self::detail) for the audit decision and logs, never sent to the client.
///
/// ```
/// use msec_authn::{AuthnError, AuthnErrorKind};
/// let e = AuthnError::new(AuthnErrorKind::TokenExpired, "exp 1700000000 is before now 1700000100");
/// assert_eq!(e.code().as_str(), "token_expired");
/// assert_eq!(e.rejection().status(), 401);
/// assert_eq!(e.rejection().detail(), "the access token has expired");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct AuthnError {
    kind: AuthnErrorKind,
    detail: Cow<'static, str>,
}

impl AuthnError {
    /// An error of `kind` with an internal `detail` (keep it free of secrets; it is logged and audited).
    pub fn new(kind: AuthnErrorKind, detail: impl Into<Cow<'static, str>>) -> Self {
        Self {
            kind,
            detail: detail.into(),
        }
    }

    /// `missing_credentials`.
    pub fn missing() -> Self {
        Self::new(AuthnErrorKind::MissingCredentials, "no credentials")
    }

    /// The kind.
    pub fn kind(&self) -> AuthnErrorKind {
        self.kind
    }

    /// The stable reason code.
    pub fn code(&self) -> ReasonCode {
        self.kind.code()
    }

    /// The internal detail (for the decision and logs; never sent to clients).
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// The rejection to answer with.
    pub fn rejection(&self) -> Rejection {
        self.kind.rejection()
    }
}

impl fmt::Debug for AuthnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthnError")
            .field("code", &self.kind.code())
            .field("detail", &self.detail)
            .finish()
    }
}

impl fmt::Display for AuthnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.code(), self.detail)
    }
}

impl std::error::Error for AuthnError {}

/// Why a validator, key source or layer could not be built. Returned at construction, never per request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A URL does not parse.
    #[error("invalid URL `{url}`: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// Why it is invalid.
        reason: String,
    },
    /// A key URL is not HTTPS (plain HTTP is only allowed for loopback hosts, behind
    /// `danger_allow_http_for_loopback`).
    #[error(
        "`{0}` is not an https:// URL (plain HTTP is only allowed for loopback with danger_allow_http_for_loopback)"
    )]
    InsecureUrl(String),
    /// No issuer was configured.
    #[error("no issuer configured")]
    NoIssuer,
    /// The same issuer was configured twice.
    #[error("issuer `{0}` is configured twice")]
    DuplicateIssuer(String),
    /// An issuer string is empty.
    #[error("an issuer must not be empty")]
    EmptyIssuer,
    /// An issuer has no key source.
    #[error("issuer `{0}` has no key source (JWKS URL, discovery, JWK set, PEM key or HMAC secret)")]
    NoKeySource(String),
    /// An issuer mixes a remote key source with static keys, or has two remote sources.
    #[error("issuer `{0}` has more than one kind of key source")]
    ConflictingKeySources(String),
    /// An issuer accepts no audience and `danger_accept_any_audience` was not called.
    #[error("issuer `{0}` has no audience (call `audience(..)`, or `danger_accept_any_audience()` to opt out)")]
    NoAudience(String),
    /// An HMAC secret is shorter than 32 bytes, or its algorithm is not HS256/384/512.
    #[error("HMAC key `{0}`: {1}")]
    InvalidHmacKey(String, &'static str),
    /// A static key (PEM or JWK) is invalid.
    #[error("invalid key{}: {reason}", kid.as_ref().map(|k| format!(" `{k}`")).unwrap_or_default())]
    InvalidKey {
        /// The key id, if known.
        kid: Option<String>,
        /// What is wrong.
        reason: String,
    },
    /// A static JWK set holds no usable key.
    #[error("the JWK set of issuer `{0}` has no usable signing key")]
    NoUsableKeys(String),
    /// An algorithm list is empty.
    #[error("issuer `{0}` allows no algorithm")]
    NoAlgorithm(String),
    /// A numeric setting is out of range.
    #[error("invalid setting `{0}`: {1}")]
    InvalidSetting(&'static str, &'static str),
    /// A route spec is invalid.
    #[error(transparent)]
    Route(#[from] msec_core::route::RouteError),
    /// The HTTPS client could not be built.
    #[error("HTTPS client: {0}")]
    Http(String),
    /// A token source (header or cookie name) is invalid.
    #[error("invalid token source: {0}")]
    InvalidSource(String),
}
