//! [`RateLimiter`]: the rules, the backend and the penalty box, shared by every clone of a layer.

use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method};
use msec_core::ReasonCode;
use msec_core::clock::SharedClock;
use msec_core::context::{self, Outcome};
use msec_core::route::{RouteSpec, RouteTable};

#[cfg(feature = "redis")]
use crate::FailurePolicy;
use crate::clock::FastClock;
use crate::codes;
use crate::error::ConfigError;
use crate::key::{Key, RequestInfo};
use crate::local::{LocalLimiter, RuleOutcome};
use crate::penalty::{PenaltyBox, PenaltyBoxBuilder};
use crate::quota::ceil_secs;
use crate::rule::{Cost, Mode, Rule, valid_name};

/// At most this many rules per limiter.
pub const MAX_RULES: usize = 128;

pub(crate) struct CompiledRule {
    pub(crate) name: Arc<str>,
    pub(crate) rule: Rule,
    /// `"name"` as an sf-string.
    pub(crate) item: String,
    pub(crate) policy_header: HeaderValue,
}

pub(crate) enum Backend {
    Local,
    #[cfg(feature = "redis")]
    Redis(Arc<crate::redis::RedisBackend>),
}

pub(crate) struct Inner {
    pub(crate) rules: Vec<CompiledRule>,
    table: Option<RouteTable<usize>>,
    every_route: Vec<usize>,
    pub(crate) local: Vec<LocalLimiter>,
    pub(crate) backend: Backend,
    pub(crate) penalty: Option<PenaltyBox>,
}

/// Rate-limit rules with their state: local (governor) or shared through Redis, plus an optional
/// [`PenaltyBox`]. Cheap to clone; clones share everything.
///
/// ```
/// use msec_ratelimit::{KeySpec, Quota, RateLimitLayer, RateLimiter, Rule};
///
/// let limiter = RateLimiter::builder()
///     .rule(Rule::new("per-ip", Quota::per_minute(300).burst(50)))
///     .rule(Rule::new("login", Quota::per_minute(5)).route("POST /login"))
///     .rule(Rule::new("per-user", Quota::per_second(20)).key(KeySpec::subject()).shadow())
///     .max_keys(200_000)
///     .build()?;
/// let layer = RateLimitLayer::new(limiter);
/// # let _ = layer;
/// # Ok::<(), msec_ratelimit::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct RateLimiter {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("rules", &self.inner.rules.iter().map(|r| &r.rule).collect::<Vec<_>>())
            .field(
                "backend",
                &match self.inner.backend {
                    Backend::Local => "local",
                    #[cfg(feature = "redis")]
                    Backend::Redis(_) => "redis",
                },
            )
            .field("penalty_box", &self.inner.penalty.is_some())
            .finish()
    }
}

/// Builder for [`RateLimiter`].
#[must_use]
pub struct RateLimiterBuilder {
    rules: Vec<Rule>,
    max_keys: usize,
    clock: Option<SharedClock>,
    penalty: Option<PenaltyBoxBuilder>,
    #[cfg(feature = "redis")]
    redis: Option<(crate::redis::RedisBackendBuilder, FailurePolicy)>,
}

impl fmt::Debug for RateLimiterBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiterBuilder")
            .field("rules", &self.rules)
            .field("max_keys", &self.max_keys)
            .finish_non_exhaustive()
    }
}

impl RateLimiter {
    /// Starts a limiter: no rules, local backend, 100 000 keys per rule, a [`FastClock`].
    pub fn builder() -> RateLimiterBuilder {
        RateLimiterBuilder {
            rules: Vec::new(),
            max_keys: 100_000,
            clock: None,
            penalty: None,
            #[cfg(feature = "redis")]
            redis: None,
        }
    }

    /// The penalty box, if one is configured (to ban or unban by hand).
    pub fn penalty_box(&self) -> Option<&PenaltyBox> {
        self.inner.penalty.as_ref()
    }

    /// The local limiter of rule `name` (the backend itself for a local limiter; the fallback for Redis).
    pub fn local_limiter(&self, name: &str) -> Option<&LocalLimiter> {
        let i = self.inner.rules.iter().position(|r| &*r.name == name)?;
        self.inner.local.get(i)
    }

    /// The rule names, in order.
    pub fn rule_names(&self) -> impl Iterator<Item = &str> {
        self.inner.rules.iter().map(|r| &*r.name)
    }

    /// Checks that the backend answers, for readiness probes: always `Ok` for the local backend; one Redis
    /// `PING` (bounded by the backend's timeout, ignoring the circuit breaker) for the Redis backend. Counted in
    /// `msec_ratelimit_backend_pings_total{result}`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use msec_ratelimit::{Quota, RateLimiter, Rule};
    /// let limiter = RateLimiter::builder().rule(Rule::new("api", Quota::per_minute(60))).build()?;
    /// limiter.ping_backend().await?; // local: nothing to ask
    /// # Ok(()) }
    /// ```
    pub async fn ping_backend(&self) -> Result<(), crate::BackendError> {
        match &self.inner.backend {
            Backend::Local => Ok(()),
            #[cfg(feature = "redis")]
            Backend::Redis(r) => r.ping().await,
        }
    }
}

impl RateLimiterBuilder {
    /// Adds a rule.
    pub fn rule(mut self, rule: Rule) -> Self {
        self.rules.push(rule);
        self
    }

    /// Adds rules.
    pub fn rules<I: IntoIterator<Item = Rule>>(mut self, rules: I) -> Self {
        self.rules.extend(rules);
        self
    }

    /// Keys tracked per rule by the local backend (and the Redis fallback) at most (default 100 000). Idle
    /// keys leave by themselves; see [`LocalLimiter`].
    pub fn max_keys(mut self, max: usize) -> Self {
        self.max_keys = max;
        self
    }

    /// The clock (default: a [`FastClock`], governor's TSC clock behind msec-core's `Clock` trait). Tests pass a
    /// `ManualClock`.
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Adds a penalty box.
    pub fn penalty_box(mut self, config: PenaltyBoxBuilder) -> Self {
        self.penalty = Some(config);
        self
    }

    /// Shares quotas (and bans) through Redis, with `on_failure` deciding what happens when Redis does not
    /// answer in time.
    #[cfg(feature = "redis")]
    pub fn redis(mut self, redis: crate::redis::RedisBackendBuilder, on_failure: FailurePolicy) -> Self {
        self.redis = Some((redis, on_failure));
        self
    }

    /// Adds the rules of a TOML document (`[[rule]]` tables with `name`, `quota`, and optionally `routes`,
    /// `key`, `cost`, `mode`).
    ///
    /// ```
    /// use msec_ratelimit::RateLimiter;
    /// let limiter = RateLimiter::builder()
    ///     .rules_from_toml(r#"
    ///         [[rule]]
    ///         name = "api"
    ///         quota = "100/minute burst 20"
    ///
    ///         [[rule]]
    ///         name = "login"
    ///         quota = "5/minute"
    ///         routes = ["POST /login"]
    ///         key = "ip+route"
    ///         mode = "shadow"
    ///     "#)?
    ///     .build()?;
    /// assert_eq!(limiter.rule_names().collect::<Vec<_>>(), ["api", "login"]);
    /// # Ok::<(), msec_ratelimit::ConfigError>(())
    /// ```
    #[cfg(feature = "toml")]
    pub fn rules_from_toml(self, doc: &str) -> Result<Self, ConfigError> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct File {
            #[serde(default)]
            rule: Vec<RuleConfig>,
        }
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct RuleConfig {
            name: String,
            quota: crate::Quota,
            #[serde(default)]
            routes: Vec<String>,
            key: Option<crate::KeySpec>,
            cost: Option<u32>,
            #[serde(default)]
            mode: Mode,
        }
        let f: File = toml::from_str(doc).map_err(|e| ConfigError::Parse(e.message().to_owned()))?;
        let rules = f.rule.into_iter().map(|r| {
            let mut rule = Rule::new(r.name, r.quota).routes(r.routes).mode(r.mode);
            if let Some(k) = r.key {
                rule = rule.key(k);
            }
            if let Some(c) = r.cost {
                rule = rule.cost(c);
            }
            rule
        });
        Ok(self.rules(rules))
    }

    /// Validates the rules and builds the limiter.
    pub fn build(self) -> Result<RateLimiter, ConfigError> {
        if self.rules.len() > MAX_RULES {
            return Err(ConfigError::TooManyRules(MAX_RULES));
        }
        if self.max_keys == 0 {
            return Err(ConfigError::ZeroBound("max_keys"));
        }
        let mut compiled = Vec::with_capacity(self.rules.len());
        let mut table = RouteTable::new();
        let mut every_route = Vec::new();
        for (i, rule) in self.rules.into_iter().enumerate() {
            if !valid_name(&rule.name) {
                return Err(ConfigError::InvalidRuleName(rule.name.chars().take(100).collect()));
            }
            if compiled.iter().any(|c: &CompiledRule| *c.name == *rule.name) {
                return Err(ConfigError::DuplicateRule(rule.name));
            }
            if let Cost::Fixed(c) = rule.cost {
                if c == 0 {
                    return Err(ConfigError::ZeroBound("cost"));
                }
                if c > rule.quota.burst_size().get() {
                    return Err(ConfigError::CostExceedsBurst(rule.name));
                }
            }
            let mut covers_all = rule.routes.is_empty();
            for r in &rule.routes {
                let spec = RouteSpec::parse(r).map_err(|source| ConfigError::Route {
                    rule: rule.name.clone(),
                    source,
                })?;
                if spec.template().is_none() && spec.method().is_none() {
                    covers_all = true;
                } else {
                    table.insert(spec, i);
                }
            }
            if covers_all {
                every_route.push(i);
            }
            let item = format!("\"{}\"", rule.name);
            let (q, w) = rule.quota.policy();
            let policy = format!("{item};q={q};w={w}");
            let policy_header = HeaderValue::from_maybe_shared(Bytes::from(policy))
                .map_err(|_| ConfigError::InvalidRuleName(rule.name.clone()))?;
            compiled.push(CompiledRule {
                name: Arc::from(rule.name.as_str()),
                rule,
                item,
                policy_header,
            });
        }
        let clock = self.clock.unwrap_or_else(|| Arc::new(FastClock::new()));
        let local = compiled
            .iter()
            .map(|c| LocalLimiter::new(c.rule.quota, self.max_keys, clock.clone()))
            .collect();
        if let Some(p) = &self.penalty {
            p.validate()?;
        }
        #[cfg(feature = "redis")]
        let (backend, penalty) = match self.redis {
            Some((b, policy)) => {
                let redis = Arc::new(b.build(clock.clone(), policy, &compiled)?);
                let penalty = self
                    .penalty
                    .map(|p| PenaltyBox::with_redis(p, clock.clone(), redis.clone()));
                (Backend::Redis(redis), penalty)
            }
            None => (Backend::Local, self.penalty.map(|p| PenaltyBox::new(p, clock.clone()))),
        };
        #[cfg(not(feature = "redis"))]
        let (backend, penalty) = (Backend::Local, self.penalty.map(|p| PenaltyBox::new(p, clock.clone())));
        Ok(RateLimiter {
            inner: Arc::new(Inner {
                rules: compiled,
                table: (!table.is_empty()).then_some(table),
                every_route,
                local,
                backend,
                penalty,
            }),
        })
    }
}

/// The aggregated result of checking a request against its rules.
#[derive(Debug, Clone, Default)]
pub(crate) struct Verdict {
    /// Enforce rule that denied, with its outcome.
    pub(crate) denied: Option<(usize, RuleOutcome)>,
    /// Among enforce rules that allowed: the one with the least remaining share.
    pub(crate) closest: Option<(usize, RuleOutcome)>,
}

impl Verdict {
    pub(crate) fn add(&mut self, idx: usize, out: RuleOutcome, quota_burst: u32, rules: &[CompiledRule]) {
        if !out.allowed {
            self.denied = Some((idx, out));
            return;
        }
        let closer = match &self.closest {
            None => true,
            Some((j, o)) => {
                // Compare remaining / burst without floats: r1 * b2 < r2 * b1.
                let b2 = rules[*j].rule.quota.burst_size().get();
                u64::from(out.remaining) * u64::from(b2) < u64::from(o.remaining) * u64::from(quota_burst)
            }
        };
        if closer {
            self.closest = Some((idx, out));
        }
    }
}

impl Inner {
    /// Calls `f(rule index, matched template)` for every rule applying to `method path`, each once: route-specific
    /// rules from the most specific route, then rules covering every route.
    pub(crate) fn for_each_rule(&self, method: &Method, path: &str, mut f: impl FnMut(usize, Option<&str>) -> bool) {
        let mut seen: u128 = 0;
        if let Some(t) = &self.table {
            for e in t.matches(method, path) {
                let bit = 1u128 << e.value;
                if seen & bit == 0 {
                    seen |= bit;
                    if !f(e.value, e.spec.template().map(|t| &**t)) {
                        return;
                    }
                }
            }
        }
        for &i in &self.every_route {
            if seen & (1u128 << i) == 0 && !f(i, None) {
                return;
            }
        }
    }

    /// The key and cost of rule `i` for this request; `None` when the rule does not apply.
    pub(crate) fn key_and_cost(&self, i: usize, info: &RequestInfo<'_>) -> Option<(Key, NonZeroU32)> {
        let r = &self.rules[i].rule;
        let Some(key) = r.key.extract(info) else {
            metrics::counter!("msec_ratelimit_key_missing_total", "rule" => self.rules[i].name.clone()).increment(1);
            return None;
        };
        let cost = r.cost.of(info)?;
        Some((key, cost))
    }

    /// Records a shadow denial, or a deny's decision, for rule `i`.
    pub(crate) fn note_outcome(&self, ext: &http::Extensions, i: usize, key: &Key, out: &RuleOutcome) {
        let c = &self.rules[i];
        let near = u64::from(out.remaining) * 5 < u64::from(c.rule.quota.burst_size().get());
        if out.allowed {
            if near {
                metrics::counter!("msec_ratelimit_near_limit_total", "rule" => c.name.clone()).increment(1);
            }
            return;
        }
        let shadow = c.rule.mode == Mode::Shadow;
        let outcome = if shadow { Outcome::ShadowDeny } else { Outcome::Deny };
        metrics::counter!(
            "msec_ratelimit_over_limit_total",
            "rule" => c.name.clone(),
            "mode" => if shadow { "shadow" } else { "enforce" }
        )
        .increment(1);
        tracing::debug!(rule = %c.name, key = %key, shadow, retry_after_ms = out.retry_after.as_millis() as u64, "msec-ratelimit: over limit");
        context::record_with(ext, "ratelimit", outcome, ReasonCode::RATE_LIMITED, |d| {
            d.detail("rule", &c.name);
            d.detail("key", key.to_string());
            d.detail("retry_after_ms", out.retry_after.as_millis().to_string());
        });
    }

    /// Checks every applicable rule on the local limiters, stopping at the first enforce rule that denies.
    pub(crate) fn check_local(&self, info: &RequestInfo<'_>) -> Verdict {
        let mut v = Verdict::default();
        self.for_each_rule(info.method, info.uri.path(), |i, template| {
            let info = RequestInfo {
                route: template,
                ..*info
            };
            let Some((key, cost)) = self.key_and_cost(i, &info) else {
                return true;
            };
            let out = self.local[i].check(&key, cost);
            self.note_outcome(info.extensions, i, &key, &out);
            if self.rules[i].rule.mode == Mode::Shadow {
                return true;
            }
            v.add(i, out, self.rules[i].rule.quota.burst_size().get(), &self.rules);
            v.denied.is_none()
        });
        v
    }

    /// The `RateLimit` field item for rule `i`: `"name";r=<remaining>;t=<seconds>`.
    pub(crate) fn ratelimit_value(&self, i: usize, out: &RuleOutcome) -> HeaderValue {
        let item = self.rules[i].item.as_bytes();
        // Rule names are at most 64 bytes (`valid_name`), so the item fits with room for both numbers; formatted
        // on the stack and copied once into an exactly sized buffer (this runs on every response).
        let mut buf = [0u8; 128];
        let mut n = 0;
        let mut put = |b: &[u8]| {
            if let Some(dst) = buf.get_mut(n..n + b.len()) {
                dst.copy_from_slice(b);
                n += b.len();
            }
        };
        let mut digits = [0u8; 20];
        put(item);
        put(b";r=");
        put(msec_core::text::decimal(&mut digits, u64::from(out.remaining)));
        put(b";t=");
        put(msec_core::text::decimal(&mut digits, ceil_secs(out.reset)));
        HeaderValue::from_maybe_shared(Bytes::copy_from_slice(&buf[..n]))
            .unwrap_or_else(|_| HeaderValue::from_static("\"?\";r=0"))
    }

    /// Records the allow decision, naming the rule closest to its limit.
    pub(crate) fn note_allow(&self, ext: &http::Extensions, v: &Verdict, via: Option<&'static str>) {
        context::record_with(ext, "ratelimit", Outcome::Allow, codes::WITHIN_LIMIT, |d| {
            if let Some((i, o)) = &v.closest {
                d.detail("rule", &self.rules[*i].name);
                d.detail("remaining", o.remaining);
            }
            if let Some(via) = via {
                d.detail("backend", via);
            }
        });
    }
}

/// Retry-After seconds for a wait (at least 1).
pub(crate) fn retry_secs(d: Duration) -> u64 {
    ceil_secs(d).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_errors() {
        let q = crate::Quota::per_second(5);
        let e = |b: RateLimiterBuilder| b.build().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e(RateLimiter::builder().rule(Rule::new("bad name", q))).contains("invalid rule name"));
        assert!(e(RateLimiter::builder().rule(Rule::new("a", q)).rule(Rule::new("a", q))).contains("duplicate"));
        assert!(e(RateLimiter::builder().rule(Rule::new("a", q).cost(0))).contains("cost"));
        assert!(e(RateLimiter::builder().rule(Rule::new("a", q).cost(6))).contains("exceeds the burst"));
        assert!(e(RateLimiter::builder().rule(Rule::new("a", q).route("get /x"))).contains("rule `a`"));
        assert!(e(RateLimiter::builder().max_keys(0)).contains("max_keys"));
        let many = (0..=MAX_RULES).map(|i| Rule::new(format!("r{i}"), q));
        assert!(e(RateLimiter::builder().rules(many)).contains("at most"));
    }

    #[test]
    fn policy_headers() {
        let l = RateLimiter::builder()
            .rule(Rule::new("api", crate::Quota::per_minute(100).burst(20)))
            .build()
            .unwrap();
        assert_eq!(l.inner.rules[0].policy_header, "\"api\";q=20;w=12");
        let v = l.inner.ratelimit_value(
            0,
            &RuleOutcome {
                allowed: true,
                remaining: 7,
                reset: Duration::from_millis(7_800),
                retry_after: Duration::ZERO,
            },
        );
        assert_eq!(v, "\"api\";r=7;t=8");
    }
}
