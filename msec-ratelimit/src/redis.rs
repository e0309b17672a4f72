//! The Redis backend (feature `redis`): quotas and bans shared by every replica.
//!
//! - **One round trip, atomic**: a Lua script checks the ban and every applicable rule of a request with GCRA
//!   and updates them, all inside Redis (EVALSHA; on `NOSCRIPT` the script is loaded and the call repeated).
//!   Rules are checked in the same order and with the same stop-at-first-denial semantics as the local backend.
//! - **Keys expire with their window**: a rule key lives exactly until its bucket would be full again, so idle
//!   keys cost Redis nothing.
//! - **Local deny cache**: once Redis says a key is over its limit until *t*, this replica answers 429 for that
//!   key until *t* without asking Redis (bans are cached for at most
//!   [`ban_cache_max`](RedisBackendBuilder::ban_cache_max), so an `unban` reaches every replica quickly).
//! - **Short timeout and an explicit [`FailurePolicy`]**: after a failure Redis is not asked again for
//!   [`retry_after_failure`](RedisBackendBuilder::retry_after_failure); meanwhile the policy decides. Failures are
//!   counted in `msec_ratelimit_backend_failures_total{policy, error}` and logged at most once a second.
//! - **Time** comes from the limiter's injected clock (wall time, microseconds), so replicas need synchronised
//!   clocks (NTP); a skew of *d* lets a client gain about *d* × rate.
//!
//! Standalone Redis (or a Sentinel-managed primary) only: the script touches several keys, which Redis Cluster
//! would refuse across slots.
//!
//! ```no_run
//! # async fn demo() -> Result<(), msec_ratelimit::ConfigError> {
//! use std::time::Duration;
//! use msec_ratelimit::redis::RedisBackendBuilder;
//! use msec_ratelimit::{FailurePolicy, Quota, RateLimiter, Rule};
//!
//! let limiter = RateLimiter::builder()
//!     .rule(Rule::new("api", Quota::per_minute(600).burst(100)))
//!     .redis(
//!         RedisBackendBuilder::new("redis://127.0.0.1:6379").prefix("orders-svc").timeout(Duration::from_millis(30)),
//!         FailurePolicy::FallbackLocal,
//!     )
//!     .build()?; // inside a Tokio runtime; connects lazily
//! # let _ = limiter; Ok(()) }
//! ```

use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use http::{Request, Response};
use msec_core::clock::SharedClock;
use msec_core::context::{self, Outcome};
use msec_core::{ReasonCode, Rejection, ResponseBody};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tower_service::Service;

use crate::error::{BackendError, ConfigError};
use crate::key::{Key, RequestInfo};
use crate::layer::{append_headers, is_failure};
use crate::limiter::{CompiledRule, RateLimiter, Verdict};
use crate::local::RuleOutcome;
use crate::penalty::PenaltyBoxBuilder;
use crate::rule::Mode;
use crate::store::BoundedMap;
use crate::{FailurePolicy, codes};

const GCRA_SCRIPT: &str = r"
local now = tonumber(ARGV[1])
if ARGV[2] == '1' then
  local untl = tonumber(redis.call('GET', KEYS[1]))
  if untl and untl > now then return {-1, untl - now} end
end
local out = {}
for i = 2, #KEYS do
  local b = 3 + (i - 2) * 4
  local t = tonumber(ARGV[b])
  local tau = tonumber(ARGV[b + 1])
  local cost = tonumber(ARGV[b + 2])
  local enforce = ARGV[b + 3] == '1'
  local tat = tonumber(redis.call('GET', KEYS[i]))
  if not tat or tat < now then tat = now end
  local extra = t * (cost - 1)
  local earliest = tat + extra - tau
  if now < earliest then
    out[#out + 1] = 0
    out[#out + 1] = earliest - now
    out[#out + 1] = tat - now
    if enforce then return out end
  else
    local new = tat + t + extra
    redis.call('SET', KEYS[i], string.format('%d', new), 'PX', string.format('%d', math.ceil((new - now) / 1000)))
    out[#out + 1] = 1
    out[#out + 1] = 0
    out[#out + 1] = new - now
  end
end
return out
";

const FAILURE_SCRIPT: &str = r"
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local threshold = tonumber(ARGV[3])
local ban = tonumber(ARGV[4])
local factor = tonumber(ARGV[5])
local maxban = tonumber(ARGV[6])
local memory = tonumber(ARGV[7])
local banned = tonumber(redis.call('GET', KEYS[2]))
if banned and banned > now then return {0, 0} end
local f = redis.call('HMGET', KEYS[1], 'e', 'n')
local e = tonumber(f[1])
local n = tonumber(f[2])
if not e or not n or e <= now then
  e = now + window
  n = 0
end
n = n + 1
if n >= threshold then
  redis.call('DEL', KEYS[1])
  local s = redis.call('HMGET', KEYS[3], 'n', 'u')
  local strikes = tonumber(s[1])
  local su = tonumber(s[2])
  if not strikes or not su or su <= now then strikes = 0 end
  strikes = strikes + 1
  local d = ban
  for _ = 2, math.min(strikes, 64) do
    d = d * factor
    if d >= maxban then break end
  end
  if d > maxban then d = maxban end
  local untl = now + d
  redis.call('SET', KEYS[2], string.format('%d', untl), 'PX', string.format('%d', math.ceil(d / 1000)))
  redis.call('HSET', KEYS[3], 'n', string.format('%d', strikes), 'u', string.format('%d', untl + memory))
  redis.call('PEXPIRE', KEYS[3], string.format('%d', math.ceil((d + memory) / 1000)))
  return {1, d}
end
redis.call('HSET', KEYS[1], 'e', string.format('%d', e), 'n', string.format('%d', n))
redis.call('PEXPIRE', KEYS[1], string.format('%d', math.ceil((e - now) / 1000)))
return {0, n}
";

/// Configuration of the Redis backend; give it to [`RateLimiterBuilder::redis`](crate::RateLimiterBuilder::redis).
#[derive(Clone)]
#[must_use]
pub struct RedisBackendBuilder {
    url: String,
    prefix: String,
    timeout: Duration,
    retry_after_failure: Duration,
    deny_cache_keys: usize,
    ban_cache_max: Duration,
}

impl fmt::Debug for RedisBackendBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may carry a password.
        f.debug_struct("RedisBackendBuilder")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("retry_after_failure", &self.retry_after_failure)
            .field("deny_cache_keys", &self.deny_cache_keys)
            .field("ban_cache_max", &self.ban_cache_max)
            .finish_non_exhaustive()
    }
}

impl RedisBackendBuilder {
    /// Redis at `url` (`redis://host:port/db`, `redis://:password@host`).
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            prefix: "msec".into(),
            timeout: Duration::from_millis(50),
            retry_after_failure: Duration::from_secs(1),
            deny_cache_keys: 100_000,
            ban_cache_max: Duration::from_secs(5),
        }
    }
    /// Prefix of every key (default `msec`); give each service its own.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }
    /// How long a decision may take before the failure policy applies (default 50 ms).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
    /// After a failure, how long the failure policy decides without asking Redis (default 1 s).
    pub fn retry_after_failure(mut self, d: Duration) -> Self {
        self.retry_after_failure = d;
        self
    }
    /// Keys the local deny cache holds at most (default 100 000).
    pub fn deny_cache_keys(mut self, n: usize) -> Self {
        self.deny_cache_keys = n;
        self
    }
    /// The longest a ban is answered from the local cache before Redis is asked again (default 5 s).
    pub fn ban_cache_max(mut self, d: Duration) -> Self {
        self.ban_cache_max = d;
        self
    }

    pub(crate) fn build(
        self,
        clock: SharedClock,
        policy: FailurePolicy,
        rules: &[CompiledRule],
    ) -> Result<RedisBackend, ConfigError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(ConfigError::Redis(
                "the Redis backend must be built inside a Tokio runtime".into(),
            ));
        }
        if self.timeout.is_zero() {
            return Err(ConfigError::ZeroBound("redis timeout"));
        }
        let client = redis::Client::open(self.url.as_str()).map_err(|e| ConfigError::Redis(e.to_string()))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(Duration::from_millis(100));
        let conn = client
            .get_connection_manager_lazy(config)
            .map_err(|e| ConfigError::Redis(e.to_string()))?;
        let prefix = self.prefix;
        // The failure series exist from the start (at zero), so a dashboard can rate() them before the first one.
        for error in ["timeout", "circuit_open", "error", "protocol"] {
            metrics::counter!("msec_ratelimit_backend_failures_total", "policy" => policy.as_str(), "error" => error)
                .increment(0);
        }
        Ok(RedisBackend {
            conn,
            gcra: redis::Script::new(GCRA_SCRIPT),
            failure: redis::Script::new(FAILURE_SCRIPT),
            admin_ban: redis::Script::new("redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1"),
            admin_unban: redis::Script::new("return redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])"),
            admin_get_ban: redis::Script::new(
                "local u = tonumber(redis.call('GET', KEYS[1])) local now = tonumber(ARGV[1]) \
                 if u and u > now then return u - now end return 0",
            ),
            rule_prefix: rules.iter().map(|r| format!("{prefix}:rl:{}:", r.name)).collect(),
            prefix,
            timeout: self.timeout,
            retry_after_failure: self.retry_after_failure,
            ban_cache_max: self.ban_cache_max,
            policy,
            clock: clock.clone(),
            deny_cache: BoundedMap::new(self.deny_cache_keys.max(1), clock.clone(), "deny_cache"),
            ban_cache: BoundedMap::new(self.deny_cache_keys.max(1), clock.clone(), "ban_cache"),
            timeline: BoundedMap::new(1, clock, "timeline"),
            down_until: AtomicU64::new(0),
            last_log: AtomicU64::new(0),
        })
    }
}

pub(crate) struct RedisBackend {
    conn: ConnectionManager,
    gcra: redis::Script,
    failure: redis::Script,
    admin_ban: redis::Script,
    admin_unban: redis::Script,
    admin_get_ban: redis::Script,
    rule_prefix: Vec<String>,
    prefix: String,
    timeout: Duration,
    retry_after_failure: Duration,
    ban_cache_max: Duration,
    pub(crate) policy: FailurePolicy,
    clock: SharedClock,
    deny_cache: BoundedMap<(usize, Key), u64>,
    ban_cache: BoundedMap<Key, u64>,
    /// Only its clock reading is used: the shared timeline of the caches and the circuit breaker.
    timeline: BoundedMap<u8, u64>,
    down_until: AtomicU64,
    last_log: AtomicU64,
}

fn us(d: Duration) -> i64 {
    d.as_micros().try_into().unwrap_or(i64::MAX)
}

fn ns(d: Duration) -> u64 {
    d.as_nanos().try_into().unwrap_or(u64::MAX)
}

fn from_us(v: i64) -> Duration {
    Duration::from_micros(v.max(0).unsigned_abs())
}

/// GCRA parameters in microseconds for Redis.
fn params(rule: &CompiledRule) -> (i64, i64) {
    let t = us(rule.rule.quota.emission_interval()).max(1);
    let tau = t.saturating_mul(i64::from(rule.rule.quota.burst_size().get()) - 1);
    (t, tau)
}

pub(crate) enum Decided {
    Banned(Duration),
    Outcomes(Vec<RuleOutcome>),
}

impl RedisBackend {
    /// One `PING`, bounded by the timeout. Ignores the circuit breaker: a readiness probe wants the truth.
    pub(crate) async fn ping(&self) -> Result<(), BackendError> {
        let mut conn = self.conn.clone();
        let r = match tokio::time::timeout(self.timeout, redis::cmd("PING").query_async::<String>(&mut conn)).await {
            Err(_) => Err(BackendError::Timeout),
            Ok(Err(e)) if e.is_timeout() => Err(BackendError::Timeout),
            Ok(Err(e)) => Err(BackendError::Backend(e.to_string())),
            Ok(Ok(pong)) if pong == "PONG" => Ok(()),
            Ok(Ok(_)) => Err(BackendError::Protocol),
        };
        metrics::counter!("msec_ratelimit_backend_pings_total", "result" => if r.is_ok() { "ok" } else { "error" })
            .increment(1);
        r
    }

    fn now_us(&self) -> i64 {
        us(self
            .clock
            .now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default())
    }

    fn circuit_open(&self) -> bool {
        self.timeline.now() < self.down_until.load(Ordering::Relaxed)
    }

    fn ban_key(&self, key: &Key) -> String {
        format!("{}:ban:{key}", self.prefix)
    }

    pub(crate) fn cached_ban(&self, key: &Key) -> Option<Duration> {
        let until = self.ban_cache.get(key)?;
        let now = self.ban_cache.now();
        (until > now).then(|| Duration::from_nanos(until - now))
    }

    pub(crate) fn cached_deny(&self, rule: usize, key: &Key) -> Option<Duration> {
        let until = self.deny_cache.get(&(rule, key.clone()))?;
        let now = self.deny_cache.now();
        (until > now).then(|| Duration::from_nanos(until - now))
    }

    fn note_failure(&self, e: &BackendError) {
        metrics::counter!(
            "msec_ratelimit_backend_failures_total",
            "policy" => self.policy.as_str(),
            "error" => e.label()
        )
        .increment(1);
        let now = self.timeline.now();
        if !matches!(e, BackendError::CircuitOpen) {
            self.down_until
                .store(now.saturating_add(ns(self.retry_after_failure)), Ordering::Relaxed);
        }
        let last = self.last_log.load(Ordering::Relaxed);
        if (last == 0 || now.saturating_sub(last) >= 1_000_000_000)
            && self
                .last_log
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(error = %e, policy = self.policy.as_str(), "msec-ratelimit: Redis backend failed; applying the failure policy");
        }
    }

    async fn run<T: redis::FromRedisValue>(&self, inv: &redis::ScriptInvocation<'_>) -> Result<T, BackendError> {
        if self.circuit_open() {
            return Err(BackendError::CircuitOpen);
        }
        let mut conn = self.conn.clone();
        let started = Instant::now();
        let r = match tokio::time::timeout(self.timeout, inv.invoke_async::<T>(&mut conn)).await {
            Err(_) => Err(BackendError::Timeout),
            Ok(Err(e)) if e.is_timeout() => Err(BackendError::Timeout),
            Ok(Err(e)) => Err(BackendError::Backend(e.to_string())),
            Ok(Ok(v)) => Ok(v),
        };
        metrics::histogram!("msec_ratelimit_redis_seconds").record(started.elapsed().as_secs_f64());
        r
    }

    /// One script call: the ban check (when `ban_key`) and every planned rule.
    pub(crate) async fn decide(
        &self,
        rules: &[CompiledRule],
        ban_key: Option<&Key>,
        plan: &[Item],
    ) -> Result<Decided, BackendError> {
        let mut inv = self.gcra.prepare_invoke();
        inv.key(ban_key.map_or_else(|| format!("{}:ban:-", self.prefix), |k| self.ban_key(k)));
        for it in plan {
            inv.key(format!("{}{}", self.rule_prefix[it.rule], it.key));
        }
        inv.arg(self.now_us()).arg(u8::from(ban_key.is_some()));
        for it in plan {
            let r = &rules[it.rule];
            let (t, tau) = params(r);
            inv.arg(t)
                .arg(tau)
                .arg(it.cost.get())
                .arg(u8::from(r.rule.mode == Mode::Enforce));
        }
        let v: Vec<i64> = self.run(&inv).await?;
        if v.first() == Some(&-1) {
            let left = from_us(*v.get(1).ok_or(BackendError::Protocol)?);
            if let Some(k) = ban_key {
                let now = self.ban_cache.now();
                let until = now.saturating_add(ns(left.min(self.ban_cache_max)));
                self.ban_cache.update(k, |s| *s = Some(until));
            }
            return Ok(Decided::Banned(left));
        }
        if !v.len().is_multiple_of(3) || v.len() / 3 > plan.len() {
            return Err(BackendError::Protocol);
        }
        let mut outs = Vec::with_capacity(v.len() / 3);
        for (it, c) in plan.iter().zip(v.chunks_exact(3)) {
            let r = &rules[it.rule];
            let (t, tau) = params(r);
            let burst = r.rule.quota.burst_size().get();
            let out = if c[0] == 1 {
                let remaining = ((tau + t - c[2]).max(0) / t).min(i64::from(burst));
                RuleOutcome {
                    allowed: true,
                    remaining: u32::try_from(remaining).unwrap_or(0),
                    reset: from_us(c[2]),
                    retry_after: Duration::ZERO,
                }
            } else {
                let wait = from_us(c[1]);
                if r.rule.mode == Mode::Enforce {
                    // Any request (cost 1) could pass (cost − 1) intervals earlier than this one.
                    let wait1 = wait.saturating_sub(from_us(t.saturating_mul(i64::from(it.cost.get()) - 1)));
                    let until = self.deny_cache.now().saturating_add(ns(wait1));
                    self.deny_cache.update(&(it.rule, it.key.clone()), |s| *s = Some(until));
                }
                RuleOutcome {
                    allowed: false,
                    remaining: 0,
                    reset: from_us(c[2]),
                    retry_after: wait,
                }
            };
            outs.push(out);
        }
        Ok(Decided::Outcomes(outs))
    }

    pub(crate) async fn ban(&self, key: &Key, d: Duration) -> Result<(), BackendError> {
        let until = self.now_us().saturating_add(us(d));
        let mut inv = self.admin_ban.prepare_invoke();
        inv.key(self.ban_key(key))
            .arg(until)
            .arg(us(d).saturating_add(999) / 1000);
        self.admin::<redis::Value>(&inv).await.map(drop)
    }

    pub(crate) async fn unban(&self, key: &Key) -> Result<(), BackendError> {
        self.ban_cache.update(key, |s| *s = None);
        let mut inv = self.admin_unban.prepare_invoke();
        inv.key(self.ban_key(key))
            .key(format!("{}:fail:{key}", self.prefix))
            .key(format!("{}:strike:{key}", self.prefix));
        self.admin::<redis::Value>(&inv).await.map(drop)
    }

    pub(crate) async fn banned_for(&self, key: &Key) -> Result<Option<Duration>, BackendError> {
        let mut inv = self.admin_get_ban.prepare_invoke();
        inv.key(self.ban_key(key)).arg(self.now_us());
        let left: i64 = self.admin(&inv).await?;
        Ok((left > 0).then(|| from_us(left)))
    }

    pub(crate) async fn record_failure(
        &self,
        key: &Key,
        cfg: &PenaltyBoxBuilder,
    ) -> Result<Option<Duration>, BackendError> {
        let mut inv = self.failure.prepare_invoke();
        inv.key(format!("{}:fail:{key}", self.prefix))
            .key(self.ban_key(key))
            .key(format!("{}:strike:{key}", self.prefix))
            .arg(self.now_us())
            .arg(us(cfg.window).max(1))
            .arg(cfg.threshold)
            .arg(us(cfg.ban).max(1))
            .arg(cfg.factor)
            .arg(us(cfg.max_ban.max(cfg.ban)).max(1))
            .arg(us(cfg.strike_memory));
        let v: Vec<i64> = self.run(&inv).await?;
        match v.as_slice() {
            [1, d] => Ok(Some(from_us(*d))),
            [0, _] => Ok(None),
            _ => Err(BackendError::Protocol),
        }
    }

    /// An administrative call (ban, unban, lookup): failures are counted and logged, then returned.
    async fn admin<T: redis::FromRedisValue>(&self, inv: &redis::ScriptInvocation<'_>) -> Result<T, BackendError> {
        let r = self.run(inv).await;
        if let Err(e) = &r {
            self.note_failure(e);
        }
        r
    }
}

/// One rule to check for one request.
pub(crate) struct Item {
    pub(crate) rule: usize,
    pub(crate) key: Key,
    pub(crate) cost: NonZeroU32,
}

pub(crate) enum Prepared<ReqBody, ResBody> {
    Answer(Response<ResponseBody<ResBody>>),
    Ask(Ask<ReqBody>),
}

pub(crate) struct Ask<ReqBody> {
    limiter: RateLimiter,
    redis: Arc<RedisBackend>,
    req: Request<ReqBody>,
    plan: Vec<Item>,
    ban_key: Option<Key>,
    headers: bool,
}

/// The synchronous part of a Redis-backed decision: keys, the deny cache, costs above the burst.
pub(crate) fn prepare<ReqBody, ResBody>(
    limiter: &RateLimiter,
    redis: &Arc<RedisBackend>,
    req: Request<ReqBody>,
    headers: bool,
) -> Prepared<ReqBody, ResBody> {
    let inner = &*limiter.inner;
    let info = RequestInfo::new(&req, None);
    let ban_key = inner.penalty.as_ref().and_then(|p| p.key_spec().extract(&info));
    if let Some(k) = &ban_key
        && let Some(left) = redis.cached_ban(k)
    {
        metrics::counter!("msec_ratelimit_deny_cache_hits_total", "kind" => "ban").increment(1);
        return Prepared::Answer(inner.banned_response(req.extensions(), req.headers(), k, left));
    }
    let mut plan = Vec::new();
    let mut denied: Option<(usize, Key, RuleOutcome)> = None;
    inner.for_each_rule(info.method, info.uri.path(), |i, template| {
        let info = RequestInfo {
            route: template,
            ..info
        };
        let Some((key, cost)) = inner.key_and_cost(i, &info) else {
            return true;
        };
        let r = &inner.rules[i].rule;
        let enforce = r.mode == Mode::Enforce;
        let cached = if enforce { redis.cached_deny(i, &key) } else { None };
        let too_big = cost > r.quota.burst_size();
        if cached.is_some() || too_big {
            let wait = cached.unwrap_or_else(|| r.quota.refill_time());
            let t = r.quota.emission_interval();
            let out = RuleOutcome {
                allowed: false,
                remaining: 0,
                retry_after: wait,
                reset: wait + t.saturating_mul(r.quota.burst_size().get().saturating_sub(1)),
            };
            if cached.is_some() {
                metrics::counter!("msec_ratelimit_deny_cache_hits_total", "kind" => "rule").increment(1);
            }
            if enforce {
                denied = Some((i, key, out));
                return false;
            }
            inner.note_outcome(info.extensions, i, &key, &out);
            return true;
        }
        plan.push(Item { rule: i, key, cost });
        true
    });
    if let Some((i, key, out)) = denied {
        inner.note_outcome(req.extensions(), i, &key, &out);
        return Prepared::Answer(inner.deny_response(req.headers(), i, &out, headers));
    }
    Prepared::Ask(Ask {
        limiter: limiter.clone(),
        redis: redis.clone(),
        req,
        plan,
        ban_key,
        headers,
    })
}

impl<ReqBody> Ask<ReqBody> {
    /// Asks Redis, applies the failure policy if needed, calls `svc`, decorates the response and counts a
    /// failure for the penalty box.
    pub(crate) async fn run<S, ResBody>(self, mut svc: S) -> Result<Response<ResponseBody<ResBody>>, S::Error>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    {
        let Self {
            limiter,
            redis,
            req,
            plan,
            ban_key,
            headers,
        } = self;
        let inner = &*limiter.inner;
        let mut via = None;
        let verdict = if plan.is_empty() && ban_key.is_none() {
            Verdict::default()
        } else {
            match redis.decide(&inner.rules, ban_key.as_ref(), &plan).await {
                Ok(Decided::Banned(left)) => {
                    let k = ban_key.as_ref().map_or_else(Key::global, Clone::clone);
                    return Ok(inner.banned_response(req.extensions(), req.headers(), &k, left));
                }
                Ok(Decided::Outcomes(outs)) => {
                    let mut v = Verdict::default();
                    for (it, out) in plan.iter().zip(&outs) {
                        inner.note_outcome(req.extensions(), it.rule, &it.key, out);
                        let r = &inner.rules[it.rule].rule;
                        if r.mode == Mode::Enforce {
                            v.add(it.rule, *out, r.quota.burst_size().get(), &inner.rules);
                        }
                    }
                    v
                }
                Err(e) => {
                    redis.note_failure(&e);
                    match redis.policy {
                        FailurePolicy::FailOpen => {
                            context::record_with(
                                req.extensions(),
                                "ratelimit",
                                Outcome::Allow,
                                codes::FAILED_OPEN,
                                |d| {
                                    d.detail("backend", "redis");
                                    d.detail("error", e.label());
                                },
                            );
                            let resp = svc.call(req).await?;
                            return Ok(resp.map(ResponseBody::new));
                        }
                        FailurePolicy::FailClosed => {
                            context::record_with(
                                req.extensions(),
                                "ratelimit",
                                Outcome::Deny,
                                codes::BACKEND_UNAVAILABLE,
                                |d| {
                                    d.detail("backend", "redis");
                                    d.detail("error", e.label());
                                },
                            );
                            return Ok(Rejection::unavailable(
                                ReasonCode::SERVICE_UNAVAILABLE,
                                "rate limiting is temporarily unavailable",
                            )
                            .with_retry_after(1)
                            .into_response(req.headers()));
                        }
                        FailurePolicy::FallbackLocal => {
                            via = Some("local_fallback");
                            if let (Some(pb), Some(k)) = (&inner.penalty, &ban_key)
                                && let Some(left) = pb.local_banned_for(k)
                            {
                                return Ok(inner.banned_response(req.extensions(), req.headers(), k, left));
                            }
                            inner.check_local(&RequestInfo::new(&req, None))
                        }
                    }
                }
            }
        };
        // The denial itself was recorded when its rule was checked.
        if let Some((i, out)) = &verdict.denied {
            return Ok(inner.deny_response(req.headers(), *i, out, headers));
        }
        if verdict.closest.is_some() || via.is_some() {
            inner.note_allow(req.extensions(), &verdict, via);
        }
        let pair = if headers { inner.header_pair(&verdict) } else { None };
        let mut resp = svc.call(req).await?;
        if let Some((policy, value)) = pair {
            append_headers(resp.headers_mut(), policy, value);
        }
        if let (Some(pb), Some(k)) = (&inner.penalty, &ban_key)
            && is_failure(pb, &resp)
            && let Err(e) = pb.record_failure(k).await
        {
            redis.note_failure(&e);
            if redis.policy == FailurePolicy::FallbackLocal {
                pb.local_failure(k);
            }
        }
        Ok(resp.map(ResponseBody::new))
    }
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}
