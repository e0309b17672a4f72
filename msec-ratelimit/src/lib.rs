//! # msec-ratelimit
//!
//! Rate limiting that holds across replicas, resists key floods and tells clients the truth.
//!
//! - **Quotas with honest units**: [`Quota::per_minute(100).burst(20)`](Quota) means exactly that; zero is
//!   unrepresentable; requests can cost several units ([`Rule::cost`], [`Rule::cost_fn`]).
//! - **Rules**: named, each with routes (msec-core [`RouteSpec`](msec_core::route::RouteSpec) syntax), a
//!   [`KeySpec`] (client IP with IPv6 grouped by /64, subject, API key id, tenant, header, route, global,
//!   tuples, custom extractors), a quota, a cost and a [`Mode`] (enforce or shadow). Every applicable rule is
//!   checked; the response reports the one closest to its limit.
//! - **Client IP behind proxies**: [`ClientIpLayer`] with [`TrustedProxies`] walks `X-Forwarded-For` or RFC 7239
//!   `Forwarded` from the right and replaces msec-core's [`ClientAddr`](msec_core::ClientAddr), so every layer
//!   and the audit log agree on the address.
//! - **Local backend**: governor's GCRA over a store with a hard cap on keys and self-running eviction of idle
//!   ones ([`LocalLimiter`]): a flood of a million addresses stays within the bound.
//! - **Redis backend** (feature `redis`): one atomic Lua GCRA script per request (EVALSHA, loaded on
//!   NOSCRIPT) covering the ban check and every rule, keys expiring with their window, a local deny cache, a
//!   short timeout, and an explicit [`FailurePolicy`].
//! - **Responses**: 429 problem+json (or gRPC `RESOURCE_EXHAUSTED`) with `Retry-After`, plus
//!   `RateLimit-Policy` / `RateLimit` fields in the current draft-ietf-httpapi-ratelimit-headers syntax, on
//!   allowed responses too. Shadow rules record `ShadowDeny` and never reject.
//! - **Penalty box**: [`PenaltyBox`] bans keys that keep failing (401/403 by default), with escalation and a
//!   manual [`ban`](PenaltyBox::ban) / [`unban`](PenaltyBox::unban) API; shared through Redis with the Redis
//!   backend. Banned requests get 429 `banned`.
//!
//! - **Health**: [`RateLimiter::ping_backend`] for readiness probes (one Redis `PING`; always fine locally).
//!
//! Concurrency limits are tower's job: stack `tower::limit::ConcurrencyLimitLayer` and
//! `tower::load_shed::LoadShedLayer` beside this layer (the tour shows how).
//!
//! ```
//! use std::time::Duration;
//! use msec_ratelimit::{ClientIpLayer, KeySpec, PenaltyBox, Quota, RateLimitLayer, RateLimiter, Rule, TrustedProxies};
//! use tower::ServiceBuilder;
//!
//! let per_ip = RateLimiter::builder()
//!     .rule(Rule::new("per-ip", Quota::per_minute(300).burst(60)))
//!     .rule(Rule::new("login", Quota::per_minute(5)).route("POST /login"))
//!     .penalty_box(PenaltyBox::builder().threshold(20).ban(Duration::from_secs(600)))
//!     .build()?;
//! let per_user = RateLimiter::builder()
//!     .rule(Rule::new("per-user", Quota::per_second(20)).key(KeySpec::subject()))
//!     .build()?;
//! let stack = ServiceBuilder::new()
//!     .layer(ClientIpLayer::new(TrustedProxies::new(["10.0.0.0/8"])?))
//!     .layer(RateLimitLayer::new(per_ip))
//!     // .layer(AuthnLayer::new(..))  (msec-authn)
//!     .layer(RateLimitLayer::new(per_user));
//! # let _ = stack;
//! # Ok::<(), msec_ratelimit::ConfigError>(())
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod client_ip;
mod clock;
mod error;
pub mod key;
mod layer;
mod limiter;
mod local;
mod penalty;
pub mod quota;
#[cfg(feature = "redis")]
pub mod redis;
mod rule;
mod store;

pub use client_ip::{ClientIp, ClientIpLayer, ForwardedHeader, TrustedProxies};
pub use clock::FastClock;
pub use error::{BackendError, ConfigError};
pub use key::{Key, KeyExtractor, KeySpec, RequestInfo};
pub use layer::{RATELIMIT, RATELIMIT_POLICY, RateLimit, RateLimitLayer, ResponseFuture};
pub use limiter::{MAX_RULES, RateLimiter, RateLimiterBuilder};
pub use local::{BYTES_PER_KEY_BOUND, ClockBridge, LocalLimiter, RuleOutcome};
pub use penalty::{FailureInfo, FailurePredicate, PenaltyBox, PenaltyBoxBuilder, auth_failures};
pub use quota::Quota;
pub use rule::{CostFn, Mode, Rule};
pub use store::StoreStats;

/// The stable reason codes of this crate (beside msec-core's `rate_limited`, `banned` and
/// `service_unavailable`).
pub mod codes {
    use msec_core::ReasonCode;

    /// A `ratelimit` decision that let the request through (details: the rule closest to its limit and its
    /// remaining units).
    pub const WITHIN_LIMIT: ReasonCode = ReasonCode::new("within_limit");
    /// The shared backend failed and the limiter let the request through (`FailurePolicy::FailOpen`).
    pub const FAILED_OPEN: ReasonCode = ReasonCode::new("ratelimit_failed_open");
    /// The shared backend failed and the limiter refused the request (`FailurePolicy::FailClosed`); the client
    /// sees 503 `service_unavailable`.
    pub const BACKEND_UNAVAILABLE: ReasonCode = ReasonCode::new("ratelimit_backend_unavailable");
}

/// What the limiter does when the shared backend (Redis) fails or does not answer in time. Every failure is
/// counted (`msec_ratelimit_backend_failures_total{policy, error}`) and logged (at most once a second).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum FailurePolicy {
    /// Let the request through, recording `ratelimit_failed_open` (Envoy's default; availability first).
    FailOpen,
    /// Refuse with 503 `service_unavailable` (protection first).
    FailClosed,
    /// Decide with this replica's local limiter (same rules, per-replica state): the default.
    #[default]
    FallbackLocal,
}

impl FailurePolicy {
    /// `fail_open`, `fail_closed` or `fallback_local`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FailOpen => "fail_open",
            Self::FailClosed => "fail_closed",
            Self::FallbackLocal => "fallback_local",
        }
    }
}
