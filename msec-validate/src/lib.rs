//! # msec-validate
//!
//! Input validation for msec services, at the `http` + `tower` level so it serves axum, tonic and hyper alike:
//!
//! - [`firewall`]: a request firewall ([`FirewallLayer`]) in the manner of Spring's `StrictHttpFirewall` —
//!   encoded slashes, dot segments, `;`, NUL / CR / LF and other control characters, oversized targets and
//!   headers, unusual methods: each a rule with a stable code and a 400.
//! - [`guard`]: a JSON guard ([`JsonGuardLayer`]) that checks content type, body size, nesting depth, members
//!   per object, array length, string length and value count in **one streaming pass** before anything
//!   deserialises the body; a JSON bomb is refused after reading no more than the bytes up to its first excess.
//! - [`schema`]: per-route JSON Schema validation ([`JsonSchemaLayer`], jsonschema), draft 2020-12 by default,
//!   remote `$ref` fetching impossible unless explicitly allowed, schema problems reported at construction.
//! - [`extract`] (feature `axum`): `Valid<Json<T>>`, `Valid<Query<T>>`, `Valid<Path<T>>`, `Valid<Form<T>>` over
//!   `validator::Validate` (and `Garde<..>` over garde with the `garde` feature).
//! - [`grpc`] (feature `tonic`): validation of decoded prost messages, mapped to `INVALID_ARGUMENT` with
//!   `google.rpc.BadRequest` field violations.
//!
//! Every failure is an msec-core [`Rejection`](msec_core::Rejection): 422 problem+json with
//! `errors: [{pointer, code, message}]` for invalid content (the rejected values are never echoed), 415, 413 or
//! 400 with a stable code from [`codes`] otherwise, and a trailers-only gRPC status for gRPC requests. Each layer
//! records a `validate` [`Decision`](msec_core::Decision).
//!
//! A typical stack, outermost first:
//!
//! ```
//! use axum::{routing::post, Router};
//! use msec_validate::{FirewallLayer, JsonSchemaLayer, SchemaSet};
//! use serde_json::json;
//! use tower::ServiceBuilder;
//!
//! let schemas = SchemaSet::builder()
//!     .route("POST /v1/orders", json!({"type": "object", "required": ["sku"]}))
//!     .build()?;
//! let app: Router = Router::new()
//!     .route("/v1/orders", post(|| async { "created" }))
//!     .layer(
//!         ServiceBuilder::new()
//!             .layer(FirewallLayer::strict())
//!             .layer(JsonSchemaLayer::new(schemas)),
//!     );
//! # let _ = app;
//! # Ok::<(), msec_validate::ConfigError>(())
//! ```
#![forbid(unsafe_code)]
// `msec_core::Rejection` is a few hundred bytes; it is only built on the (cold) refusal path, and boxing it
// everywhere would cost every caller an allocation for nothing.
#![allow(clippy::result_large_err)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod body;
pub mod codes;
mod error;
pub mod firewall;
pub mod guard;
pub mod report;
pub mod schema;

#[cfg(feature = "axum")]
pub mod extract;
#[cfg(feature = "tonic")]
pub mod grpc;

#[doc(hidden)]
pub mod fuzz;

pub use body::GuardedBody;
pub use error::ConfigError;
pub use firewall::{Firewall, FirewallLayer};
pub use guard::{JsonGuard, JsonGuardLayer, JsonLimits};
pub use report::FieldError;
pub use schema::{JsonSchemaLayer, SchemaSet};

#[cfg(feature = "garde")]
pub use extract::Garde;
#[cfg(feature = "axum")]
pub use extract::Valid;
