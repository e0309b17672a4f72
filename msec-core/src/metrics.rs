//! Counters with `'static` labels, incremented on the request path without building a metric key each time.
//!
//! `metrics::counter!("name", "label" => value)` with a non-literal value builds a [`Key`] (a label vector and
//! an `Arc<[Label]>`), hashes it and looks it up in the recorder's registry on every call: a few hundred
//! nanoseconds and three allocations, paid by every layer for every decision. [`increment`] keeps the counter
//! handles it has registered in a small per-thread table keyed by the addresses of the `'static` name and label
//! strings, so a repeated increment is a table lookup and an atomic add.
//!
//! The table is tied to the recorder it registered with: when the current recorder (global, or a
//! [`metrics::with_local_recorder`] scope) is a different one (told apart by its address), the table is emptied and rebuilt. It holds at
//! most [`MAX_CACHED`] handles per thread; past that, increments go through the recorder uncached.
//!
//! ```
//! use msec_core::metrics::increment;
//!
//! // msec_demo_total{result="ok"} += 1 (a no-op without a recorder)
//! increment("msec_demo_total", [("result", "ok")]);
//! ```

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use metrics::{Counter, Key, Label, Level, Metadata, Recorder};

/// The most counter handles one thread keeps.
pub const MAX_CACHED: usize = 512;

/// At most this many labels.
const MAX_LABELS: usize = 4;

static METADATA: Metadata<'static> = Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// The identity of a `'static` name with its labels: the address and length of every string.
type CacheKey = [(usize, usize); 1 + 2 * MAX_LABELS];

#[derive(Default)]
struct Cache {
    /// The address of the recorder the handles were registered with.
    recorder: usize,
    handles: HashMap<CacheKey, Counter, BuildHasherDefault<AddrHasher>>,
}

/// A multiply-rotate hash for keys made of addresses this process chose (no client input reaches it), where
/// SipHash's flooding resistance buys nothing and costs most of the lookup.
#[derive(Default)]
struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache::default());
}

fn id(s: &'static str) -> (usize, usize) {
    (s.as_ptr().addr(), s.len())
}

fn recorder_addr(r: &dyn Recorder) -> usize {
    std::ptr::from_ref(r).cast::<()>().addr()
}

fn register<const N: usize>(
    r: &dyn Recorder,
    name: &'static str,
    labels: &[(&'static str, &'static str); N],
) -> Counter {
    let labels: Vec<Label> = labels.iter().map(|&(k, v)| Label::from_static_parts(k, v)).collect();
    r.register_counter(&Key::from_parts(name, labels), &METADATA)
}

/// Adds one to the counter `name{labels}` of the current recorder. `N` is at most 4.
pub fn increment<const N: usize>(name: &'static str, labels: [(&'static str, &'static str); N]) {
    if N > MAX_LABELS {
        metrics::with_recorder(|r| register(r, name, &labels).increment(1));
        return;
    }
    let mut key: CacheKey = [(0, 0); 1 + 2 * MAX_LABELS];
    key[0] = id(name);
    for (i, (k, v)) in labels.iter().enumerate() {
        key[1 + 2 * i] = id(k);
        key[2 + 2 * i] = id(v);
    }
    metrics::with_recorder(|r| {
        let addr = recorder_addr(r);
        // `try_with`: during thread teardown the table may be gone; count uncached then.
        let cached = CACHE.try_with(|c| {
            let mut c = c.borrow_mut();
            if c.recorder != addr {
                c.handles.clear();
                c.recorder = addr;
            }
            if let Some(h) = c.handles.get(&key) {
                h.increment(1);
                return true;
            }
            if c.handles.len() < MAX_CACHED {
                let h = register(r, name, &labels);
                h.increment(1);
                c.handles.insert(key, h);
                return true;
            }
            false
        });
        if cached != Ok(true) {
            register(r, name, &labels).increment(1);
        }
    });
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    use metrics::{CounterFn, Gauge, Histogram, KeyName, SharedString, Unit};

    use super::*;

    /// Counts registrations, and increments per key.
    #[derive(Default)]
    struct Seen {
        registrations: AtomicU64,
        counts: Mutex<HashMap<String, Arc<Count>>>,
    }

    #[derive(Default)]
    struct Count(AtomicU64);

    impl CounterFn for Count {
        fn increment(&self, value: u64) {
            self.0.fetch_add(value, Ordering::Relaxed);
        }
        fn absolute(&self, value: u64) {
            self.0.store(value, Ordering::Relaxed);
        }
    }

    impl Seen {
        fn get(&self, k: &str) -> u64 {
            let m = self.counts.lock().unwrap_or_else(|e| e.into_inner());
            m.get(k).map_or(0, |c| c.0.load(Ordering::Relaxed))
        }
    }

    impl Recorder for Seen {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            self.registrations.fetch_add(1, Ordering::Relaxed);
            let mut name = key.name().to_owned();
            for l in key.labels() {
                name.push_str(&format!(",{}={}", l.key(), l.value()));
            }
            let mut m = self.counts.lock().unwrap_or_else(|e| e.into_inner());
            Counter::from_arc(m.entry(name).or_default().clone())
        }
        fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::noop()
        }
        fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::noop()
        }
    }

    #[test]
    fn counts_with_one_registration_per_key() {
        let seen = Seen::default();
        metrics::with_local_recorder(&seen, || {
            for _ in 0..5 {
                increment("t_total", [("layer", "authn"), ("code", "ok")]);
            }
            increment("t_total", [("layer", "authz"), ("code", "ok")]);
        });
        assert_eq!(seen.get("t_total,layer=authn,code=ok"), 5);
        assert_eq!(seen.get("t_total,layer=authz,code=ok"), 1);
        assert_eq!(seen.registrations.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_new_recorder_gets_its_own_handles() {
        let (a, b) = (Seen::default(), Seen::default());
        metrics::with_local_recorder(&a, || increment("t_total", [("r", "x")]));
        metrics::with_local_recorder(&b, || increment("t_total", [("r", "x")]));
        metrics::with_local_recorder(&a, || increment("t_total", [("r", "x")]));
        assert_eq!(a.get("t_total,r=x"), 2);
        assert_eq!(b.get("t_total,r=x"), 1);
    }

    #[test]
    fn the_cache_is_bounded() {
        let seen = Seen::default();
        let names: Vec<&'static str> = (0..MAX_CACHED + 10)
            .map(|i| &*Box::leak(format!("v{i}").into_boxed_str()))
            .collect();
        metrics::with_local_recorder(&seen, || {
            for n in &names {
                increment("t_total", [("v", n)]);
            }
            // Past the bound: still counted, registered each time.
            increment("t_total", [("v", names[MAX_CACHED + 1])]);
            CACHE.with(|c| assert_eq!(c.borrow().handles.len(), MAX_CACHED));
        });
        assert_eq!(seen.get(&format!("t_total,v={}", names[MAX_CACHED + 1])), 2);
        assert_eq!(seen.get("t_total,v=v0"), 1);
    }

    #[test]
    fn more_than_four_labels_are_counted_uncached() {
        let seen = Seen::default();
        let l = [("a", "1"), ("b", "2"), ("c", "3"), ("d", "4"), ("e", "5")];
        metrics::with_local_recorder(&seen, || {
            increment("t_total", l);
            increment("t_total", l);
        });
        assert_eq!(seen.get("t_total,a=1,b=2,c=3,d=4,e=5"), 2);
        assert_eq!(seen.registrations.load(Ordering::Relaxed), 2);
    }
}
