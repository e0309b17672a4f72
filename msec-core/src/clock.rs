//! Injectable time: every msec component that looks at the clock takes a [`Clock`], so tests drive time with
//! a [`ManualClock`] instead of sleeping.
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use msec_core::clock::{Clock, ManualClock};
//!
//! let clock = ManualClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000));
//! let t0 = clock.monotonic();
//! clock.advance(Duration::from_secs(90));
//! assert_eq!(clock.monotonic() - t0, Duration::from_secs(90));
//! assert_eq!(clock.unix_secs(), 1_700_000_090);
//! ```

use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

/// A source of wall-clock and monotonic time.
pub trait Clock: Send + Sync + Debug + 'static {
    /// Wall-clock time (for token expiry, audit timestamps).
    fn now(&self) -> SystemTime;
    /// Monotonic time since an arbitrary fixed origin (for rate limits, caches, timeouts).
    fn monotonic(&self) -> Duration;
    /// Seconds since the Unix epoch (0 before 1970).
    fn unix_secs(&self) -> u64 {
        self.now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}

/// A shared clock.
pub type SharedClock = Arc<dyn Clock>;

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
    fn monotonic(&self) -> Duration {
        static ORIGIN: OnceLock<Instant> = OnceLock::new();
        ORIGIN.get_or_init(Instant::now).elapsed()
    }
}

/// A clock that moves only when told to. Clones share the same time.
#[derive(Debug, Clone)]
pub struct ManualClock {
    start: SystemTime,
    offset_nanos: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock reading `start`.
    pub fn new(start: SystemTime) -> Self {
        Self {
            start,
            offset_nanos: Arc::new(AtomicU64::new(0)),
        }
    }

    /// A clock reading the current real time.
    pub fn starting_now() -> Self {
        Self::new(SystemTime::now())
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let n = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.offset_nanos.fetch_add(n, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        self.start + self.monotonic()
    }
    fn monotonic(&self) -> Duration {
        Duration::from_nanos(self.offset_nanos.load(Ordering::SeqCst))
    }
}
