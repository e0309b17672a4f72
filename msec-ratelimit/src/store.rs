//! A sharded map with a hard cap on entries that evicts idle entries by itself.
//!
//! Every value knows when it stops mattering ([`Expiring::expires_at`], e.g. a GCRA theoretical arrival time:
//! after it the key is indistinguishable from a fresh one). Eviction runs inside normal operations, so no
//! cleanup thread is needed:
//!
//! - every `max(shard capacity, 1024)` operations on a shard, its expired entries are dropped (lossless: an
//!   expired entry is indistinguishable from an absent one);
//! - inserting into a full shard first drops its expired entries; if none are, it drops the eighth of entries
//!   that expire soonest ("pressure" eviction). For a rate limiter these are the keys with the least debt, so
//!   a flood of fresh keys evicts other fresh keys, never a key that is being held back.
//!
//! The total number of entries never exceeds the configured cap (rounded down to a multiple of the shard
//! count). Each shard's table shrinks again once a sweep leaves it mostly empty.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use msec_core::clock::SharedClock;

/// A value that can be dropped once the store's clock passes `expires_at` (nanoseconds on the store's
/// timeline).
pub(crate) trait Expiring: Copy {
    fn expires_at(&self) -> u64;
}

impl Expiring for u64 {
    fn expires_at(&self) -> u64 {
        *self
    }
}

#[derive(Clone)]
struct Prehashed<K> {
    hash: u64,
    key: K,
}

impl<K: PartialEq> PartialEq for Prehashed<K> {
    fn eq(&self, o: &Self) -> bool {
        self.hash == o.hash && self.key == o.key
    }
}
impl<K: Eq> Eq for Prehashed<K> {}
impl<K> Hash for Prehashed<K> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// Passes a precomputed (SipHash, randomly keyed) hash through.
#[derive(Default)]
struct PassThrough(u64);
impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Table<K, V> = HashMap<Prehashed<K>, V, BuildHasherDefault<PassThrough>>;

struct Shard<K, V> {
    map: Table<K, V>,
    ops: usize,
}

/// Counters of a store, for metrics and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StoreStats {
    /// Entries now.
    pub len: usize,
    /// The most entries the store will ever hold.
    pub capacity: usize,
    /// Idle entries dropped so far.
    pub idle_evictions: u64,
    /// Live entries dropped to make room so far.
    pub pressure_evictions: u64,
    /// Bytes of table memory now allocated (slots of all shards, excluding spilled key bytes).
    pub table_bytes: usize,
}

pub(crate) struct BoundedMap<K, V> {
    shards: Box<[Mutex<Shard<K, V>>]>,
    shard_cap: usize,
    sweep_every: usize,
    hasher: RandomState,
    clock: SharedClock,
    origin: AtomicU64,
    len: AtomicUsize,
    idle_evictions: AtomicU64,
    pressure_evictions: AtomicU64,
    name: &'static str,
}

impl<K: Hash + Eq + Clone, V: Expiring> BoundedMap<K, V> {
    /// A store of at most `max` entries (at least 1), reading time from `clock`.
    pub(crate) fn new(max: usize, clock: SharedClock, name: &'static str) -> Self {
        let max = max.max(1);
        let n_shards = max.min(32);
        let shard_cap = max / n_shards;
        let shards = (0..n_shards)
            .map(|_| {
                Mutex::new(Shard {
                    map: HashMap::default(),
                    ops: 0,
                })
            })
            .collect();
        let origin = clock.monotonic().as_nanos().try_into().unwrap_or(u64::MAX);
        Self {
            shards,
            shard_cap,
            sweep_every: shard_cap.max(1024),
            hasher: RandomState::new(),
            clock,
            origin: AtomicU64::new(origin),
            len: AtomicUsize::new(0),
            idle_evictions: AtomicU64::new(0),
            pressure_evictions: AtomicU64::new(0),
            name,
        }
    }

    /// Resets the timeline origin to the clock's current reading (used right after a governor limiter, whose
    /// origin is its own creation, is built on this store: reading later keeps "now" on the safe side).
    pub(crate) fn reset_origin(&self) {
        let o = self.clock.monotonic().as_nanos().try_into().unwrap_or(u64::MAX);
        self.origin.store(o, Ordering::SeqCst);
    }

    /// Now, in nanoseconds on this store's timeline.
    pub(crate) fn now(&self) -> u64 {
        let m: u64 = self.clock.monotonic().as_nanos().try_into().unwrap_or(u64::MAX);
        m.saturating_sub(self.origin.load(Ordering::Relaxed))
    }

    pub(crate) fn capacity(&self) -> usize {
        self.shard_cap * self.shards.len()
    }

    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    fn lock(&self, i: usize) -> MutexGuard<'_, Shard<K, V>> {
        // Each critical section leaves the map consistent, so a poisoned lock is safe to reuse.
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads and updates the entry of `key`: `f` sees the current value (if any) and leaves the new one
    /// (`None` removes it).
    pub(crate) fn update<R>(&self, key: &K, f: impl FnOnce(&mut Option<V>) -> R) -> R {
        let hash = self.hasher.hash_one(key);
        let idx = (hash >> 32) as usize % self.shards.len();
        let pk = Prehashed { hash, key: key.clone() };
        let mut g = self.lock(idx);
        // Every `sweep_every` operations on a shard, drop its expired entries: amortised O(1) per operation, and
        // the counter lives under the shard's lock, so threads on other shards share no cache line.
        g.ops += 1;
        if g.ops >= self.sweep_every {
            g.ops = 0;
            let now = self.now();
            self.drop_expired(&mut g, now);
        }
        if let Some(v) = g.map.get_mut(&pk) {
            let mut slot = Some(*v);
            let r = f(&mut slot);
            match slot {
                Some(n) => *v = n,
                None => {
                    g.map.remove(&pk);
                    self.len.fetch_sub(1, Ordering::Relaxed);
                }
            }
            return r;
        }
        let mut slot = None;
        let r = f(&mut slot);
        if let Some(v) = slot {
            if g.map.len() >= self.shard_cap {
                let now = self.now();
                self.make_room(&mut g, now);
            }
            g.map.insert(pk, v);
            self.len.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    /// The current value of `key`, if tracked.
    pub(crate) fn get(&self, key: &K) -> Option<V> {
        let hash = self.hasher.hash_one(key);
        let idx = (hash >> 32) as usize % self.shards.len();
        let pk = Prehashed { hash, key: key.clone() };
        self.lock(idx).map.get(&pk).copied()
    }

    fn drop_expired(&self, g: &mut Shard<K, V>, now: u64) {
        let before = g.map.len();
        g.map.retain(|_, v| v.expires_at() > now);
        let dropped = before - g.map.len();
        if dropped > 0 {
            self.len.fetch_sub(dropped, Ordering::Relaxed);
            self.idle_evictions.fetch_add(dropped as u64, Ordering::Relaxed);
            metrics::counter!("msec_ratelimit_evictions_total", "store" => self.name, "reason" => "idle")
                .increment(dropped as u64);
        }
        let cap = g.map.capacity();
        if cap > 64 && cap > 4 * g.map.len() {
            let target = (2 * g.map.len()).max(16);
            g.map.shrink_to(target);
        }
    }

    fn make_room(&self, g: &mut Shard<K, V>, now: u64) {
        self.drop_expired(g, now);
        if g.map.len() < self.shard_cap {
            return;
        }
        // Drop the eighth of entries that expire soonest.
        let k = (g.map.len() / 8).max(1);
        let mut exp: Vec<u64> = g.map.values().map(Expiring::expires_at).collect();
        let (_, &mut threshold, _) = exp.select_nth_unstable(k - 1);
        let mut removed = 0usize;
        g.map.retain(|_, v| {
            let e = v.expires_at();
            if e < threshold || (e == threshold && removed < k) {
                removed += 1;
                false
            } else {
                true
            }
        });
        self.len.fetch_sub(removed, Ordering::Relaxed);
        self.pressure_evictions.fetch_add(removed as u64, Ordering::Relaxed);
        metrics::counter!("msec_ratelimit_evictions_total", "store" => self.name, "reason" => "pressure")
            .increment(removed as u64);
    }

    /// Drops every expired entry now (normally not needed: eviction runs by itself).
    pub(crate) fn sweep(&self) {
        let now = self.now();
        for i in 0..self.shards.len() {
            let mut g = self.lock(i);
            self.drop_expired(&mut g, now);
        }
    }

    pub(crate) fn stats(&self) -> StoreStats {
        let slot = std::mem::size_of::<(Prehashed<K>, V)>() + 1;
        let table_bytes = (0..self.shards.len())
            .map(|i| {
                // hashbrown: a usable capacity of 7/8 of a power-of-two bucket count (all buckets for tiny tables).
                let cap = self.lock(i).map.capacity();
                let buckets = match cap {
                    0 => 0,
                    1..=7 => (cap + 1).next_power_of_two(),
                    _ => (cap * 8 / 7).next_power_of_two(),
                };
                buckets * slot + if buckets > 0 { 16 } else { 0 }
            })
            .sum();
        StoreStats {
            len: self.len(),
            capacity: self.capacity(),
            idle_evictions: self.idle_evictions.load(Ordering::Relaxed),
            pressure_evictions: self.pressure_evictions.load(Ordering::Relaxed),
            table_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use msec_core::clock::ManualClock;
    use std::sync::Arc;
    use std::time::Duration;

    fn store(max: usize) -> (BoundedMap<u32, u64>, ManualClock) {
        let c = ManualClock::starting_now();
        (BoundedMap::new(max, Arc::new(c.clone()), "test"), c)
    }

    #[test]
    fn never_exceeds_cap_and_keeps_busiest() {
        let (s, _c) = store(64);
        assert_eq!(s.capacity(), 64);
        // One key with a lot of debt.
        s.update(&u32::MAX, |v| *v = Some(1_000_000_000));
        for i in 0..10_000u32 {
            s.update(&i, |v| *v = Some(1_000 + u64::from(i % 7)));
            assert!(s.len() <= 64);
        }
        assert_eq!(
            s.get(&u32::MAX),
            Some(1_000_000_000),
            "the most indebted key survives the flood"
        );
        assert!(s.stats().pressure_evictions > 0);
    }

    #[test]
    fn idle_entries_leave_by_themselves() {
        let (s, c) = store(4096);
        for i in 0..2_000u32 {
            s.update(&i, |v| *v = Some(1_000));
        }
        assert_eq!(s.len(), 2_000);
        c.advance(Duration::from_micros(2));
        // Ordinary traffic on other keys sweeps every shard it touches.
        for i in 0..200_000u32 {
            s.update(&(1_000_000 + (i % 512)), |v| *v = Some(u64::MAX));
        }
        assert_eq!(s.len(), 512);
        assert_eq!(s.stats().idle_evictions, 2_000);
    }

    #[test]
    fn remove_and_update() {
        let (s, _c) = store(8);
        s.update(&1, |v| *v = Some(5));
        assert_eq!(s.update(&1, |v| v.take()), Some(5));
        assert_eq!(s.len(), 0);
        assert_eq!(s.get(&1), None);
    }
}
