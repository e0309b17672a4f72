//! # msec — security layers for Rust microservices
//!
//! `msec` is a facade over a family of crates. Each is re-exported behind a feature of the same name (all on by
//! default through `full`):
//!
//! | module | crate | what it does |
//! |---|---|---|
//! | [`core`] | `msec-core` | identity model, rejections, authorization policy, secure headers |
//! | `authn` | `msec-authn` | JWT / OAuth 2.0 / OIDC, API keys, introspection |
//! | `tls` | `msec-tls` | mTLS, SPIFFE identities, certificate hot reload |
//! | `ratelimit` | `msec-ratelimit` | local and Redis rate limits, trusted proxies, bans |
//! | `validate` | `msec-validate` | validated extractors, JSON Schema, JSON guard, request firewall |
//! | `crypto` | `msec-crypto` | field encryption at rest, rotation, blind indexes |
//! | `audit` | `msec-audit` | tamper-evident audit log, threat detection |
//!
//! ```
//! use msec::prelude::*;
//!
//! let policy = Policy::builder()
//!     .allow("health", ["GET /healthz"], Requirement::Public)
//!     .build()?;
//! let _layer = AuthorizeLayer::new(policy);
//! # Ok::<(), msec::core::policy::PolicyError>(())
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub use msec_core as core;

#[cfg(feature = "audit")]
pub use msec_audit as audit;
#[cfg(feature = "authn")]
pub use msec_authn as authn;
#[cfg(feature = "crypto")]
pub use msec_crypto as crypto;
#[cfg(feature = "ratelimit")]
pub use msec_ratelimit as ratelimit;
#[cfg(feature = "tls")]
pub use msec_tls as tls;
#[cfg(feature = "validate")]
pub use msec_validate as validate;

/// The names most services need, in one `use`.
pub mod prelude {
    pub use msec_core::policy::{AuthorizeLayer, Policy, PolicyMode, Requirement};
    pub use msec_core::{
        ClientAddr, Decision, Outcome, PeerIdentity, Principal, PrincipalKind, ReasonCode, Rejection,
        SecureHeadersLayer, SecurityContext,
    };
}

// The README's code blocks are compiled as doctests, so its examples cannot drift from the API.
#[cfg(all(doctest, feature = "full"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
