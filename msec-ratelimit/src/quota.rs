//! [`Quota`]: how many units per period, and how many at once — in the units you say.
//!
//! `Quota::per_minute(100)` means exactly "100 per minute", not "one every 100 minutes"; `.burst(20)` caps how
//! many of them may arrive at once. Zero is unrepresentable: a `Quota` holds `NonZeroU32`s, a zero literal in a
//! `const` is a compile error, and [`Quota::try_new`] / [`FromStr`] refuse it at configuration time.
//!
//! ```
//! use std::time::Duration;
//! use msec_ratelimit::Quota;
//!
//! const API: Quota = Quota::per_minute(100).burst(20);
//! assert_eq!(API.count().get(), 100);
//! assert_eq!(API.period(), Duration::from_secs(60));
//! assert_eq!(API.burst_size().get(), 20);
//! assert_eq!(API.emission_interval(), Duration::from_millis(600));
//! assert_eq!(API.to_string(), "100/minute burst 20");
//! assert_eq!("100/minute burst 20".parse::<Quota>().unwrap(), API);
//! ```
//!
//! # What the quota promises
//!
//! The limiter is a GCRA (a token bucket without a timer): a key may spend up to `burst` units at once, and one
//! unit comes back every `period / count`. The `RateLimit-Policy` header states this as `q` = burst units
//! within `w` = the time to refill the whole burst (rounded up to a second, so the statement stays true): a quota
//! of 100/minute with the default burst reads `q=100;w=60`; with `burst 20` it reads `q=20;w=12`.

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::time::Duration;

use crate::error::ConfigError;

/// A rate: `count` units per `period`, at most `burst` at once. See the [module docs](self).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quota {
    count: NonZeroU32,
    period: Duration,
    burst: NonZeroU32,
}

const fn nz(n: u32, what: &'static str) -> NonZeroU32 {
    match NonZeroU32::new(n) {
        Some(n) => n,
        None => panic!("{}", what),
    }
}

impl Quota {
    /// `count` units per `period`, with a burst of `count`.
    ///
    /// Returns `None` when `period` is zero or shorter than one nanosecond per unit.
    pub const fn new(count: NonZeroU32, period: Duration) -> Option<Self> {
        if period.as_nanos() < count.get() as u128 {
            return None;
        }
        Some(Self {
            count,
            period,
            burst: count,
        })
    }

    /// `count` units per `period`, from configuration values: zero counts and periods are an error.
    pub fn try_new(count: u32, period: Duration) -> Result<Self, ConfigError> {
        let c = NonZeroU32::new(count).ok_or(ConfigError::ZeroQuota)?;
        Self::new(c, period).ok_or(ConfigError::InvalidPeriod)
    }

    const fn per(count: u32, secs: u64) -> Self {
        Self {
            count: nz(count, "a quota of zero units: use a positive count"),
            period: Duration::from_secs(secs),
            burst: nz(count, "a quota of zero units: use a positive count"),
        }
    }

    /// `count` per second.
    ///
    /// # Panics
    /// When `count` is zero — a compile-time error when the quota is a `const`.
    pub const fn per_second(count: u32) -> Self {
        Self::per(count, 1)
    }

    /// `count` per minute. Panics on zero like [`per_second`](Self::per_second).
    pub const fn per_minute(count: u32) -> Self {
        Self::per(count, 60)
    }

    /// `count` per hour. Panics on zero like [`per_second`](Self::per_second).
    pub const fn per_hour(count: u32) -> Self {
        Self::per(count, 3600)
    }

    /// `count` per day. Panics on zero like [`per_second`](Self::per_second).
    pub const fn per_day(count: u32) -> Self {
        Self::per(count, 86_400)
    }

    /// Sets how many units may be spent at once (default: `count`).
    ///
    /// # Panics
    /// When `burst` is zero — a compile-time error in a `const`; use [`with_burst`](Self::with_burst) for a
    /// `NonZeroU32`.
    #[must_use]
    pub const fn burst(self, burst: u32) -> Self {
        self.with_burst(nz(burst, "a burst of zero units: use a positive burst"))
    }

    /// Sets the burst from a `NonZeroU32`.
    #[must_use]
    pub const fn with_burst(mut self, burst: NonZeroU32) -> Self {
        self.burst = burst;
        self
    }

    /// Units per period.
    pub const fn count(&self) -> NonZeroU32 {
        self.count
    }

    /// The period.
    pub const fn period(&self) -> Duration {
        self.period
    }

    /// Units that may be spent at once.
    pub const fn burst_size(&self) -> NonZeroU32 {
        self.burst
    }

    /// The time one unit takes to come back: `period / count` (at least one nanosecond).
    pub const fn emission_interval(&self) -> Duration {
        let n = self.period.as_nanos() / self.count.get() as u128;
        let n = if n == 0 { 1 } else { n };
        Duration::from_nanos(if n > u64::MAX as u128 { u64::MAX } else { n as u64 })
    }

    /// The time to refill the whole burst from empty.
    pub fn refill_time(&self) -> Duration {
        self.emission_interval().saturating_mul(self.burst.get())
    }

    /// `(q, w)` for the `RateLimit-Policy` field: the burst, and the refill time rounded up to whole seconds.
    pub fn policy(&self) -> (u32, u64) {
        (self.burst.get(), ceil_secs(self.refill_time()))
    }

    /// The equivalent governor quota (same emission interval and burst).
    pub fn to_governor(&self) -> governor::Quota {
        governor::Quota::with_period(self.emission_interval())
            .unwrap_or_else(|| governor::Quota::per_second(NonZeroU32::MAX))
            .allow_burst(self.burst)
    }
}

/// Seconds, rounded up.
pub(crate) fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl fmt::Debug for Quota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Quota({self})")
    }
}

impl fmt::Display for Quota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.period.as_nanos() {
            1_000_000_000 => "second".to_owned(),
            60_000_000_000 => "minute".to_owned(),
            3_600_000_000_000 => "hour".to_owned(),
            86_400_000_000_000 => "day".to_owned(),
            _ => format!("{:?}", self.period),
        };
        write!(f, "{}/{unit}", self.count)?;
        if self.burst != self.count {
            write!(f, " burst {}", self.burst)?;
        }
        Ok(())
    }
}

/// Parses `100/minute`, `100/min`, `100/m`, `10/second`, `10/s`, `5/hour`, `5/h`, `1000/day`, `1000/d`,
/// `30/90s`, `30/1500ms` — optionally followed by `burst N` (also `, burst N` or `burst=N`).
impl FromStr for Quota {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ConfigError::InvalidQuota(s.chars().take(100).collect());
        let s = s.trim();
        let (rate, burst) = match s.find("burst") {
            Some(i) => {
                let b = s[i + 5..].trim_start().trim_start_matches(['=', ':']).trim();
                (s[..i].trim().trim_end_matches([',', ';']).trim(), Some(b))
            }
            None => (s, None),
        };
        let (count, per) = rate
            .split_once('/')
            .or_else(|| rate.split_once(" per "))
            .ok_or_else(bad)?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        let per = per.trim();
        let period = match per {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            "d" | "day" => Duration::from_secs(86_400),
            other => {
                let (num, mult) = if let Some(n) = other.strip_suffix("ms") {
                    (n, 1_000_000u64)
                } else if let Some(n) = other.strip_suffix('s') {
                    (n, 1_000_000_000)
                } else if let Some(n) = other.strip_suffix('m') {
                    (n, 60_000_000_000)
                } else if let Some(n) = other.strip_suffix('h') {
                    (n, 3_600_000_000_000)
                } else {
                    return Err(bad());
                };
                let n: u64 = num.trim().parse().map_err(|_| bad())?;
                Duration::from_nanos(n.checked_mul(mult).ok_or_else(bad)?)
            }
        };
        let mut q = Self::try_new(count, period)?;
        if let Some(b) = burst {
            let b: u32 = b.parse().map_err(|_| bad())?;
            q = q.with_burst(NonZeroU32::new(b).ok_or(ConfigError::ZeroQuota)?);
        }
        Ok(q)
    }
}

impl<'de> serde::Deserialize<'de> for Quota {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn honest_units() {
        let q = Quota::per_second(10);
        assert_eq!(q.emission_interval(), Duration::from_millis(100));
        assert_eq!(q.policy(), (10, 1));
        assert_eq!(Quota::per_minute(100).policy(), (100, 60));
        assert_eq!(Quota::per_minute(100).burst(20).policy(), (20, 12));
        // 7 per minute: an interval of 8.571428571 s; 3 of them refill in 25.7 s, stated as 26.
        assert_eq!(Quota::per_minute(7).burst(3).policy(), (3, 26));
        assert_eq!(Quota::per_hour(1).policy(), (1, 3600));
    }

    #[test]
    #[should_panic(expected = "zero")]
    fn zero_panics_at_construction() {
        let n = std::hint::black_box(0);
        let _ = Quota::per_minute(n);
    }

    #[test]
    fn config_errors() {
        assert!(matches!(
            Quota::try_new(0, Duration::from_secs(1)),
            Err(ConfigError::ZeroQuota)
        ));
        assert!(matches!(
            Quota::try_new(5, Duration::ZERO),
            Err(ConfigError::InvalidPeriod)
        ));
        for bad in [
            "",
            "0/s",
            "10",
            "10/fortnight",
            "-1/s",
            "10/s burst 0",
            "10/s burst x",
            "10/0s",
        ] {
            assert!(bad.parse::<Quota>().is_err(), "{bad}");
        }
    }

    #[test]
    fn parse_forms() {
        let cases = [
            ("100/minute", Quota::per_minute(100)),
            ("100 per minute, burst 20", Quota::per_minute(100).burst(20)),
            ("10/s burst=5", Quota::per_second(10).burst(5)),
            ("5/h", Quota::per_hour(5)),
            ("1000/d", Quota::per_day(1000)),
            ("30/90s", Quota::try_new(30, Duration::from_secs(90)).unwrap()),
        ];
        for (s, q) in cases {
            assert_eq!(s.parse::<Quota>().unwrap(), q, "{s}");
        }
    }

    #[test]
    fn governor_equivalent() {
        let q = Quota::per_minute(100).burst(20);
        let g = q.to_governor();
        assert_eq!(g.replenish_interval(), Duration::from_millis(600));
        assert_eq!(g.burst_size().get(), 20);
    }

    proptest! {
        #[test]
        fn display_round_trips(count in 1u32..1_000_000, unit in 0usize..4, burst in proptest::option::of(1u32..1_000_000)) {
            let mut q = [Quota::per_second(count), Quota::per_minute(count), Quota::per_hour(count), Quota::per_day(count)][unit];
            if let Some(b) = burst { q = q.burst(b); }
            prop_assert_eq!(q.to_string().parse::<Quota>().unwrap(), q);
        }

        #[test]
        fn parse_never_panics(s in ".{0,40}") {
            let _ = s.parse::<Quota>();
        }
    }
}
