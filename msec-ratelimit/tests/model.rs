//! The local limiter against a reference model, and exactness under concurrency.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use msec_core::clock::ManualClock;
use msec_ratelimit::{Key, LocalLimiter, Quota};
use proptest::prelude::*;

/// A token bucket in integer nanoseconds — an independent formulation of GCRA: a key has `debt` (how far its
/// theoretical arrival time is ahead of now); a request of cost c fits when `debt + c·t <= burst·t`.
struct Model {
    t: u128,
    burst: u128,
    tat: HashMap<u8, u128>,
}

impl Model {
    /// (allowed, remaining, retry_after_ns)
    fn check(&mut self, key: u8, cost: u128, now: u128) -> (bool, u32, u128) {
        let cap = self.burst * self.t;
        if cost > self.burst {
            return (false, 0, cap);
        }
        let debt = self.tat.get(&key).map_or(0, |&tat| tat.saturating_sub(now));
        if debt + cost * self.t <= cap {
            let debt = debt + cost * self.t;
            self.tat.insert(key, now + debt);
            (true, ((cap - debt) / self.t) as u32, 0)
        } else {
            (false, 0, debt + cost * self.t - cap)
        }
    }
}

fn quota_strategy() -> impl Strategy<Value = Quota> {
    (1u32..50, prop_oneof![Just(1u64), Just(60), Just(7)], 1u32..12)
        .prop_map(|(count, secs, burst)| Quota::try_new(count, Duration::from_secs(secs)).unwrap().burst(burst))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn local_limiter_matches_reference_gcra(
        quota in quota_strategy(),
        steps in proptest::collection::vec((0u8..4, 1u32..14, 0u64..3_000), 1..200),
    ) {
        let clock = ManualClock::starting_now();
        let lim = LocalLimiter::new(quota, 1_000, Arc::new(clock.clone()));
        let t = quota.emission_interval().as_nanos();
        let mut model = Model { t, burst: u128::from(quota.burst_size().get()), tat: HashMap::new() };
        let mut now: u128 = 0;
        for (key, cost, step_permille) in steps {
            // Steps of 0 to 3 emission intervals, in thousandths.
            let step = t * u128::from(step_permille) / 1000;
            clock.advance(Duration::from_nanos(step as u64));
            now += step;
            let got = lim.check(&Key::text("k", &[key]), NonZeroU32::new(cost).unwrap());
            let (allowed, remaining, retry) = model.check(key, u128::from(cost), now);
            prop_assert_eq!(got.allowed, allowed, "key {} cost {} at {}ns", key, cost, now);
            prop_assert_eq!(got.remaining, remaining);
            prop_assert_eq!(got.retry_after.as_nanos(), retry);
            if allowed {
                // Reported reset is an upper bound of the real one, within one interval.
                let real = model.tat[&key] - now;
                prop_assert!(got.reset.as_nanos() >= real && got.reset.as_nanos() < real + t);
            }
        }
    }
}

/// N threads hammer one key while virtual time advances in small steps: exactly burst + rate × time pass.
#[test]
fn exact_under_concurrency() {
    const THREADS: usize = 8;
    const STEPS: u32 = 1_000;
    let clock = ManualClock::starting_now();
    // 100 per second (10 ms), burst 10; 1 ms steps for a virtual second.
    let lim = Arc::new(LocalLimiter::new(
        Quota::per_second(100).burst(10),
        16,
        Arc::new(clock.clone()),
    ));
    let allowed = Arc::new(AtomicU64::new(0));
    let barrier = Arc::new(Barrier::new(THREADS + 1));
    let key = Key::subject("hot");
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let (lim, allowed, barrier, key) = (lim.clone(), allowed.clone(), barrier.clone(), key.clone());
            std::thread::spawn(move || {
                for _ in 0..=STEPS {
                    barrier.wait();
                    for _ in 0..4 {
                        if lim.check(&key, NonZeroU32::MIN).allowed {
                            allowed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    barrier.wait();
                }
            })
        })
        .collect();
    for _ in 0..=STEPS {
        barrier.wait(); // threads check at this instant
        barrier.wait(); // all done
        clock.advance(Duration::from_millis(1));
    }
    for h in handles {
        h.join().unwrap();
    }
    let got = allowed.load(Ordering::Relaxed);
    let want = 10 + 100; // burst + rate × 1 s
    assert!(got.abs_diff(want) <= 1, "allowed {got}, want {want} ± 1");
}
