//! # msec-authn
//!
//! Authentication for msec: JWT / OAuth 2.0 / OIDC access-token validation and the tower layer that turns a
//! request's credentials into an `Arc<Principal>`.
//!
//! - [`jwt::JwtValidator`]: strict RFC 7519 / RFC 8725 / RFC 9068 validation with per-issuer algorithm
//!   allowlists, keys bound to one algorithm, multi-issuer routing, a bounded verified-token cache.
//! - [`keys`]: static JWK sets / PEM keys / HMAC secrets, JWKS URLs and OIDC / RFC 8414 discovery over HTTPS, with
//!   lock-free reads, `Cache-Control` + `ETag` refresh, a single-flight refetch on unknown `kid` with a cooldown,
//!   and a maximum staleness when the IdP is down.
//! - [`crypto`]: the ring-backed `CryptoProvider` for `jsonwebtoken` 11 (no install call needed).
//! - [`AuthnLayer`]: required / optional / per-route modes, RFC 6750 challenges, problem+json or gRPC
//!   trailers-only rejections, an `authn` decision for the audit log.
//! - [`introspection::IntrospectionAuthenticator`]: opaque tokens checked with RFC 7662 introspection (client
//!   authentication, a bounded SHA-256-keyed cache, single-flight, 503 when the endpoint is down).
//! - [`revocation`]: a `jti` / subject denylist as a [`PostVerify`] hook, in memory or in Redis (feature `redis`).
//! - [`apikey`]: API keys (`<prefix>_<key id><secret><checksum>`), digest-only records in memory or
//!   PostgreSQL, and the [`ApiKeyAuthenticator`](apikey::ApiKeyAuthenticator).
//! - [`cnf::CertificateBound`]: RFC 8705 certificate-bound tokens (`cnf.x5t#S256` against the TLS peer's
//!   certificate), off / optional / strict, as a [`PostVerify`] hook.
//! - [`outbound`]: service-to-service calls: a [`ClientCredentials`](outbound::ClientCredentials) token source
//!   (cached, refreshed before expiry, single-flight, backing off) and the
//!   [`BearerTokenLayer`](outbound::BearerTokenLayer) for tonic / hyper-util clients.
//! - [`Authenticator`], [`AuthnChain`], [`PostVerify`]: the extension points for other credential kinds and for
//!   checks after verification.
//!
//! ```
//! use msec_authn::{AuthnLayer, jwt::{Issuer, JwtValidator}};
//! use tower::ServiceBuilder;
//!
//! let validator = JwtValidator::builder()
//!     .issuer(Issuer::new("https://id.example.com/realms/shop")
//!         .audience("orders-api")
//!         .oidc_discovery())
//!     .build()?;
//! let stack = ServiceBuilder::new().layer(AuthnLayer::jwt(validator).realm("orders"));
//! # let _ = stack;
//! # Ok::<(), msec_authn::ConfigError>(())
//! ```
//!
//! Stack it inside the audit and rate-limit layers and outside `AuthorizeLayer`, which then sees the principal
//! (see the msec `DESIGN.md` request flow).
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod apikey;
mod authenticator;
mod cache;
pub mod cnf;
pub mod crypto;
mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod introspection;
pub mod jwt;
pub mod keys;
mod layer;
pub mod outbound;
pub mod revocation;
mod source;
mod util;

pub use authenticator::{
    Attempt, Authenticated, Authenticator, AuthnChain, AuthnFuture, AuthnResult, PostVerify, PostVerifyFn, RequestHead,
    post_verify_fn,
};
pub use error::{AuthnError, AuthnErrorKind, ConfigError, codes};
pub use jwt::JwtAuthenticator;
pub use layer::{Authn, AuthnLayer, AuthnMode, ResponseFuture};
pub use source::TokenSource;
