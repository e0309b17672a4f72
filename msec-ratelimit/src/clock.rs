//! [`FastClock`]: the limiter's default time source — governor's own TSC clock behind msec-core's [`Clock`] trait.

use std::fmt;
use std::time::{Duration, SystemTime};

use governor::clock::{Clock as _, QuantaClock, QuantaInstant, Reference as _};
use msec_core::clock::Clock;

/// A [`Clock`] whose monotonic reading is governor's default clock (quanta: the CPU's invariant TSC, scaled to
/// nanoseconds, where the CPU has one; the OS monotonic clock otherwise). Wall time is [`SystemTime::now`].
///
/// [`RateLimiter`](crate::RateLimiter) uses it unless a clock is injected with
/// [`RateLimiterBuilder::clock`](crate::RateLimiterBuilder::clock): a rate decision reads the monotonic clock
/// once, and on virtualised hosts `std::time::Instant::now` (what msec-core's `SystemClock` uses) can cost
/// several times a TSC read. Tests inject a `ManualClock` exactly as before. Clones share the origin.
///
/// ```
/// use msec_core::clock::Clock;
/// use msec_ratelimit::FastClock;
///
/// let clock = FastClock::new();
/// let a = clock.monotonic();
/// let b = clock.monotonic();
/// assert!(b >= a);
/// ```
#[derive(Clone)]
pub struct FastClock {
    clock: QuantaClock,
    origin: QuantaInstant,
}

impl FastClock {
    /// A clock whose monotonic origin is now. The first one in a process calibrates the TSC against the OS
    /// clock (once).
    pub fn new() -> Self {
        let clock = QuantaClock::default();
        let origin = clock.now();
        Self { clock, origin }
    }
}

impl Default for FastClock {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for FastClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FastClock")
    }
}

impl Clock for FastClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    fn monotonic(&self) -> Duration {
        // `duration_since` saturates: a reading can never go behind the origin.
        Duration::from(self.clock.now().duration_since(self.origin))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_and_tracks_real_time() {
        let c = FastClock::new();
        let shared = c.clone();
        // OS-clock readings bracket the fast ones, so preemption anywhere cannot fail the comparison.
        let before = std::time::Instant::now();
        let a = c.monotonic();
        let after = std::time::Instant::now();
        let mut last = a;
        // Busy-wait (no sleep) until the OS clock has seen 5 ms pass, checking monotonicity on the way.
        while after.elapsed() < Duration::from_millis(5) {
            let t = shared.monotonic();
            assert!(t >= last, "went backwards: {t:?} < {last:?}");
            last = t;
        }
        let fast = c.monotonic() - a;
        let outer = before.elapsed();
        // Clones share the origin; the TSC scaling agrees with the OS clock (calibration error is tiny).
        let slack = Duration::from_micros(200);
        assert!(fast + slack >= Duration::from_millis(5), "{fast:?}");
        assert!(fast <= outer + slack, "{fast:?} vs {outer:?}");
    }
}
