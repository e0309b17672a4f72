//! The penalty box: an automatic, escalating ban for keys that keep failing.
//!
//! Every response the [`RateLimitLayer`](crate::RateLimitLayer) passes back is shown to a failure predicate (by
//! default: 401 and 403, and the gRPC trailers-only UNAUTHENTICATED / PERMISSION_DENIED). After `threshold`
//! failures of one key within `window`, the key is banned for `ban`; each further ban while the key is still
//! remembered (`strike_memory`) lasts `factor` times longer, up to `max_ban`. A banned key gets 429 `banned`
//! with `Retry-After` before any rule is checked.
//!
//! Bans can also be set by hand or by a threat detector through [`PenaltyBox::ban`] / [`PenaltyBox::unban`].
//! With the Redis backend, failure counts and bans live in Redis and every replica sees them.
//!
//! ```
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use msec_ratelimit::{PenaltyBox, Quota, RateLimiter, Rule};
//!
//! let limiter = RateLimiter::builder()
//!     .rule(Rule::new("api", Quota::per_minute(600)))
//!     .penalty_box(PenaltyBox::builder().threshold(10).window(Duration::from_secs(60)).ban(Duration::from_secs(300)))
//!     .build()?;
//! let bans = limiter.penalty_box().expect("configured").clone();
//! let key = bans.key_for_ip("203.0.113.9".parse()?).expect("an IP-keyed box");
//! bans.ban(&key, Duration::from_secs(3600)).await?;
//! assert!(bans.banned_for(&key).await?.is_some());
//! bans.unban(&key).await?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, StatusCode};
use msec_core::clock::SharedClock;

use crate::error::{BackendError, ConfigError};
use crate::key::{Key, KeySpec};
use crate::store::{BoundedMap, Expiring};

/// What the failure predicate sees of a response.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct FailureInfo<'a> {
    /// The HTTP status.
    pub status: StatusCode,
    /// The response headers (`grpc-status` for trailers-only gRPC answers).
    pub headers: &'a HeaderMap,
    /// The response extensions (a [`Rejection`](msec_core::Rejection) when an msec layer refused the request).
    pub extensions: &'a http::Extensions,
}

/// Decides whether a response counts as a failure.
pub type FailurePredicate = Arc<dyn Fn(&FailureInfo<'_>) -> bool + Send + Sync>;

/// The default failure predicate: 401, 403, or a trailers-only gRPC status 16 (UNAUTHENTICATED) or 7
/// (PERMISSION_DENIED).
pub fn auth_failures(info: &FailureInfo<'_>) -> bool {
    if matches!(info.status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
        return true;
    }
    matches!(
        info.headers.get("grpc-status").map(http::HeaderValue::as_bytes),
        Some(b"16" | b"7")
    )
}

/// Configuration of a [`PenaltyBox`]; give it to
/// [`RateLimiterBuilder::penalty_box`](crate::RateLimiterBuilder::penalty_box).
#[derive(Clone)]
#[must_use]
pub struct PenaltyBoxBuilder {
    pub(crate) key: KeySpec,
    pub(crate) threshold: u32,
    pub(crate) window: Duration,
    pub(crate) ban: Duration,
    pub(crate) factor: u32,
    pub(crate) max_ban: Duration,
    pub(crate) strike_memory: Duration,
    pub(crate) max_keys: usize,
    pub(crate) predicate: FailurePredicate,
}

impl fmt::Debug for PenaltyBoxBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PenaltyBoxBuilder")
            .field("key", &self.key)
            .field("threshold", &self.threshold)
            .field("window", &self.window)
            .field("ban", &self.ban)
            .field("factor", &self.factor)
            .field("max_ban", &self.max_ban)
            .field("strike_memory", &self.strike_memory)
            .field("max_keys", &self.max_keys)
            .finish_non_exhaustive()
    }
}

impl Default for PenaltyBoxBuilder {
    fn default() -> Self {
        Self {
            key: KeySpec::client_ip(),
            threshold: 10,
            window: Duration::from_secs(60),
            ban: Duration::from_secs(300),
            factor: 2,
            max_ban: Duration::from_secs(86_400),
            strike_memory: Duration::from_secs(86_400),
            max_keys: 100_000,
            predicate: Arc::new(auth_failures),
        }
    }
}

impl PenaltyBoxBuilder {
    /// What failures are counted per (default: client IP, IPv6 by /64).
    pub fn key(mut self, key: KeySpec) -> Self {
        self.key = key;
        self
    }
    /// Failures that trigger a ban (default 10).
    pub fn threshold(mut self, failures: u32) -> Self {
        self.threshold = failures;
        self
    }
    /// The window the failures are counted in (default 60 s; the window starts at the first failure).
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }
    /// The first ban's length (default 5 minutes).
    pub fn ban(mut self, ban: Duration) -> Self {
        self.ban = ban;
        self
    }
    /// Each further ban of a remembered key lasts `factor` times the previous one (default 2; 1 = no
    /// escalation).
    pub fn escalate(mut self, factor: u32) -> Self {
        self.factor = factor;
        self
    }
    /// The longest ban (default 24 h).
    pub fn max_ban(mut self, max: Duration) -> Self {
        self.max_ban = max;
        self
    }
    /// How long after its last ban a key's strikes are remembered for escalation (default 24 h).
    pub fn strike_memory(mut self, memory: Duration) -> Self {
        self.strike_memory = memory;
        self
    }
    /// Keys tracked locally at most (default 100 000; idle ones leave by themselves).
    pub fn max_keys(mut self, max: usize) -> Self {
        self.max_keys = max;
        self
    }
    /// Which responses count as failures (default [`auth_failures`]).
    pub fn count_failures(mut self, predicate: impl Fn(&FailureInfo<'_>) -> bool + Send + Sync + 'static) -> Self {
        self.predicate = Arc::new(predicate);
        self
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.threshold == 0 {
            return Err(ConfigError::ZeroBound("penalty threshold"));
        }
        if self.window.is_zero() {
            return Err(ConfigError::ZeroBound("penalty window"));
        }
        if self.ban.is_zero() {
            return Err(ConfigError::ZeroBound("penalty ban"));
        }
        if self.factor == 0 {
            return Err(ConfigError::ZeroBound("penalty escalation factor"));
        }
        if self.max_keys == 0 {
            return Err(ConfigError::ZeroBound("penalty max_keys"));
        }
        Ok(())
    }

    /// The ban length for the `strike`-th ban (1-based).
    pub(crate) fn ban_for_strike(&self, strike: u32) -> Duration {
        let mut d = self.ban;
        for _ in 1..strike.min(64) {
            d = d.saturating_mul(self.factor);
            if d >= self.max_ban {
                break;
            }
        }
        d.min(self.max_ban.max(self.ban))
    }
}

/// Local penalty state of one key (nanoseconds on the store's timeline).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PenaltyState {
    window_end: u64,
    failures: u32,
    banned_until: u64,
    strikes: u32,
    strikes_until: u64,
}

impl Expiring for PenaltyState {
    fn expires_at(&self) -> u64 {
        self.window_end.max(self.banned_until).max(self.strikes_until)
    }
}

fn nanos(d: Duration) -> u64 {
    d.as_nanos().try_into().unwrap_or(u64::MAX)
}

/// A handle on the penalty box of a [`RateLimiter`](crate::RateLimiter). Clones share it.
#[derive(Clone)]
pub struct PenaltyBox {
    pub(crate) inner: Arc<PenaltyInner>,
}

pub(crate) struct PenaltyInner {
    pub(crate) cfg: PenaltyBoxBuilder,
    pub(crate) local: BoundedMap<Key, PenaltyState>,
    #[cfg(feature = "redis")]
    pub(crate) redis: Option<Arc<crate::redis::RedisBackend>>,
}

impl fmt::Debug for PenaltyBox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PenaltyBox")
            .field("config", &self.inner.cfg)
            .field("tracked_keys", &self.inner.local.len())
            .finish()
    }
}

impl PenaltyBox {
    /// Starts a configuration.
    pub fn builder() -> PenaltyBoxBuilder {
        PenaltyBoxBuilder::default()
    }

    pub(crate) fn new(cfg: PenaltyBoxBuilder, clock: SharedClock) -> Self {
        let local = BoundedMap::new(cfg.max_keys, clock, "penalty");
        Self {
            inner: Arc::new(PenaltyInner {
                cfg,
                local,
                #[cfg(feature = "redis")]
                redis: None,
            }),
        }
    }

    #[cfg(feature = "redis")]
    pub(crate) fn with_redis(
        cfg: PenaltyBoxBuilder,
        clock: SharedClock,
        redis: Arc<crate::redis::RedisBackend>,
    ) -> Self {
        let local = BoundedMap::new(cfg.max_keys, clock, "penalty");
        Self {
            inner: Arc::new(PenaltyInner {
                cfg,
                local,
                redis: Some(redis),
            }),
        }
    }

    /// What the box counts per.
    pub fn key_spec(&self) -> &KeySpec {
        &self.inner.cfg.key
    }

    /// The key of `ip` in this box (with its prefix grouping), when the box is keyed by client IP.
    pub fn key_for_ip(&self, ip: IpAddr) -> Option<Key> {
        self.inner.cfg.key.key_for_ip(ip)
    }

    pub(crate) fn is_failure(&self, info: &FailureInfo<'_>) -> bool {
        (self.inner.cfg.predicate)(info)
    }

    /// Bans `key` for `duration` (replacing a shorter or longer ban in force).
    pub async fn ban(&self, key: &Key, duration: Duration) -> Result<(), BackendError> {
        metrics::counter!("msec_ratelimit_bans_total", "source" => "manual").increment(1);
        tracing::info!(key = %key, seconds = duration.as_secs(), "msec-ratelimit: ban");
        #[cfg(feature = "redis")]
        if let Some(r) = &self.inner.redis {
            return r.ban(key, duration).await;
        }
        self.local_ban(key, duration);
        Ok(())
    }

    /// Lifts a ban of `key` and forgets its failures and strikes.
    pub async fn unban(&self, key: &Key) -> Result<(), BackendError> {
        tracing::info!(key = %key, "msec-ratelimit: unban");
        self.inner.local.update(key, |v| *v = None);
        #[cfg(feature = "redis")]
        if let Some(r) = &self.inner.redis {
            return r.unban(key).await;
        }
        Ok(())
    }

    /// How much longer `key` is banned, if it is.
    pub async fn banned_for(&self, key: &Key) -> Result<Option<Duration>, BackendError> {
        #[cfg(feature = "redis")]
        if let Some(r) = &self.inner.redis {
            return r.banned_for(key).await;
        }
        Ok(self.local_banned_for(key))
    }

    /// Counts a failure of `key`; returns the ban length when this failure started a ban.
    pub async fn record_failure(&self, key: &Key) -> Result<Option<Duration>, BackendError> {
        #[cfg(feature = "redis")]
        if let Some(r) = &self.inner.redis {
            let banned = r.record_failure(key, &self.inner.cfg).await?;
            if let Some(d) = banned {
                note_auto_ban(key, d);
            }
            return Ok(banned);
        }
        Ok(self.local_failure(key))
    }

    pub(crate) fn local_ban(&self, key: &Key, duration: Duration) {
        let now = self.inner.local.now();
        self.inner.local.update(key, |v| {
            let mut s = v.unwrap_or_default();
            s.banned_until = now.saturating_add(nanos(duration));
            *v = Some(s);
        });
    }

    pub(crate) fn local_banned_for(&self, key: &Key) -> Option<Duration> {
        let now = self.inner.local.now();
        let s = self.inner.local.get(key)?;
        (s.banned_until > now).then(|| Duration::from_nanos(s.banned_until - now))
    }

    pub(crate) fn local_failure(&self, key: &Key) -> Option<Duration> {
        let cfg = &self.inner.cfg;
        let now = self.inner.local.now();
        let banned = self.inner.local.update(key, |v| {
            let mut s = v.unwrap_or_default();
            if s.window_end <= now {
                s.window_end = now.saturating_add(nanos(cfg.window));
                s.failures = 0;
            }
            if s.strikes_until <= now {
                s.strikes = 0;
            }
            s.failures += 1;
            let mut banned = None;
            if s.failures >= cfg.threshold && s.banned_until <= now {
                s.strikes = s.strikes.saturating_add(1);
                let d = cfg.ban_for_strike(s.strikes);
                s.banned_until = now.saturating_add(nanos(d));
                s.strikes_until = s.banned_until.saturating_add(nanos(cfg.strike_memory));
                s.failures = 0;
                s.window_end = now;
                banned = Some(d);
            }
            *v = Some(s);
            banned
        });
        if let Some(d) = banned {
            note_auto_ban(key, d);
        }
        banned
    }
}

fn note_auto_ban(key: &Key, d: Duration) {
    metrics::counter!("msec_ratelimit_bans_total", "source" => "auto").increment(1);
    tracing::warn!(key = %key, seconds = d.as_secs(), "msec-ratelimit: too many failures, key banned");
}

#[cfg(test)]
mod tests {
    use super::*;
    use msec_core::clock::ManualClock;

    fn boxed(cfg: PenaltyBoxBuilder) -> (PenaltyBox, ManualClock) {
        let c = ManualClock::starting_now();
        (PenaltyBox::new(cfg, Arc::new(c.clone())), c)
    }

    #[test]
    fn bans_after_threshold_and_escalates() {
        let (pb, clock) = boxed(
            PenaltyBox::builder()
                .threshold(3)
                .window(Duration::from_secs(10))
                .ban(Duration::from_secs(60))
                .escalate(2)
                .max_ban(Duration::from_secs(200)),
        );
        let k = Key::subject("mallory");
        assert_eq!(pb.local_failure(&k), None);
        assert_eq!(pb.local_failure(&k), None);
        assert_eq!(pb.local_failure(&k), Some(Duration::from_secs(60)));
        assert_eq!(pb.local_banned_for(&k), Some(Duration::from_secs(60)));
        clock.advance(Duration::from_secs(61));
        assert_eq!(pb.local_banned_for(&k), None);
        for _ in 0..2 {
            assert_eq!(pb.local_failure(&k), None);
        }
        assert_eq!(
            pb.local_failure(&k),
            Some(Duration::from_secs(120)),
            "second ban is twice as long"
        );
        clock.advance(Duration::from_secs(121));
        for _ in 0..2 {
            pb.local_failure(&k);
        }
        assert_eq!(
            pb.local_failure(&k),
            Some(Duration::from_secs(200)),
            "capped at max_ban"
        );
    }

    #[test]
    fn window_resets() {
        let (pb, clock) = boxed(PenaltyBox::builder().threshold(2).window(Duration::from_secs(10)));
        let k = Key::subject("bob");
        pb.local_failure(&k);
        clock.advance(Duration::from_secs(11));
        assert_eq!(pb.local_failure(&k), None, "the first failure fell out of the window");
        assert!(pb.local_failure(&k).is_some());
    }

    #[test]
    fn strikes_are_forgotten() {
        let (pb, clock) = boxed(
            PenaltyBox::builder()
                .threshold(1)
                .ban(Duration::from_secs(10))
                .strike_memory(Duration::from_secs(100)),
        );
        let k = Key::subject("eve");
        assert_eq!(pb.local_failure(&k), Some(Duration::from_secs(10)));
        clock.advance(Duration::from_secs(11 + 100));
        assert_eq!(
            pb.local_failure(&k),
            Some(Duration::from_secs(10)),
            "back to the first ban length"
        );
    }

    #[test]
    fn default_predicate() {
        let h = HeaderMap::new();
        let e = http::Extensions::new();
        let info = |s: u16, h: &'static HeaderMap| FailureInfo {
            status: StatusCode::from_u16(s).unwrap(),
            headers: h,
            extensions: Box::leak(Box::new(e.clone())),
        };
        let empty: &'static HeaderMap = Box::leak(Box::new(h));
        assert!(auth_failures(&info(401, empty)));
        assert!(auth_failures(&info(403, empty)));
        assert!(!auth_failures(&info(404, empty)));
        let mut g = HeaderMap::new();
        g.insert("grpc-status", "16".parse().unwrap());
        assert!(auth_failures(&info(200, Box::leak(Box::new(g)))));
    }
}
