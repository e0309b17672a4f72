//! The local backend: governor's GCRA over a bounded map, timed by msec-core's clock.

use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::middleware::StateInformationMiddleware;
use governor::nanos::Nanos;
use governor::state::StateStore;
use msec_core::clock::SharedClock;

use crate::key::Key;
use crate::quota::Quota;
use crate::store::{BoundedMap, StoreStats};

/// governor's clock trait over msec-core's [`Clock`](msec_core::clock::Clock): governor instants are the clock's monotonic readings.
#[derive(Debug, Clone)]
pub struct ClockBridge(pub SharedClock);

impl governor::clock::Clock for ClockBridge {
    type Instant = Nanos;
    fn now(&self) -> Nanos {
        Nanos::from(self.0.monotonic())
    }
}

/// A governor state store over the bounded map.
pub(crate) struct SharedStore(pub(crate) Arc<BoundedMap<Key, u64>>);

impl StateStore for SharedStore {
    type Key = Key;

    fn measure_and_replace<T, F, E>(&self, key: &Key, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        self.0.update(key, |slot| match f(slot.map(Nanos::from)) {
            Ok((t, tat)) => {
                *slot = Some(tat.as_u64());
                Ok(t)
            }
            Err(e) => Err(e),
        })
    }
}

type Gov = governor::RateLimiter<Key, SharedStore, ClockBridge, StateInformationMiddleware>;

/// The outcome of one rule for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleOutcome {
    /// Whether the units were granted.
    pub allowed: bool,
    /// Units left right after this decision.
    pub remaining: u32,
    /// Time until the key's whole burst is available again.
    pub reset: Duration,
    /// When denied: time until a request of this cost could pass.
    pub retry_after: Duration,
}

/// Memory bound of a [`LocalLimiter`] per key of its cap, in bytes: tracked state never takes more than
/// `max_keys × BYTES_PER_KEY_BOUND` (keys longer than 38 bytes add their length; see [`MAX_TEXT`](crate::key::MAX_TEXT)).
///
/// A slot is 57 bytes (an inline key, its hash, the GCRA time, a control byte); a table stays below 7/8 full
/// and, under a flood that keeps evicting, hashbrown's tombstones can double it once more.
pub const BYTES_PER_KEY_BOUND: usize = 200;

/// One rule's local GCRA limiter: governor's algorithm over a bounded, self-evicting key store.
///
/// - **Hard cap**: never more than `max_keys` keys (rounded down to a multiple of the 32 shards).
/// - **Self-running eviction**: idle keys (whose bucket is full again, so forgetting them changes nothing) are
///   dropped during normal operations, a shard at a time; no cleanup thread, no timer.
/// - **Flood resistance**: when a shard is full of live keys, the eighth closest to idle is dropped — a
///   flood of fresh keys displaces other fresh keys, never a client that is being held back.
/// - **Memory**: at most [`BYTES_PER_KEY_BOUND`] bytes per key of the cap.
///
/// ```
/// use std::num::NonZeroU32;
/// use std::sync::Arc;
/// use msec_core::clock::ManualClock;
/// use msec_ratelimit::{Key, LocalLimiter, Quota};
///
/// let clock = ManualClock::starting_now();
/// let lim = LocalLimiter::new(Quota::per_minute(60).burst(2), 10_000, Arc::new(clock.clone()));
/// let k = Key::subject("alice");
/// assert!(lim.check(&k, NonZeroU32::MIN).allowed);
/// assert!(lim.check(&k, NonZeroU32::MIN).allowed);
/// let denied = lim.check(&k, NonZeroU32::MIN);
/// assert!(!denied.allowed);
/// assert_eq!(denied.retry_after, std::time::Duration::from_secs(1));
/// clock.advance(std::time::Duration::from_secs(1));
/// assert!(lim.check(&k, NonZeroU32::MIN).allowed);
/// ```
pub struct LocalLimiter {
    gov: Gov,
    store: Arc<BoundedMap<Key, u64>>,
    clock: SharedClock,
    quota: Quota,
    /// `quota.emission_interval()`, computed once (a u128 division).
    interval: Duration,
}

impl fmt::Debug for LocalLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalLimiter")
            .field("quota", &self.quota)
            .field("tracked_keys", &self.store.len())
            .finish()
    }
}

impl LocalLimiter {
    /// A limiter of `quota` tracking at most `max_keys` keys, timed by `clock`.
    pub fn new(quota: Quota, max_keys: usize, clock: SharedClock) -> Self {
        let store = Arc::new(BoundedMap::new(max_keys, clock.clone(), "gcra"));
        let gov: governor::RateLimiter<Key, SharedStore, ClockBridge, governor::middleware::NoOpMiddleware<Nanos>> =
            governor::RateLimiter::new(
                quota.to_governor(),
                SharedStore(store.clone()),
                ClockBridge(clock.clone()),
            );
        let gov = gov.with_middleware::<StateInformationMiddleware>();
        // governor measures from its own creation; read the origin after it, so the store's idea of "now" is
        // never ahead of governor's and an entry is only evicted once truly idle.
        store.reset_origin();
        Self {
            gov,
            store,
            clock,
            quota,
            interval: quota.emission_interval(),
        }
    }

    /// A limiter of `quota` tracking at most `max_keys` keys, timed by a [`FastClock`](crate::FastClock) (what
    /// [`RateLimiter`](crate::RateLimiter) uses when no clock is injected).
    pub fn with_default_clock(quota: Quota, max_keys: usize) -> Self {
        Self::new(quota, max_keys, Arc::new(crate::FastClock::new()))
    }

    /// The quota.
    pub fn quota(&self) -> Quota {
        self.quota
    }

    /// Spends `cost` units of `key`'s quota if they are available.
    pub fn check(&self, key: &Key, cost: NonZeroU32) -> RuleOutcome {
        let t = self.interval;
        let burst = self.quota.burst_size().get();
        match self.gov.check_key_n(key, cost) {
            Ok(Ok(snap)) => {
                let remaining = snap.remaining_burst_capacity();
                RuleOutcome {
                    allowed: true,
                    remaining,
                    // An upper bound: the bucket is full again at most this long from now.
                    reset: t.saturating_mul(burst.saturating_sub(remaining)),
                    retry_after: Duration::ZERO,
                }
            }
            Ok(Err(not_until)) => {
                let now = governor::clock::Clock::now(&ClockBridge(self.clock.clone()));
                let wait = not_until.wait_time_from(now);
                // earliest = tat + (cost-1)·t − tau, so tat − now = wait + (burst − cost)·t.
                let reset = wait + t.saturating_mul(burst.saturating_sub(cost.get()));
                RuleOutcome {
                    allowed: false,
                    remaining: 0,
                    reset,
                    retry_after: wait,
                }
            }
            Err(_insufficient) => RuleOutcome {
                allowed: false,
                remaining: 0,
                reset: self.quota.refill_time(),
                retry_after: self.quota.refill_time(),
            },
        }
    }

    /// Keys currently tracked.
    pub fn tracked_keys(&self) -> usize {
        self.store.len()
    }

    /// Store counters (tracked keys, cap, evictions, table memory).
    pub fn stats(&self) -> StoreStats {
        self.store.stats()
    }

    /// Drops every idle key now. Never required — eviction runs by itself during normal operation.
    pub fn sweep(&self) {
        self.store.sweep();
    }

    /// Forgets `key` (its full burst is available again).
    pub fn reset(&self, key: &Key) {
        self.store.update(key, |v| *v = None);
    }
}
