//! Key flood: a million distinct client addresses never push the tracked keys over the cap, and the memory the
//! limiter holds stays within a bound proportional to the cap (measured with a counting allocator).
#![allow(clippy::unwrap_used, missing_docs, clippy::print_stderr)]

use std::alloc::System;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use msec_core::clock::ManualClock;
use msec_ratelimit::{Key, LocalLimiter, Quota};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const CAP: usize = 20_000;
/// The bound `LocalLimiter`'s docs state: at most this many bytes per key of the cap. A table slot is 57 bytes;
/// under a flood, deletions leave tombstones and hashbrown settles at up to ~3.3 slots per live key.
const BYTES_PER_KEY: usize = msec_ratelimit::BYTES_PER_KEY_BOUND;

#[test]
fn a_million_addresses_stay_within_the_cap() {
    let clock = ManualClock::starting_now();
    let lim = LocalLimiter::new(Quota::per_minute(10), CAP, Arc::new(clock.clone()));
    // A key the flood must not wash away: it is over its limit.
    let victim = Key::ip(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 32, 64);
    for _ in 0..10 {
        assert!(lim.check(&victim, NonZeroU32::MIN).allowed);
    }
    assert!(!lim.check(&victim, NonZeroU32::MIN).allowed);

    let region = Region::new(GLOBAL);
    let mut max_tracked = 0;
    for i in 0..1_000_000u32 {
        let ip = IpAddr::V4(Ipv4Addr::from(0x0A00_0000 + i));
        let _ = lim.check(&Key::ip(ip, 32, 64), NonZeroU32::MIN);
        let n = lim.tracked_keys();
        max_tracked = max_tracked.max(n);
        assert!(n <= CAP, "{n} keys tracked after {i} inserts");
        if i % 100_000 == 0 {
            clock.advance(Duration::from_millis(10));
        }
    }
    let change = region.change();
    let held = (change.bytes_allocated as isize - change.bytes_deallocated as isize + change.bytes_reallocated).max(0)
        as usize;
    let stats = lim.stats();
    eprintln!(
        "flood: max tracked {max_tracked} (cap {CAP}), net heap growth {held} B, table {} B, {} pressure evictions",
        stats.table_bytes, stats.pressure_evictions
    );
    assert!(max_tracked <= CAP);
    assert!(
        stats.table_bytes <= CAP * BYTES_PER_KEY,
        "table {} B",
        stats.table_bytes
    );
    assert!(held <= CAP * BYTES_PER_KEY, "heap grew by {held} B");
    assert!(
        !lim.check(&victim, NonZeroU32::MIN).allowed,
        "the over-limit key survived the flood"
    );

    // IPv6: addresses of one /64 are one key.
    let before = lim.tracked_keys();
    for i in 0..100_000u64 {
        let ip = IpAddr::V6(Ipv6Addr::from((0x2001_0db8_0000_0001u128 << 64) | u128::from(i)));
        let _ = lim.check(&Key::ip(ip, 32, 64), NonZeroU32::MIN);
    }
    assert!(lim.tracked_keys() <= before + 1);
}
