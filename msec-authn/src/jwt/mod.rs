//! JWT access tokens: [`JwtValidator`] (strict parsing, issuer routing, keys, claims, cache) and
//! [`JwtAuthenticator`] (where tokens are found in a request).
//!
//! # What is checked, in order
//!
//! 1. Size (default 8 KiB) before anything else; then the compact form: three base64url segments, no padding,
//!    no whitespace, canonical encodings, UTF-8 JSON objects without duplicate names.
//! 2. Header: `alg` must be a supported JWS algorithm (`none`, in any casing, never is); `crit` is refused (msec
//!    understands no extension); `jku`, `x5u`, `jwk`, `x5c` are ignored (never used to find a key).
//! 3. Issuer: the (still unverified) `iss` selects one configured issuer; unknown issuers are refused before any
//!    cryptography. The header `alg` must be in that issuer's allowlist.
//! 4. Key: the issuer's key with the header `kid`, bound to the header `alg` (an unknown `kid` triggers at most
//!    one single-flight refetch per cooldown). The signature is verified with ring.
//! 5. Claims: `typ` policy; `exp` (required by default), `nbf`, `iat` not in the future, all as JSON numbers,
//!    with leeway; maximum lifetime; `aud` contains a configured audience; required claims.
//! 6. The claims become a [`Principal`](msec_core::Principal) ([`ClaimMapping`]); the result is cached under
//!    a keyed 128-bit digest of the token (SipHash-2-4 under a random per-process key: the cache holds no token)
//!    until `exp` or until its key leaves the issuer's key set.

mod authenticator;
mod claims;
pub(crate) mod compact;
mod issuer;
mod mapping;
mod validator;

pub use authenticator::JwtAuthenticator;
pub use claims::TypPolicy;
pub use issuer::Issuer;
pub use jsonwebtoken::Algorithm;
pub use mapping::ClaimMapping;
pub use validator::{JwtValidator, JwtValidatorBuilder, StartError};
