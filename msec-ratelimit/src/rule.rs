//! [`Rule`]: a named quota on some routes, counted per key, enforced or in shadow mode.

use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;

use crate::key::{KeySpec, RequestInfo};
use crate::quota::Quota;

/// Whether a rule rejects requests over its quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Over-quota requests are rejected (429).
    #[default]
    Enforce,
    /// Over-quota requests proceed; the would-be rejection is recorded as `Outcome::ShadowDeny` and counted.
    /// Use it to try a rule on production traffic before enforcing it.
    Shadow,
}

/// A per-request cost function: returns the units a request spends (0 = the rule does not charge it).
pub type CostFn = Arc<dyn Fn(&RequestInfo<'_>) -> u32 + Send + Sync>;

#[derive(Clone)]
pub(crate) enum Cost {
    Fixed(u32),
    Dynamic(CostFn),
}

/// A named rate-limit rule.
///
/// ```
/// use msec_ratelimit::{KeySpec, Quota, Rule};
///
/// let login = Rule::new("login", Quota::per_minute(5))
///     .route("POST /login")
///     .key(KeySpec::client_ip());
/// let search = Rule::new("search", Quota::per_second(20).burst(40))
///     .route("GET /v1/search")
///     .key(KeySpec::subject())
///     .cost(2);
/// let trial = Rule::new("tenant-trial", Quota::per_hour(1000)).key(KeySpec::tenant()).shadow();
/// # let _ = (login, search, trial);
/// ```
#[derive(Clone)]
pub struct Rule {
    pub(crate) name: String,
    pub(crate) routes: Vec<String>,
    pub(crate) key: KeySpec,
    pub(crate) quota: Quota,
    pub(crate) cost: Cost,
    pub(crate) mode: Mode,
}

impl fmt::Debug for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rule")
            .field("name", &self.name)
            .field("routes", &self.routes)
            .field("key", &self.key)
            .field("quota", &self.quota)
            .field(
                "cost",
                &match &self.cost {
                    Cost::Fixed(n) => n.to_string(),
                    Cost::Dynamic(_) => "dynamic".into(),
                },
            )
            .field("mode", &self.mode)
            .finish()
    }
}

impl Rule {
    /// A rule named `name` (1-64 characters of `A-Z a-z 0-9 - _ .`) with `quota`, on every route, per client
    /// IP, costing 1 unit per request, enforced.
    pub fn new(name: impl Into<String>, quota: Quota) -> Self {
        Self {
            name: name.into(),
            routes: Vec::new(),
            key: KeySpec::client_ip(),
            quota,
            cost: Cost::Fixed(1),
            mode: Mode::Enforce,
        }
    }

    /// Adds a route spec (msec-core [`RouteSpec`](msec_core::route::RouteSpec) syntax: `GET /v1/orders/{id}`,
    /// `/files/{*rest}`, `grpc /shop.Orders`, `*`). Without any, the rule covers every route.
    #[must_use]
    pub fn route(mut self, spec: impl Into<String>) -> Self {
        self.routes.push(spec.into());
        self
    }

    /// Adds several route specs.
    #[must_use]
    pub fn routes<I, S>(mut self, specs: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.routes.extend(specs.into_iter().map(Into::into));
        self
    }

    /// Sets what the quota is counted per (default: client IP).
    #[must_use]
    pub fn key(mut self, key: KeySpec) -> Self {
        self.key = key;
        self
    }

    /// Sets the units each request spends (default 1). Zero is refused when the limiter is built; a cost above
    /// the burst too (no request could ever pass).
    #[must_use]
    pub fn cost(mut self, units: u32) -> Self {
        self.cost = Cost::Fixed(units);
        self
    }

    /// Computes the cost per request (weights: e.g. by page size). A request costing 0 is not charged; one
    /// costing more than the burst is rejected.
    #[must_use]
    pub fn cost_fn(mut self, f: impl Fn(&RequestInfo<'_>) -> u32 + Send + Sync + 'static) -> Self {
        self.cost = Cost::Dynamic(Arc::new(f));
        self
    }

    /// Sets the mode.
    #[must_use]
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Shadow mode: record would-be rejections, never reject.
    #[must_use]
    pub fn shadow(self) -> Self {
        self.mode(Mode::Shadow)
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The quota.
    pub fn quota(&self) -> Quota {
        self.quota
    }
}

pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl Cost {
    pub(crate) fn of(&self, info: &RequestInfo<'_>) -> Option<NonZeroU32> {
        match self {
            Self::Fixed(n) => NonZeroU32::new(*n),
            Self::Dynamic(f) => NonZeroU32::new(f(info)),
        }
    }
}
