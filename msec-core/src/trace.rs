//! Tracing spans: every msec layer runs a request inside a `DEBUG` span of its own, made by
//! [`layer_span!`](crate::layer_span).
//!
//! | span | layer |
//! |---|---|
//! | `msec.audit` | msec-audit `AuditLayer` (outermost: the others nest in it) |
//! | `msec.peer` | msec-tls `RequirePeerLayer` |
//! | `msec.authn` | msec-authn `AuthnLayer` (covers key fetches, introspection and revocation checks) |
//! | `msec.ratelimit` | msec-ratelimit `RateLimitLayer` (covers the Redis round trip) |
//! | `msec.authz` | msec-core `AuthorizeLayer` |
//! | `msec.firewall` | msec-validate `FirewallLayer` |
//! | `msec.json_guard` | msec-validate `JsonGuardLayer` |
//!
//! Each span has the target `msec` and two fields, `outcome` (`allow`, `deny`, `shadow_deny`, …) and `code`
//! (the stable reason code), filled with the layer's last decision. Each decision is also a `DEBUG` event with
//! the target `msec::decision`. Spans follow the request's inner service, so layers nest as they are stacked
//! and the handler's own spans nest in the innermost one.
//!
//! The level is `DEBUG`, as in tower-http's `TraceLayer`: with the usual `info` filter the spans cost one cached
//! callsite check per layer. Turn them on with a filter such as `RUST_LOG=info,msec=debug`.
//!
//! ```
//! let span = msec_core::layer_span!("msec.example");
//! let _entered = span.enter();
//! ```

#[doc(hidden)]
pub use tracing as __tracing;

/// The `DEBUG` span of an msec layer named `$name` (see the [module docs](crate::trace)), with empty `outcome`
/// and `code` fields for the layer's decision.
#[macro_export]
macro_rules! layer_span {
    ($name:literal) => {
        $crate::trace::__tracing::debug_span!(
            target: "msec",
            $name,
            outcome = $crate::trace::__tracing::field::Empty,
            code = $crate::trace::__tracing::field::Empty,
        )
    };
}
