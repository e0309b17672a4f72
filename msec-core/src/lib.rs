//! # msec-core
//!
//! The shared ground of the msec security layers:
//!
//! - **Identity**: [`Principal`] (who the request acts for), [`PeerIdentity`] (the TLS peer), [`ClientAddr`]
//!   (where it came from), and strict [`spiffe`] IDs.
//! - **Decisions**: a per-request [`SecurityContext`] in which every layer records a [`Decision`] (layer,
//!   outcome, stable [`ReasonCode`], details) for the audit log.
//! - **Rejections**: [`Rejection`] renders problem+json (RFC 9457) with RFC 6750 `WWW-Authenticate` for HTTP and
//!   a trailers-only status for gRPC; [`ResponseBody`] and [`ResponseFuture`](future::ResponseFuture) let every
//!   msec service short-circuit without boxing.
//! - **Authorization**: a deny-by-default [`Policy`](policy::Policy) of ALLOW/DENY rules over routes, loadable
//!   from TOML/YAML, enforced by [`AuthorizeLayer`](policy::AuthorizeLayer).
//! - **Secure headers**: [`SecureHeadersLayer`].
//! - **Helpers**: [`secret`] types with constant-time comparison, an injectable [`clock`], [`route`] matching.
//!
//! Everything works at the `http` + `tower` level, so the same layer serves axum, tonic and hyper. With the
//! `axum` feature, `Principal`, `PeerIdentity` and `ClientAddr` are extractors.
//!
//! ```
//! use msec_core::policy::{AuthorizeLayer, Policy, Requirement};
//! use msec_core::SecureHeadersLayer;
//! use tower::ServiceBuilder;
//!
//! let policy = Policy::builder()
//!     .allow("health", ["GET /healthz"], Requirement::Public)
//!     .allow("orders", ["GET /v1/orders/{id}"], Requirement::scope("orders:read"))
//!     .build()?;
//! let stack = ServiceBuilder::new()
//!     .layer(SecureHeadersLayer::api())
//!     .layer(AuthorizeLayer::new(policy));
//! # let _ = stack;
//! # Ok::<(), msec_core::policy::PolicyError>(())
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod body;
pub mod clock;
pub mod context;
pub mod future;
pub mod grpc;
pub mod headers;
pub mod identity;
pub mod metrics;
pub mod policy;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod rejection;
pub mod route;
pub mod secret;
pub mod spiffe;
pub mod text;
pub mod trace;

#[cfg(feature = "axum")]
pub mod axum;

pub use body::ResponseBody;
pub use context::{Decision, DetailValue, Outcome, ReasonCode, SecurityContext};
pub use headers::{SecureHeadersLayer, SecureTransport};
pub use identity::{AuthMethod, ClientAddr, ClientAddrSource, PeerIdentity, PeerSource, Principal, PrincipalKind};
pub use rejection::{BearerChallenge, BearerError, Rejection};
